package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// agent reconciles pods level-triggered: every event (and a periodic resync) puts the pod's key on
// a queue; sync() compares the pod with the local runtime state, starts or stops what differs and
// writes the status the runtime state implies.
type agent struct {
	cfg     config
	cs      kubernetes.Interface
	netw    *network
	caPEM   []byte // cluster CA, written as ca.crt for pods
	apiPort int    // the apiserver forwarder's port on the bridge address (apiproxy.go)

	factory    informers.SharedInformerFactory
	pods       listersv1.PodLister
	namespaces listersv1.NamespaceLister
	queue      workqueue.TypedRateLimitingInterface[string]

	mu      sync.Mutex
	running map[types.UID]*podRuntime // by pod UID
	byKey   map[string]types.UID      // namespace/name -> UID of the runtime we hold for it
	start   time.Time
}

func newAgent(cfg config, cs kubernetes.Interface, netw *network) *agent {
	return &agent{
		cfg:     cfg,
		cs:      cs,
		netw:    netw,
		running: map[types.UID]*podRuntime{},
		byKey:   map[string]types.UID{},
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](
			200*time.Millisecond, 10*time.Second)),
		start: time.Now(),
	}
}

// cleanupStale kills processes and removes namespaces left by an earlier agent. Pods they belonged
// to are restarted from scratch by sync(), like a kubelet restart with a wiped runtime.
func (a *agent) cleanupStale() {
	for _, ns := range listPodNamespaces() {
		for _, p := range pidsInNamespace(ns) {
			if pid, err := strconv.Atoi(p); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		_ = ipcmd("netns", "del", ns)
		klog.Infof("removed stale pod namespace %s", ns)
	}
	links, _ := net.Interfaces()
	for _, l := range links {
		if strings.HasPrefix(l.Name, "plv") {
			_ = ipcmd("link", "del", l.Name)
		}
	}
	_ = os.RemoveAll(filepath.Join(a.cfg.stateDir, "pods"))
	_ = os.MkdirAll(filepath.Join(a.cfg.stateDir, "pods"), 0o755)
}

func (a *agent) registerNode(ctx context.Context, logPort int) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: a.cfg.nodeName,
			Labels: map[string]string{
				"kubernetes.io/hostname": a.cfg.nodeName,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
			},
		},
		Spec: corev1.NodeSpec{PodCIDR: a.netw.podNet.String(), PodCIDRs: []string{a.netw.podNet.String()}},
	}
	err := wait.PollUntilContextTimeout(ctx, time.Second, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := a.cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err == nil || apierrors.IsAlreadyExists(err) {
			return true, nil
		}
		klog.Warningf("creating node: %v (retrying)", err)
		return false, nil
	})
	if err != nil {
		return err
	}
	if err := a.updateNodeStatus(ctx, logPort); err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := a.updateNodeStatus(ctx, logPort); err != nil && ctx.Err() == nil {
					klog.Warningf("node heartbeat: %v", err)
				}
			}
		}
	}()
	return nil
}

func (a *agent) updateNodeStatus(ctx context.Context, logPort int) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := a.cs.CoreV1().Nodes().Get(ctx, a.cfg.nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		started := metav1.NewTime(a.start)
		cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
			return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg,
				LastHeartbeatTime: now, LastTransitionTime: started}
		}
		n.Status.Conditions = []corev1.NodeCondition{
			cond(corev1.NodeReady, corev1.ConditionTrue, "PylonNodeAgentReady", "pylon node agent is posting ready status"),
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "NoPressure", ""),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "NoPressure", ""),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "NoPressure", ""),
			cond(corev1.NodeNetworkUnavailable, corev1.ConditionFalse, "BridgeUp", "pod bridge "+a.netw.bridge+" is up"),
		}
		host, _ := os.Hostname()
		n.Status.Addresses = []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: a.netw.gateway.String()},
			{Type: corev1.NodeHostName, Address: host},
		}
		n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(logPort)
		res := corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("64"),
			corev1.ResourceMemory: resource.MustParse("64Gi"),
			corev1.ResourcePods:   resource.MustParse("1000"),
		}
		n.Status.Capacity = res
		n.Status.Allocatable = res
		n.Status.NodeInfo = corev1.NodeSystemInfo{
			KubeletVersion:          "v0.0.0-pylon-nodeagent",
			ContainerRuntimeVersion: "pylon-process://1",
			OperatingSystem:         "linux",
			Architecture:            "amd64",
		}
		_, err = a.cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

func (a *agent) run(ctx context.Context) error {
	a.factory = informers.NewSharedInformerFactory(a.cs, 30*time.Second)
	inf := a.factory.Core().V1().Pods()
	a.pods = inf.Lister()
	enqueue := func(obj interface{}) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			a.queue.Add(key)
		}
	}
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, n interface{}) { enqueue(n) },
		DeleteFunc: enqueue,
	})
	// A terminating namespace's pods are stopped and finalised at once: the namespace controller
	// waits 5 s before its first pass, and finds nothing left to wait for when it comes.
	nsInf := a.factory.Core().V1().Namespaces()
	a.namespaces = nsInf.Lister()
	_, _ = nsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, n interface{}) {
			ns, ok := n.(*corev1.Namespace)
			if !ok || ns.DeletionTimestamp == nil {
				return
			}
			pods, _ := a.pods.Pods(ns.Name).List(labels.Everything())
			for _, p := range pods {
				a.queue.Add(p.Namespace + "/" + p.Name)
			}
		},
	})
	a.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced, nsInf.Informer().HasSynced) {
		return fmt.Errorf("pod informer did not sync")
	}
	go func() {
		<-ctx.Done()
		a.queue.ShutDown()
	}()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a.processNext(ctx) {
			}
		}()
	}
	wg.Wait()
	return nil
}

func (a *agent) processNext(ctx context.Context) bool {
	key, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(key)
	if err := a.sync(ctx, key); err != nil {
		if ctx.Err() == nil {
			klog.Warningf("sync %s: %v", key, err)
		}
		a.queue.AddRateLimited(key)
		return true
	}
	a.queue.Forget(key)
	return true
}

// sync is the whole reconciler; it runs with at most one worker per key (workqueue guarantee).
func (a *agent) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := a.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		// Gone from the apiserver (deleted with grace 0 by someone, or finalised by us).
		a.stopByKey(key, "")
		return nil
	}
	if err != nil {
		return err
	}
	// A different pod with the same name (recreated): drop the old runtime first.
	a.stopByKey(key, pod.UID)

	terminating := pod.DeletionTimestamp != nil
	if ns, err := a.namespaces.Get(pod.Namespace); err == nil && ns.DeletionTimestamp != nil {
		terminating = true
	}
	if pod.Spec.NodeName == "" {
		if terminating {
			return a.finalize(ctx, pod)
		}
		return a.bind(ctx, pod)
	}
	if pod.Spec.NodeName != a.cfg.nodeName {
		return nil
	}
	if terminating {
		a.stopPod(pod.UID)
		return a.finalize(ctx, pod)
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		a.stopPod(pod.UID)
		return nil
	}
	rt := a.runtimeFor(pod)
	if rt == nil {
		rt, err = a.startPod(ctx, pod)
		if err != nil {
			return err
		}
	}
	return a.writeStatus(ctx, pod, rt)
}

func (a *agent) bind(ctx context.Context, pod *corev1.Pod) error {
	b := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: a.cfg.nodeName},
	}
	err := a.cs.CoreV1().Pods(pod.Namespace).Bind(ctx, b, metav1.CreateOptions{})
	if err != nil && (apierrors.IsConflict(err) || apierrors.IsNotFound(err)) {
		return nil // already bound, or gone: the next event tells
	}
	if err == nil {
		klog.V(2).Infof("bound %s/%s to %s", pod.Namespace, pod.Name, a.cfg.nodeName)
	}
	return err
}

// finalize removes the pod object for good once nothing of it runs here any more; this is what
// lets namespace deletion complete.
func (a *agent) finalize(ctx context.Context, pod *corev1.Pod) error {
	zero := int64(0)
	uid := pod.UID
	err := a.cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return err
	}
	klog.V(2).Infof("finalised pod %s/%s", pod.Namespace, pod.Name)
	return nil
}

func (a *agent) runtimeFor(pod *corev1.Pod) *podRuntime {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.running[pod.UID]
}

// stopByKey stops the runtime held under key unless it belongs to keepUID.
func (a *agent) stopByKey(key string, keepUID types.UID) {
	a.mu.Lock()
	uid, ok := a.byKey[key]
	a.mu.Unlock()
	if ok && uid != keepUID {
		a.stopPod(uid)
	}
}

func (a *agent) stopPod(uid types.UID) {
	a.mu.Lock()
	rt := a.running[uid]
	if rt != nil {
		delete(a.running, uid)
		if a.byKey[rt.key] == uid {
			delete(a.byKey, rt.key)
		}
	}
	a.mu.Unlock()
	if rt == nil {
		return
	}
	rt.stop()
	a.netw.teardownPod(string(uid))
	a.netw.release(rt.ip)
	_ = os.RemoveAll(rt.dir)
	klog.Infof("stopped pod %s (%s)", rt.key, rt.ip)
}

// shutdown stops every pod (agent exit: cluster-down). Pod objects stay; a new agent restarts them.
func (a *agent) shutdown() {
	a.mu.Lock()
	uids := make([]types.UID, 0, len(a.running))
	for uid := range a.running {
		uids = append(uids, uid)
	}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, uid := range uids {
		wg.Add(1)
		go func(u types.UID) {
			defer wg.Done()
			a.stopPod(u)
		}(uid)
	}
	wg.Wait()
}

func (a *agent) enqueueKey(key string) { a.queue.Add(key) }
