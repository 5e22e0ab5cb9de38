// Package controllertest runs pylon's Kubernetes controller against a real kube-apiserver.
//
// Each run starts a private control plane (etcd + kube-apiserver from the cached binaries the
// conformance cluster uses, PKI from conformance/scripts/pki.sh, Gateway API CRDs from the module
// cache), so the tests may restart the apiserver and compact etcd without disturbing the shared
// cluster. No pods: backends are local HTTP servers published through hand-made EndpointSlices.
//
// Environment:
//
//	PYLON_BIN            the pylon binary (required; the tests skip without it)
//	PYLON_CACHE          binary cache (default ~/.cache/pylon)
//	K8S_VERSION          default v1.36.3
//	ETCD_VERSION         default v3.6.16
//	PYLON_CTLTEST_KEEP   1: keep the temporary directory (logs) after the run
package controllertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

type cluster struct {
	dir        string
	kubectl    string
	kubeconfig string
	etcdPort   int
	etcdPeer   int
	apiPort    int
	etcd       *exec.Cmd
	api        *exec.Cmd
	apiserver  string
}

var cl *cluster

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestMain(m *testing.M) {
	if os.Getenv("PYLON_BIN") == "" {
		fmt.Println("controllertest: PYLON_BIN not set; skipping (make controller-test sets it)")
		os.Exit(0)
	}
	c, err := startCluster()
	if err != nil {
		fmt.Fprintln(os.Stderr, "controllertest: control plane:", err)
		if c != nil {
			c.stop()
		}
		os.Exit(1)
	}
	cl = c
	code := m.Run()
	c.stop()
	if os.Getenv("PYLON_CTLTEST_KEEP") != "1" && code == 0 {
		os.RemoveAll(c.dir)
	} else {
		fmt.Println("controllertest: logs kept in", c.dir)
	}
	os.Exit(code)
}

func startCluster() (*cluster, error) {
	home, _ := os.UserHomeDir()
	cache := envOr("PYLON_CACHE", filepath.Join(home, ".cache", "pylon"))
	k8s := filepath.Join(cache, "k8s", envOr("K8S_VERSION", "v1.36.3"))
	etcdBin := filepath.Join(cache, "etcd", envOr("ETCD_VERSION", "v3.6.16"), "etcd")
	for _, b := range []string{etcdBin, filepath.Join(k8s, "kube-apiserver"), filepath.Join(k8s, "kubectl")} {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("%s missing: run make cluster-up once to build the control plane", b)
		}
	}
	dir, err := os.MkdirTemp("", "pylon-ctltest-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, kubectl: filepath.Join(k8s, "kubectl")}
	c.etcdPort, c.etcdPeer, c.apiPort = freePort(), freePort(), freePort()
	c.apiserver = fmt.Sprintf("https://127.0.0.1:%d", c.apiPort)
	pki := filepath.Join(dir, "pki")
	if out, err := exec.Command("bash", "../scripts/pki.sh", pki, c.apiserver, "127.0.0.1").CombinedOutput(); err != nil {
		return c, fmt.Errorf("pki.sh: %v: %s", err, out)
	}
	c.kubeconfig = filepath.Join(pki, "admin.kubeconfig")
	if err := c.startEtcd(etcdBin); err != nil {
		return c, err
	}
	if err := c.startAPI(filepath.Join(k8s, "kube-apiserver")); err != nil {
		return c, err
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		return c, fmt.Errorf("go list gateway-api: %v", err)
	}
	crds := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "experimental")
	files, _ := filepath.Glob(filepath.Join(crds, "*.yaml"))
	args := []string{"apply", "--server-side", "--force-conflicts"}
	for _, f := range files {
		if filepath.Base(f) != "kustomization.yaml" {
			args = append(args, "-f", f)
		}
	}
	if _, err := c.kc(args...); err != nil {
		return c, err
	}
	if _, err := c.kc("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"); err != nil {
		return c, err
	}
	return c, nil
}

func (c *cluster) startEtcd(bin string) error {
	c.etcd = exec.Command(bin, "--name", "t", "--data-dir", filepath.Join(c.dir, "etcd"),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", c.etcdPort),
		"--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", c.etcdPort),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", c.etcdPeer),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", c.etcdPeer),
		"--initial-cluster", fmt.Sprintf("t=http://127.0.0.1:%d", c.etcdPeer),
		"--unsafe-no-fsync", "--log-level", "warn")
	if err := startLogged(c.etcd, filepath.Join(c.dir, "etcd.log")); err != nil {
		return err
	}
	return waitFor(30*time.Second, func() bool {
		r, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", c.etcdPort))
		if err == nil {
			r.Body.Close()
		}
		return err == nil && r.StatusCode == 200
	})
}

func (c *cluster) startAPI(bin string) error {
	p := filepath.Join(c.dir, "pki")
	c.api = exec.Command(bin,
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", c.etcdPort),
		"--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(c.apiPort), "--advertise-address", "127.0.0.1",
		"--tls-cert-file", p+"/apiserver.crt", "--tls-private-key-file", p+"/apiserver.key",
		"--client-ca-file", p+"/ca.crt",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", p+"/sa.pub", "--service-account-signing-key-file", p+"/sa.key",
		"--service-cluster-ip-range", "10.97.0.0/16", "--authorization-mode", "RBAC",
		"--disable-admission-plugins", "ServiceAccount", "--profiling=false",
		"--enable-priority-and-fairness=false", "--v=1")
	if err := startLogged(c.api, filepath.Join(c.dir, "apiserver.log")); err != nil {
		return err
	}
	return waitFor(90*time.Second, func() bool {
		_, err := c.kcQuiet("get", "--raw", "/readyz")
		return err == nil
	})
}

// restartAPI kills kube-apiserver, calls during (if any) while it is down, and starts it again.
func (c *cluster) restartAPI(during func()) error {
	bin := c.api.Path
	// SIGKILL: a crash, and no 60 s graceful drain of the watches (which would keep them alive)
	c.api.Process.Signal(syscall.SIGKILL)
	c.api.Wait()
	if during != nil {
		during()
	}
	return c.startAPI(bin)
}

// compact compacts etcd at its current revision through the v3 JSON gateway: every older
// resourceVersion is gone afterwards.
func (c *cluster) compact() error {
	base := fmt.Sprintf("http://127.0.0.1:%d/v3", c.etcdPort)
	r, err := http.Post(base+"/kv/range", "application/json", strings.NewReader(`{"key":"AA==","limit":1}`))
	if err != nil {
		return err
	}
	var rr struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	json.NewDecoder(r.Body).Decode(&rr)
	r.Body.Close()
	body := fmt.Sprintf(`{"revision":%q,"physical":true}`, rr.Header.Revision)
	r, err = http.Post(base+"/kv/compaction", "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	r.Body.Close()
	if r.StatusCode != 200 {
		return fmt.Errorf("compaction: HTTP %d", r.StatusCode)
	}
	return nil
}

func (c *cluster) stop() {
	for _, p := range []*exec.Cmd{c.api, c.etcd} {
		if p != nil && p.Process != nil {
			p.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				p.Process.Kill()
			}
		}
	}
}

func startLogged(cmd *exec.Cmd, logPath string) error {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd.Start()
}

func waitFor(d time.Duration, f func() bool) error {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if f() {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("timed out after %v", d)
}

func (c *cluster) kcQuiet(args ...string) ([]byte, error) {
	cmd := exec.Command(c.kubectl, append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

func (c *cluster) kc(args ...string) ([]byte, error) { return c.kcQuiet(args...) }

// apply applies YAML read from a string.
func (c *cluster) apply(t *testing.T, yaml string) {
	t.Helper()
	cmd := exec.Command(c.kubectl, "--kubeconfig", c.kubeconfig, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(yaml)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v: %s\n%s", err, out, yaml)
	}
}

// get returns the object as a generic JSON map (nil when absent).
func (c *cluster) get(t *testing.T, kind, ns, name string) map[string]any {
	t.Helper()
	args := []string{"get", kind, name, "-o", "json"}
	if ns != "" {
		args = append(args, "-n", ns)
	}
	out, err := c.kcQuiet(args...)
	if err != nil {
		if strings.Contains(err.Error(), "NotFound") {
			return nil
		}
		t.Fatalf("%v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("kubectl get %s: %v", kind, err)
	}
	return m
}
