package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// TestHelmChart (make helm-test) installs charts/pylon with helm as a user would, and checks that
// pylon runs in-cluster in real pods of this cluster: the node agent runs the chart's image
// (ghcr.io/pylon/pylon, unchanged) as the pylon binary with the chart's args and securityContext
// (uid 65532, no new privileges, read-only root, the port sysctl), a service-account token from
// the TokenRequest API and KUBERNETES_SERVICE_HOST/PORT.
//
// It checks: the Deployment's 2 replicas pass the /readyz readiness probe; the GatewayClass is
// Accepted; a Gateway of that class and an HTTPRoute to an echo-basic backend get their status
// from the pods (through the chart's RBAC), first Programmed=False AddressNotAssigned, then - once
// the test, playing the cloud load-balancer controller, gives the chart's LoadBalancer Service an
// address - Programmed with that address; a request to that address answers 200 from echo-basic;
// so does each replica's own address (every replica serves); one Lease holder, and after the
// holder's pod is deleted the other replica takes over before the Lease would expire (it was
// released at SIGTERM); the pods' logs (through the apiserver) show no error, 401 or 403; and
// `helm uninstall` removes every object of the chart, the pods and their network namespaces.
//
// There is no kube-proxy and no load-balancer implementation in this cluster: the address the
// test writes into the Service's status.loadBalancer.ingress is a pylon pod's own IP, which the
// host reaches through the bridge, as a load balancer with that pod behind it would.
func TestHelmChart(t *testing.T) {
	if os.Getenv("PYLON_HELM_TESTS") != "1" {
		t.Skip("installs the Helm chart into the local cluster: make helm-test")
	}
	cs := clientOrSkip(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gwclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	helm := helmBinary(t)
	chart, err := filepath.Abs("../../charts/pylon")
	if err != nil {
		t.Fatal(err)
	}
	ns := testNamespace(t, cs)
	// Cluster-scoped names (ClusterRole, GatewayClass) and the controller name come from the
	// namespace, so that runs, and a conformance run's class "pylon", never share anything.
	release, class, ctl := ns, ns, "pylon.dev/"+ns
	full := release + "-pylon"
	t0 := time.Now()
	runHelm(t, helm, "install", release, chart, "--namespace", ns,
		"--set", "gatewayClass.name="+class, "--set", "gatewayClass.controllerName="+ctl, "--set", "workers=1")
	uninstalled := false
	t.Cleanup(func() {
		if !uninstalled { // cluster-scoped objects outlive the namespace
			_ = exec.Command(helm, "uninstall", release, "--namespace", ns, "--kubeconfig", os.Getenv("KUBECONFIG")).Run()
		}
	})

	// 1. The Deployment: 2 pods of the chart's image, Ready through the /readyz probe.
	dep := waitDeploymentReady(t, cs, ns, full, 2, 90*time.Second)
	c := dep.Spec.Template.Spec.Containers[0]
	if !strings.HasSuffix(strings.Split(c.Image, ":")[0], "/pylon") || c.ReadinessProbe == nil ||
		c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Fatalf("chart's container: image %q, readiness probe %+v", c.Image, c.ReadinessProbe)
	}
	sel := "app.kubernetes.io/instance=" + release
	pods := waitPods(t, cs, ns, sel, 2, 30*time.Second)
	t.Logf("helm install: Deployment %s Ready (2/2, /readyz) after %v", full, time.Since(t0).Round(time.Millisecond))
	for _, p := range pods {
		if cst := p.Status.ContainerStatuses; len(cst) != 1 || cst[0].RestartCount != 0 {
			t.Errorf("pod %s: container statuses %+v (want one, no restart)", p.Name, cst)
		}
		checkPylonProcess(t, &p)
	}

	// 2. GatewayClass Accepted by the pods' pylon.
	waitFor(t, 30*time.Second, "GatewayClass "+class+" Accepted", func() (bool, string) {
		gc, err := gw.GatewayV1().GatewayClasses().Get(ctx, class, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return condIs(gc.Status.Conditions, "Accepted", metav1.ConditionTrue, gc.Generation), fmt.Sprint(gc.Status.Conditions)
	})

	// 3. A backend, a Gateway of the chart's class, a route.
	createEcho(t, cs, ns)
	port := gwv1.PortNumber(80) // among the chart's service.ports
	_, err = gw.GatewayV1().Gateways(ns).Create(ctx, &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: "edge"},
		Spec: gwv1.GatewaySpec{GatewayClassName: gwv1.ObjectName(class), Listeners: []gwv1.Listener{{
			Name: "http", Port: port, Protocol: gwv1.HTTPProtocolType}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bport := gwv1.PortNumber(8080)
	_, err = gw.GatewayV1().HTTPRoutes(ns).Create(ctx, &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "edge"}}},
			Hostnames:       []gwv1.Hostname{"echo.helm.example"},
			Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{
				BackendObjectReference: gwv1.BackendObjectReference{Name: "echo", Port: &bport}}}}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// 4. Accepted, but no address until the LoadBalancer Service has one (--publish-service).
	waitFor(t, 30*time.Second, "Gateway Accepted, Programmed=False AddressNotAssigned", func() (bool, string) {
		g, err := gw.GatewayV1().Gateways(ns).Get(ctx, "edge", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		p := meta.FindStatusCondition(g.Status.Conditions, "Programmed")
		return condIs(g.Status.Conditions, "Accepted", metav1.ConditionTrue, g.Generation) &&
			p != nil && p.Status == metav1.ConditionFalse && p.Reason == "AddressNotAssigned", fmt.Sprint(g.Status.Conditions)
	})

	// 5. The load balancer: the Service's address is the first pod's IP.
	lbIP := pods[0].Status.PodIP
	svc, err := cs.CoreV1().Services(ns).Get(ctx, full, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		t.Fatalf("chart's Service %s is %s, not LoadBalancer", full, svc.Spec.Type)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: lbIP}}
	if _, err := cs.CoreV1().Services(ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var addr string
	waitFor(t, 30*time.Second, "Gateway Programmed with the Service's address, route Accepted", func() (bool, string) {
		g, err := gw.GatewayV1().Gateways(ns).Get(ctx, "edge", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		r, err := gw.GatewayV1().HTTPRoutes(ns).Get(ctx, "echo", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if len(g.Status.Addresses) > 0 {
			addr = g.Status.Addresses[0].Value
		}
		ok := condIs(g.Status.Conditions, "Programmed", metav1.ConditionTrue, g.Generation) && addr == lbIP &&
			len(g.Status.Listeners) == 1 && g.Status.Listeners[0].AttachedRoutes == 1
		routeOK := false
		for _, p := range r.Status.Parents {
			if string(p.ControllerName) == ctl && string(p.ParentRef.Name) == "edge" {
				routeOK = condIs(p.Conditions, "Accepted", metav1.ConditionTrue, r.Generation) &&
					condIs(p.Conditions, "ResolvedRefs", metav1.ConditionTrue, r.Generation)
			}
		}
		return ok && routeOK, fmt.Sprintf("gateway addresses %v conditions %v; route parents %+v",
			g.Status.Addresses, g.Status.Conditions, r.Status.Parents)
	})
	t.Logf("Gateway Programmed at %s, HTTPRoute Accepted after %v", addr, time.Since(t0).Round(time.Millisecond))

	// 6. Traffic through the Gateway address, and through each replica.
	target := net.JoinHostPort(addr, fmt.Sprint(port))
	echo := waitEcho(t, target, "echo.helm.example", "/through/the/gateway", 30*time.Second)
	if echo.Namespace != ns || !strings.HasPrefix(echo.Pod, "echo-") || echo.Path != "/through/the/gateway" {
		t.Errorf("echo answered for pod %q namespace %q path %q", echo.Pod, echo.Namespace, echo.Path)
	}
	for _, p := range pods {
		waitEcho(t, net.JoinHostPort(p.Status.PodIP, fmt.Sprint(port)), "echo.helm.example", "/replica", 10*time.Second)
		// The agent runs readiness probes only; a kubelet would also run the chart's liveness
		// probe, and restart pods that fail it.
		probe := c.LivenessProbe
		if probe == nil || probe.HTTPGet == nil {
			t.Fatalf("chart's container has no HTTP liveness probe: %+v", probe)
		}
		lport := probe.HTTPGet.Port.IntVal
		for _, cp := range c.Ports {
			if cp.Name == probe.HTTPGet.Port.StrVal {
				lport = cp.ContainerPort
			}
		}
		u := fmt.Sprintf("http://%s:%d%s", p.Status.PodIP, lport, probe.HTTPGet.Path)
		if resp, err := (&http.Client{Timeout: 3 * time.Second}).Get(u); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("liveness probe GET %s: %v %v", u, resp, err)
		} else {
			resp.Body.Close()
		}
	}
	t.Logf("200 from echo-basic through %s and through both replicas", target)

	// 7. Leader election: one holder (its identity starts with the pod's hostname, its name);
	// deleting it hands the Lease over sooner than its 15 s would expire.
	lease := strings.NewReplacer("/", "-").Replace(ctl)
	holder := waitLeaseHolder(t, cs, ns, lease, "", 30*time.Second)
	var leader *corev1.Pod
	for i := range pods {
		if strings.HasPrefix(holder, pods[i].Name+"_") {
			leader = &pods[i]
		}
	}
	if leader == nil {
		t.Fatalf("Lease %s holder %q is none of the pods", lease, holder)
	}
	for _, p := range pods {
		checkPylonLogs(t, cs, ns, p.Name)
	}
	del := time.Now()
	if err := cs.CoreV1().Pods(ns).Delete(ctx, leader.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	next := waitLeaseHolder(t, cs, ns, lease, holder, 12*time.Second)
	t.Logf("leader %s deleted; Lease taken over by %s after %v", leader.Name, next, time.Since(del).Round(time.Millisecond))
	waitDeploymentReady(t, cs, ns, full, 2, 60*time.Second)

	// 8. helm uninstall removes the chart's objects, its pods and their network namespaces.
	pods = waitPods(t, cs, ns, sel, 2, 30*time.Second)
	for _, p := range pods {
		checkPylonLogs(t, cs, ns, p.Name)
	}
	un := time.Now()
	runHelm(t, helm, "uninstall", release, "--namespace", ns, "--wait", "--timeout", "60s")
	uninstalled = true
	waitFor(t, 60*time.Second, "the chart's objects and pods gone", func() (bool, string) {
		left := chartObjects(ctx, cs, gw, ns, full, class)
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return false, err.Error()
		}
		for _, p := range l.Items {
			left = append(left, "pod/"+p.Name)
		}
		return len(left) == 0, "left: " + strings.Join(left, ", ")
	})
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, p := range pods {
		if strings.Contains(string(out), podNetns(&p)) {
			t.Errorf("network namespace of pod %s still present after uninstall", p.Name)
		}
	}
	t.Logf("helm uninstall: everything gone after %v", time.Since(un).Round(time.Millisecond))
}

// podNetns is the node agent's network namespace of a pod.
func podNetns(p *corev1.Pod) string {
	return "pylon-pod-" + strings.ReplaceAll(string(p.UID), "-", "")[:12]
}

// checkPylonProcess looks at the pod's pylon process on the host: the chart's securityContext as
// the agent applies it (uid/gid 65532, no_new_privs, no capabilities, read-only root mount). That
// it serves port 80 at all as uid 65532 shows the pod's net.ipv4.ip_unprivileged_port_start=0.
func checkPylonProcess(t *testing.T, p *corev1.Pod) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "pids", podNetns(p)).Output()
	if err != nil {
		t.Errorf("pod %s: ip netns pids: %v", p.Name, err)
		return
	}
	found := false
	for _, pid := range strings.Fields(string(out)) {
		comm, _ := os.ReadFile("/proc/" + pid + "/comm")
		if strings.TrimSpace(string(comm)) != "pylon" {
			continue
		}
		found = true
		st, _ := os.ReadFile("/proc/" + pid + "/status")
		for _, want := range []string{"Uid:\t65532\t65532\t65532\t65532", "Gid:\t65532\t65532\t65532\t65532",
			"CapEff:\t0000000000000000", "NoNewPrivs:\t1"} {
			if !strings.Contains(string(st), want) {
				t.Errorf("pod %s: pylon (pid %s) status lacks %q", p.Name, pid, want)
			}
		}
		mi, _ := os.ReadFile("/proc/" + pid + "/mountinfo")
		rootRO := false
		for _, line := range strings.Split(string(mi), "\n") {
			if f := strings.Fields(line); len(f) > 5 && f[4] == "/" {
				rootRO = strings.HasPrefix(f[5], "ro")
			}
		}
		if !rootRO {
			t.Errorf("pod %s: pylon's root mount is not read-only (readOnlyRootFilesystem)", p.Name)
		}
	}
	if !found {
		t.Errorf("pod %s: no pylon process in namespace %s", p.Name, podNetns(p))
	}
}

// helmBinary builds (once, cached in ~/.cache/pylon/bin) and locates helm.
func helmBinary(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	cmd := exec.Command("bash", "../../scripts/helm.sh")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/helm.sh: %v: %s", err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

func runHelm(t *testing.T, helm string, args ...string) {
	t.Helper()
	args = append(args, "--kubeconfig", os.Getenv("KUBECONFIG"))
	out, err := exec.Command(helm, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, f func() (bool, string)) {
	t.Helper()
	last := ""
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, d, true,
		func(context.Context) (bool, error) {
			ok, why := f()
			last = why
			return ok, nil
		})
	if err != nil {
		t.Fatalf("%s: not within %v; last: %s", what, d, last)
	}
}

func condIs(conds []metav1.Condition, typ string, s metav1.ConditionStatus, gen int64) bool {
	c := meta.FindStatusCondition(conds, typ)
	return c != nil && c.Status == s && c.ObservedGeneration == gen
}

func waitDeploymentReady(t *testing.T, cs kubernetes.Interface, ns, name string, n int32, d time.Duration) *appsv1.Deployment {
	t.Helper()
	var dep *appsv1.Deployment
	waitFor(t, d, "Deployment "+name+" ready", func() (bool, string) {
		var err error
		if dep, err = cs.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{}); err != nil {
			return false, err.Error()
		}
		s := dep.Status
		return s.ObservedGeneration == dep.Generation && s.ReadyReplicas == n && s.UpdatedReplicas == n &&
			s.AvailableReplicas == n && s.Replicas == n, fmt.Sprintf("%+v", s)
	})
	return dep
}

func createEcho(t *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": "echo"}
	one := int32(1)
	_, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "echo", Image: echoImage, Env: echoEnv()}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	createEchoService(t, cs, ns, labels)
}

// echoEnv: echo-basic reports its pod and namespace from these.
func echoEnv() []corev1.EnvVar {
	return []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
	}
}

// createEchoService creates Service echo, port 8080 to echo-basic's 3000, selecting labels.
func createEchoService(t *testing.T, cs kubernetes.Interface, ns string, labels map[string]string) {
	t.Helper()
	_, err := cs.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{
			{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(3000)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

type echoReply struct {
	Path      string `json:"path"`
	Host      string `json:"host"`
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
}

// waitEcho sends GET http://target/path with Host host until echo-basic answers 200 (the route
// reaches the data plane a moment after its status is written).
func waitEcho(t *testing.T, target, host, path string, d time.Duration) echoReply {
	t.Helper()
	hc := &http.Client{Timeout: 3 * time.Second}
	var r echoReply
	waitFor(t, d, "200 from echo-basic through "+target, func() (bool, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+target+path, nil)
		req.Host = host
		resp, err := hc.Do(req)
		if err != nil {
			return false, err.Error()
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Sprintf("status %d: %.200s", resp.StatusCode, body)
		}
		r = echoReply{}
		if err := json.Unmarshal(body, &r); err != nil {
			return false, fmt.Sprintf("not echo JSON: %.200s", body)
		}
		return true, ""
	})
	return r
}

func waitLeaseHolder(t *testing.T, cs kubernetes.Interface, ns, name, not string, d time.Duration) string {
	t.Helper()
	var holder string
	waitFor(t, d, "Lease "+name+" held (by other than "+not+")", func() (bool, string) {
		l, err := cs.CoordinationV1().Leases(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		holder = ""
		if l.Spec.HolderIdentity != nil {
			holder = *l.Spec.HolderIdentity
		}
		return holder != "" && holder != not, "holder " + holder
	})
	return holder
}

// pylon logs "<time> <level> <message>"; an error line, or any mention of 401/403 (RBAC or token
// trouble), fails the test. Warnings are shown.
var (
	logLevel = regexp.MustCompile(`^\S+ (error|warn) `)
	authFail = regexp.MustCompile(`(?i)\b(401|403)\b|forbidden|unauthorized`)
)

func checkPylonLogs(t *testing.T, cs kubernetes.Interface, ns, pod string) {
	t.Helper()
	raw, err := cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: "pylon"}).DoRaw(context.Background())
	if err != nil {
		t.Errorf("logs of %s: %v", pod, err)
		return
	}
	text := string(raw)
	if !strings.Contains(text, "kubernetes: first full sync compiled and published: ready") {
		t.Errorf("pod %s: pylon never logged its first full sync:\n%s", pod, text)
	}
	if !strings.Contains(text, "kubernetes: API server https://") {
		t.Errorf("pod %s: no API server line in the log:\n%s", pod, text)
	}
	for _, line := range strings.Split(text, "\n") {
		m := logLevel.FindStringSubmatch(line)
		switch {
		case authFail.MatchString(line) || (m != nil && m[1] == "error"):
			t.Errorf("pod %s: %s", pod, line)
		case m != nil:
			t.Logf("pod %s: %s", pod, line)
		}
	}
}

// chartObjects lists what of the chart still exists.
func chartObjects(ctx context.Context, cs kubernetes.Interface, gw gwclient.Interface, ns, full, class string) []string {
	var left []string
	check := func(kind string, err error) {
		if err == nil {
			left = append(left, kind)
		} else if !apierrors.IsNotFound(err) {
			left = append(left, kind+" ("+err.Error()+")")
		}
	}
	var err error
	_, err = cs.AppsV1().Deployments(ns).Get(ctx, full, metav1.GetOptions{})
	check("deployment/"+full, err)
	_, err = cs.CoreV1().Services(ns).Get(ctx, full, metav1.GetOptions{})
	check("service/"+full, err)
	_, err = cs.CoreV1().ServiceAccounts(ns).Get(ctx, full, metav1.GetOptions{})
	check("serviceaccount/"+full, err)
	_, err = cs.RbacV1().ClusterRoles().Get(ctx, full, metav1.GetOptions{})
	check("clusterrole/"+full, err)
	_, err = cs.RbacV1().ClusterRoleBindings().Get(ctx, full, metav1.GetOptions{})
	check("clusterrolebinding/"+full, err)
	_, err = cs.RbacV1().Roles(ns).Get(ctx, full+"-leader", metav1.GetOptions{})
	check("role/"+full+"-leader", err)
	_, err = cs.RbacV1().RoleBindings(ns).Get(ctx, full+"-leader", metav1.GetOptions{})
	check("rolebinding/"+full+"-leader", err)
	_, err = gw.GatewayV1().GatewayClasses().Get(ctx, class, metav1.GetOptions{})
	check("gatewayclass/"+class, err)
	return left
}
