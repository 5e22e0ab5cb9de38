// Package harness tests the local cluster itself: the node agent's pod lifecycle against the real
// apiserver and controller-manager. Run with `make cluster-test`; skipped unless
// PYLON_CLUSTER_TESTS=1 and KUBECONFIG points at the cluster.
package harness

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const echoImage = "registry.k8s.io/gateway-api/echo-basic:v1.5.1"

func clientOrSkip(t *testing.T) kubernetes.Interface {
	t.Helper()
	if os.Getenv("PYLON_CLUSTER_TESTS") != "1" {
		t.Skip("needs the local cluster: make cluster-test")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// testNamespace creates a fresh namespace and, at the end, deletes it and checks that deletion
// completes: that needs the node agent to finalise the namespace's pods.
func testNamespace(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	ctx := context.Background()
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "harness-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		start := time.Now()
		if err := cs.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete namespace: %v", err)
			return
		}
		err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 90*time.Second, true,
			func(ctx context.Context) (bool, error) {
				_, err := cs.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
				return apierrors.IsNotFound(err), nil
			})
		if err != nil {
			t.Errorf("namespace %s not deleted within 90s", ns.Name)
			return
		}
		t.Logf("namespace %s deleted in %v", ns.Name, time.Since(start).Round(time.Millisecond))
	})
	return ns.Name
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func waitPods(t *testing.T, cs kubernetes.Interface, ns, selector string, n int, d time.Duration) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, d, true,
		func(ctx context.Context) (bool, error) {
			l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
			if err != nil {
				return false, nil
			}
			pods = pods[:0]
			for _, p := range l.Items {
				if p.DeletionTimestamp == nil && podReady(&p) {
					pods = append(pods, p)
				}
			}
			return len(pods) == n, nil
		})
	if err != nil {
		t.Fatalf("%d Ready pods %q in %s not reached within %v (have %d)", n, selector, ns, d, len(pods))
	}
	return pods
}

func selfSigned(t *testing.T, host string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host},
		DNSNames: []string{host}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// TestEchoDeployment: a Deployment of echo-basic with a Service becomes Ready, gets an
// EndpointSlice, answers echo JSON on its pod IPs (HTTP, and HTTPS with a Secret volume), its
// logs come through the apiserver, a deleted pod is replaced, and the namespace deletes.
func TestEchoDeployment(t *testing.T) {
	cs := clientOrSkip(t)
	t.Parallel()
	ctx := context.Background()
	ns := testNamespace(t, cs)
	crt, key := selfSigned(t, "echo.example.com")
	_, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "echo-tls"},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": crt, "tls.key": key},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	replicas := int32(2)
	labels := map[string]string{"app": "echo"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name:  "echo",
						Image: echoImage,
						Env: append(echoEnv(),
							corev1.EnvVar{Name: "TLS_SERVER_CERT", Value: "/etc/harness-tls/crt"},
							corev1.EnvVar{Name: "TLS_SERVER_PRIVKEY", Value: "/etc/harness-tls/key"},
						),
						VolumeMounts: []corev1.VolumeMount{{Name: "tls", MountPath: "/etc/harness-tls", ReadOnly: true}},
					}},
					Volumes: []corev1.Volume{{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
						SecretName: "echo-tls",
						Items:      []corev1.KeyToPath{{Key: "tls.crt", Path: "crt"}, {Key: "tls.key", Path: "key"}},
					}}}},
				},
			},
		},
	}
	start := time.Now()
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createEchoService(t, cs, ns, labels)
	pods := waitPods(t, cs, ns, "app=echo", 2, 60*time.Second)
	t.Logf("2 echo pods Ready in %v", time.Since(start).Round(time.Millisecond))

	// EndpointSlice with both pod IPs, ready.
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=echo"})
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, s := range l.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					ready++
				}
			}
		}
		return ready == 2, nil
	})
	if err != nil {
		t.Fatal("EndpointSlice for service echo never listed 2 ready endpoints")
	}
	t.Logf("EndpointSlice lists both pods after %v", time.Since(start).Round(time.Millisecond))

	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "echo.example.com"}}} //nolint:gosec
	for _, p := range pods {
		for _, u := range []string{"http://" + p.Status.PodIP + ":3000/hello", "https://" + p.Status.PodIP + ":8443/hello"} {
			resp, err := hc.Get(u)
			if err != nil {
				t.Fatalf("GET %s: %v", u, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var echo struct {
				Path      string `json:"path"`
				Namespace string `json:"namespace"`
				Pod       string `json:"pod"`
			}
			if err := json.Unmarshal(body, &echo); err != nil {
				t.Fatalf("GET %s: not echo JSON: %q", u, body)
			}
			if echo.Pod != p.Name || echo.Namespace != ns || echo.Path != "/hello" {
				t.Errorf("GET %s: echo says pod=%q ns=%q path=%q", u, echo.Pod, echo.Namespace, echo.Path)
			}
		}
	}

	// Logs through the apiserver's kubelet proxy.
	since := metav1.NewTime(time.Now().Add(-time.Hour))
	raw, err := cs.CoreV1().Pods(ns).GetLogs(pods[0].Name, &corev1.PodLogOptions{Container: "echo", SinceTime: &since}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("pod logs: %v", err)
	}
	if !strings.Contains(string(raw), "Starting server") {
		t.Errorf("pod logs lack the echo server's start line: %q", raw)
	}
	tail := int64(1)
	raw, err = cs.CoreV1().Pods(ns).GetLogs(pods[0].Name, &corev1.PodLogOptions{TailLines: &tail}).DoRaw(ctx)
	if err != nil || strings.Count(string(raw), "\n") != 1 {
		t.Errorf("tailLines=1: %q, %v", raw, err)
	}

	// A deleted pod is replaced by the ReplicaSet and its namespace disappears.
	victim := pods[0]
	delStart := time.Now()
	if err := cs.CoreV1().Pods(ns).Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Pods(ns).Get(ctx, victim.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("deleted pod %s was not finalised", victim.Name)
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out),
		"pylon-pod-"+strings.ReplaceAll(string(victim.UID), "-", "")[:12]) {
		t.Errorf("network namespace of deleted pod %s still present", victim.Name)
	}
	quick := &http.Client{Timeout: 2 * time.Second}
	if c, err := quick.Get("http://" + victim.Status.PodIP + ":3000/"); err == nil {
		c.Body.Close()
		t.Errorf("deleted pod's address %s still answers", victim.Status.PodIP)
	}
	waitPods(t, cs, ns, "app=echo", 2, 60*time.Second)
	t.Logf("pod deleted, finalised and replaced in %v", time.Since(delStart).Round(time.Millisecond))
}

// TestUnsupportedAndStubImages: an image the agent cannot run is reported, not silently pending;
// a stub image (coredns, needed by the conformance base manifests) becomes Ready.
func TestUnsupportedAndStubImages(t *testing.T) {
	cs := clientOrSkip(t)
	t.Parallel()
	ctx := context.Background()
	ns := testNamespace(t, cs)
	mk := func(name, image string) {
		_, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	mk("nginx", "docker.io/library/nginx:1.27")
	mk("dns", "registry.k8s.io/coredns/coredns:v1.12.2")
	waitPods(t, cs, ns, "app=dns", 1, 30*time.Second)
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "nginx", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionFalse && c.Reason == "UnsupportedImage" &&
				strings.Contains(c.Message, "nginx") {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal("pod with an unsupported image never got Ready=False reason UnsupportedImage")
	}
}

// TestNodeReady: one Ready node with the bridge address as InternalIP.
func TestNodeReady(t *testing.T) {
	cs := clientOrSkip(t)
	t.Parallel()
	nodes, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 1 {
		t.Fatalf("want 1 node, have %d", len(nodes.Items))
	}
	n := nodes.Items[0]
	ready := false
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	if !ready {
		t.Errorf("node %s not Ready: %+v", n.Name, n.Status.Conditions)
	}
	if fmt.Sprint(n.Status.DaemonEndpoints.KubeletEndpoint.Port) == "0" {
		t.Error("node has no kubelet (log) endpoint port")
	}
}
