package controllertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ---------------------------------------------------------------- pylon and backends

type pylon struct {
	cmd   *exec.Cmd
	admin string
	log   string
	args  []string
}

func startPylon(t *testing.T, ctlName, pool string, extra ...string) *pylon {
	t.Helper()
	p := &pylon{admin: fmt.Sprintf("127.0.0.1:%d", freePort()),
		log: filepath.Join(cl.dir, strings.ReplaceAll(t.Name(), "/", "_")+".pylon.log")}
	p.args = append([]string{"run", "--kubeconfig", cl.kubeconfig, "--controller-name", ctlName,
		"--gateway-address-pool", pool, "--admin", p.admin, "--workers", "1", "--log-level", "debug"}, extra...)
	p.start(t)
	t.Cleanup(func() { p.stop() })
	return p
}

func (p *pylon) start(t *testing.T) {
	t.Helper()
	p.cmd = exec.Command(os.Getenv("PYLON_BIN"), p.args...)
	if err := startLogged(p.cmd, p.log); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(20*time.Second, func() bool {
		r, err := http.Get("http://" + p.admin + "/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == 200
	}); err != nil {
		t.Fatalf("pylon not ready: %v (log %s)", err, p.log)
	}
}

func (p *pylon) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	p.cmd = nil
}

func (p *pylon) logText() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// hostIP is a non-loopback local IPv4 address: EndpointSlices may not hold loopback addresses.
func hostIP(t *testing.T) string {
	t.Helper()
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address on this host (EndpointSlices cannot point at loopback)")
	return ""
}

// backend answers every request with "backend=<name>".
func backend(t *testing.T, name string) int {
	t.Helper()
	l, err := net.Listen("tcp", hostIP(t)+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "backend=%s path=%s\n", name, r.URL.Path)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// ---------------------------------------------------------------- objects

func nsClassYAML(ns, class, ctl string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: %[2]s
spec:
  controllerName: %[3]s
`, ns, class, ctl)
}

// baseYAML is nsClassYAML plus a Gateway "gw" with one HTTP listener on port 80.
func baseYAML(ns, class, ctl string) string {
	return nsClassYAML(ns, class, ctl) + "---\n" + fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: %[1]s
spec:
  gatewayClassName: %[2]s
  listeners:
  - name: http
    port: 80
    protocol: HTTP
`, ns, class)
}

func serviceYAML(ns, name string, port int) string {
	ip := "127.0.0.1"
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
				ip = n.IP.String()
				break
			}
		}
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %[2]s
  namespace: %[1]s
spec:
  ports:
  - name: http
    port: 8080
    targetPort: %[3]d
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[2]s-1
  namespace: %[1]s
  labels:
    kubernetes.io/service-name: %[2]s
addressType: IPv4
endpoints:
- addresses: ["%[4]s"]
  conditions: {ready: true}
ports:
- name: http
  port: %[3]d
  protocol: TCP
`, ns, name, port, ip)
}

func routeYAML(ns, name, host, svc string, parents ...string) string {
	if len(parents) == 0 {
		parents = []string{"  - name: gw\n"}
	}
	return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: %[2]s
  namespace: %[1]s
spec:
  parentRefs:
%[5]s  hostnames: ["%[3]s"]
  rules:
  - backendRefs:
    - name: %[4]s
      port: 8080
`, ns, name, host, svc, strings.Join(parents, ""))
}

// ---------------------------------------------------------------- JSON helpers

func field(m any, path ...string) any {
	for _, p := range path {
		mm, ok := m.(map[string]any)
		if !ok {
			return nil
		}
		m = mm[p]
	}
	return m
}

func str(m any, path ...string) string {
	s, _ := field(m, path...).(string)
	return s
}

func condIn(conds any, typ string) map[string]any {
	list, _ := conds.([]any)
	for _, c := range list {
		if cm, ok := c.(map[string]any); ok && cm["type"] == typ {
			return cm
		}
	}
	return nil
}

func condTrue(conds any, typ string) bool {
	c := condIn(conds, typ)
	return c != nil && c["status"] == "True"
}

func rv(m map[string]any) string { return str(m, "metadata", "resourceVersion") }

// gatewayAddr waits for Gateway ns/gw to be Programmed and returns its address.
func gatewayAddr(t *testing.T, ns string) string {
	t.Helper()
	var addr string
	if err := waitFor(20*time.Second, func() bool {
		g := cl.get(t, "gateway", ns, "gw")
		st := field(g, "status")
		addrs, _ := field(st, "addresses").([]any)
		if len(addrs) == 0 || !condTrue(field(st, "conditions"), "Programmed") {
			return false
		}
		addr = str(addrs[0], "value")
		return addr != ""
	}); err != nil {
		t.Fatalf("Gateway %s/gw not Programmed with an address: %v\n%v", ns, err, field(cl.get(t, "gateway", ns, "gw"), "status"))
	}
	return addr
}

func httpGet(addr, host, path string) (int, string) {
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	req.Host = host
	c := &http.Client{Timeout: 2 * time.Second}
	r, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

func waitHTTP(t *testing.T, addr, host, want string, code int, d time.Duration) {
	t.Helper()
	var got int
	var body string
	if err := waitFor(d, func() bool {
		got, body = httpGet(addr, host, "/")
		return got == code && strings.Contains(body, want)
	}); err != nil {
		t.Fatalf("GET http://%s/ Host %s: want %d %q, last %d %q", addr, host, code, want, got, body)
	}
}

// routesYAML is n HTTPRoutes prefix0..prefix<n-1> for hosts prefix<i>.example, to Service svc.
func routesYAML(ns, prefix, svc string, n int) string {
	y := ""
	for i := 0; i < n; i++ {
		y += "---\n" + routeYAML(ns, fmt.Sprintf("%s%d", prefix, i), fmt.Sprintf("%s%d.example", prefix, i), svc)
	}
	return y
}

// waitRouteStatuses waits until routes prefix0..prefix<n-1> each carry our parent status.
func waitRouteStatuses(t *testing.T, ns, prefix string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s%d", prefix, i)
		if err := waitFor(10*time.Second, func() bool { return len(routeParentsOf(t, ns, name)) == 1 }); err != nil {
			t.Fatalf("route %s has no status", name)
		}
	}
}

func routeParentsOf(t *testing.T, ns, name string) []any {
	r := cl.get(t, "httproute", ns, name)
	p, _ := field(r, "status", "parents").([]any)
	return p
}

// ---------------------------------------------------------------- tests

// Objects in, traffic and status out: the basic contract.
func TestTrafficAndStatus(t *testing.T) {
	ns, class, ctl := "t-basic", "ctl-basic", "pylon.dev/ctltest-basic"
	startPylon(t, ctl, "127.0.31.0/24")
	port := backend(t, "basic")
	cl.apply(t, baseYAML(ns, class, ctl)+"---\n"+serviceYAML(ns, "echo", port)+"---\n"+routeYAML(ns, "r1", "basic.example", "echo"))
	addr := gatewayAddr(t, ns)
	if !strings.HasPrefix(addr, "127.0.31.") {
		t.Fatalf("address %s not from the pool", addr)
	}
	waitHTTP(t, addr, "basic.example", "backend=basic", 200, 10*time.Second)

	gc := cl.get(t, "gatewayclass", "", class)
	if !condTrue(field(gc, "status", "conditions"), "Accepted") {
		t.Fatalf("GatewayClass not Accepted: %v", field(gc, "status"))
	}
	if f, _ := field(gc, "status", "supportedFeatures").([]any); len(f) == 0 {
		t.Fatalf("GatewayClass without supportedFeatures")
	}
	g := cl.get(t, "gateway", ns, "gw")
	gen := field(g, "metadata", "generation")
	for _, c := range field(g, "status", "conditions").([]any) {
		if c.(map[string]any)["observedGeneration"] != gen {
			t.Fatalf("condition %v: observedGeneration != generation %v", c, gen)
		}
	}
	ls, _ := field(g, "status", "listeners").([]any)
	if len(ls) != 1 || field(ls[0], "attachedRoutes") != float64(1) {
		t.Fatalf("listeners status: %v", ls)
	}
	var parents []any
	waitFor(10*time.Second, func() bool {
		parents = routeParentsOf(t, ns, "r1")
		return len(parents) == 1 && condTrue(field(parents[0], "conditions"), "Accepted") &&
			condTrue(field(parents[0], "conditions"), "ResolvedRefs")
	})
	if len(parents) != 1 || str(parents[0], "controllerName") != ctl ||
		!condTrue(field(parents[0], "conditions"), "Accepted") {
		t.Fatalf("route status: %v", parents)
	}
	// An EndpointSlice change reaches the data plane.
	port2 := backend(t, "basic-2")
	cl.apply(t, serviceYAML(ns, "echo", port2))
	waitHTTP(t, addr, "basic.example", "backend=basic-2", 200, 5*time.Second)
}

// Route status: our entries only; another controller's entries are kept as they are.
func TestStatusOwnParentsOnly(t *testing.T) {
	ns, class, ctl := "t-parents", "ctl-parents", "pylon.dev/ctltest-parents"
	port := backend(t, "parents")
	other := `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: ctl-parents-other
spec:
  controllerName: example.com/other
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: other
  namespace: t-parents
spec:
  gatewayClassName: ctl-parents-other
  listeners:
  - name: http
    port: 80
    protocol: HTTP
`
	cl.apply(t, baseYAML(ns, class, ctl)+"---\n"+other+"---\n"+serviceYAML(ns, "echo", port)+"---\n"+
		routeYAML(ns, "r", "parents.example", "echo", "  - name: gw\n", "  - name: other\n"))
	// the other controller's entry, written before pylon starts
	otherEntry := `{"status":{"parents":[{"parentRef":{"group":"gateway.networking.k8s.io","kind":"Gateway","name":"other"},` +
		`"controllerName":"example.com/other","conditions":[{"type":"Accepted","status":"True","reason":"Accepted",` +
		`"message":"theirs","lastTransitionTime":"2020-01-01T00:00:00Z","observedGeneration":1}]}]}}`
	if _, err := cl.kc("patch", "httproute", "r", "-n", ns, "--subresource=status", "--type=merge", "-p", otherEntry); err != nil {
		t.Fatal(err)
	}
	startPylon(t, ctl, "127.0.32.0/24", "--debounce-ms", "0") // 0: no debounce (compile at once)
	check := func(wantOurs bool) {
		t.Helper()
		var parents []any
		err := waitFor(15*time.Second, func() bool {
			parents = routeParentsOf(t, ns, "r")
			var theirs, ours int
			for _, p := range parents {
				switch str(p, "controllerName") {
				case "example.com/other":
					if str(p, "parentRef", "name") == "other" && str(condIn(field(p, "conditions"), "Accepted"), "message") == "theirs" {
						theirs++
					}
				case ctl:
					if str(p, "parentRef", "name") == "gw" && condTrue(field(p, "conditions"), "Accepted") {
						ours++
					}
				}
			}
			want := 0
			if wantOurs {
				want = 1
			}
			return theirs == 1 && ours == want && len(parents) == 1+want
		})
		if err != nil {
			t.Fatalf("route status.parents (want ours=%v, theirs kept): %v", wantOurs, parents)
		}
	}
	check(true)
	// our parentRef removed: our entry goes, theirs stays
	cl.apply(t, routeYAML(ns, "r", "parents.example", "echo", "  - name: other\n"))
	check(false)
}

// No status storms: nothing changes, nothing is written, across unrelated events and a restart.
func TestNoStatusWriteWhenUnchanged(t *testing.T) {
	ns, class, ctl := "t-quiet", "ctl-quiet", "pylon.dev/ctltest-quiet"
	p := startPylon(t, ctl, "127.0.33.0/24")
	port := backend(t, "quiet")
	cl.apply(t, baseYAML(ns, class, ctl)+"---\n"+serviceYAML(ns, "echo", port)+"---\n"+routeYAML(ns, "r", "quiet.example", "echo"))
	addr := gatewayAddr(t, ns)
	waitHTTP(t, addr, "quiet.example", "backend=quiet", 200, 10*time.Second)
	waitFor(10*time.Second, func() bool { return len(routeParentsOf(t, ns, "r")) == 1 })
	time.Sleep(1500 * time.Millisecond)
	snap := func() []string {
		return []string{rv(cl.get(t, "gatewayclass", "", class)), rv(cl.get(t, "gateway", ns, "gw")),
			rv(cl.get(t, "httproute", ns, "r"))}
	}
	before := snap()
	time.Sleep(2 * time.Second)
	if got := snap(); strings.Join(got, ",") != strings.Join(before, ",") {
		t.Fatalf("status written while nothing changed: resourceVersions %v -> %v", before, got)
	}
	// an event that recompiles but changes no status
	if _, err := cl.kc("annotate", "service", "echo", "-n", ns, "touched=1", "--overwrite"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if got := snap(); strings.Join(got, ",") != strings.Join(before, ",") {
		t.Fatalf("status written after an unrelated change: resourceVersions %v -> %v", before, got)
	}
	// a restart: same desired status, lastTransitionTime kept, nothing written
	p.stop()
	p.start(t)
	waitHTTP(t, addr, "quiet.example", "backend=quiet", 200, 10*time.Second)
	time.Sleep(2 * time.Second)
	if got := snap(); strings.Join(got, ",") != strings.Join(before, ",") {
		t.Fatalf("status written after a restart: resourceVersions %v -> %v", before, got)
	}
	// someone edits our status: it heals
	bad := `{"status":{"conditions":[{"type":"Programmed","status":"False","reason":"Pending","message":"vandal",` +
		`"lastTransitionTime":"2020-01-01T00:00:00Z","observedGeneration":1}]}}`
	if _, err := cl.kc("patch", "gateway", "gw", "-n", ns, "--subresource=status", "--type=merge", "-p", bad); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(5*time.Second, func() bool {
		return condTrue(field(cl.get(t, "gateway", ns, "gw"), "status", "conditions"), "Programmed")
	}); err != nil {
		t.Fatalf("edited status not healed")
	}
}

// The API server restarts: the data plane keeps serving, watches resume, new objects arrive.
func TestWatchResumesAfterAPIServerRestart(t *testing.T) {
	ns, class, ctl := "t-restart", "ctl-restart", "pylon.dev/ctltest-restart"
	p := startPylon(t, ctl, "127.0.34.0/24")
	port := backend(t, "restart")
	cl.apply(t, baseYAML(ns, class, ctl)+"---\n"+serviceYAML(ns, "echo", port)+"---\n"+routeYAML(ns, "r1", "one.example", "echo"))
	addr := gatewayAddr(t, ns)
	waitHTTP(t, addr, "one.example", "backend=restart", 200, 10*time.Second)
	failures := 0
	if err := cl.restartAPI(func() {
		for i := 0; i < 20; i++ {
			if code, _ := httpGet(addr, "one.example", "/"); code != 200 {
				failures++
			}
			time.Sleep(100 * time.Millisecond)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if failures > 0 {
		t.Fatalf("%d requests failed while the API server was down", failures)
	}
	cl.apply(t, routeYAML(ns, "r2", "two.example", "echo"))
	waitHTTP(t, addr, "two.example", "backend=restart", 200, 15*time.Second)
	if !strings.Contains(p.logText(), "retrying in") {
		t.Logf("note: pylon logged no watch error (reconnected before noticing)")
	}
}

// 410 Gone: pylon was away while etcd compacted past its resourceVersion; it lists again and
// sees the deletions it missed.
func TestRelistOn410(t *testing.T) {
	ns, class, ctl := "t-gone", "ctl-gone", "pylon.dev/ctltest-gone"
	p := startPylon(t, ctl, "127.0.35.0/24")
	port := backend(t, "gone")
	cl.apply(t, baseYAML(ns, class, ctl)+"---\n"+serviceYAML(ns, "echo", port)+"---\n"+routeYAML(ns, "r1", "old.example", "echo"))
	addr := gatewayAddr(t, ns)
	waitHTTP(t, addr, "old.example", "backend=gone", 200, 10*time.Second)

	p.cmd.Process.Signal(syscall.SIGSTOP)
	stopped := true
	defer func() {
		if stopped {
			p.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	// pylon's watch connections die while it cannot read them: nothing of what follows reaches it
	if err := cl.restartAPI(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.kc("delete", "httproute", "r1", "-n", ns); err != nil {
		t.Fatal(err)
	}
	cl.apply(t, routeYAML(ns, "r2", "new.example", "echo"))
	for i := 0; i < 5; i++ { // move every resource's revision along, then compact it all away
		cl.kc("annotate", "namespace", ns, fmt.Sprintf("bump=%d", i), "--overwrite")
	}
	if err := cl.compact(); err != nil {
		t.Fatal(err)
	}
	// a fresh watch cache starts after the compaction: pylon's resourceVersion is too old
	if err := cl.restartAPI(nil); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGCONT)
	stopped = false
	waitHTTP(t, addr, "new.example", "backend=gone", 200, 20*time.Second)
	waitHTTP(t, addr, "old.example", "", 404, 10*time.Second)
	if !strings.Contains(p.logText(), "is gone; listing again") {
		t.Fatalf("no 410 Gone in pylon's log (%s): the test did not exercise the relist", p.log)
	}
}

// A TLS Secret rotated in the API reaches the listener without a restart.
// tlsSecretYAML is a kubernetes.io/tls Secret.
func tlsSecretYAML(ns, name string, crt, key []byte) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata:
  name: %s
  namespace: %s
type: kubernetes.io/tls
data:
  tls.crt: %s
  tls.key: %s
`, name, ns, base64.StdEncoding.EncodeToString(crt), base64.StdEncoding.EncodeToString(key))
}

// httpsGatewayYAML is a Gateway with one HTTPS listener on 443 terminating with Secret secret.
func httpsGatewayYAML(ns, class, secret string) string {
	return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: %s
spec:
  gatewayClassName: %s
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    tls:
      mode: Terminate
      certificateRefs:
      - name: %s
`, ns, class, secret)
}

// programmedAddr waits for the Gateway to be Programmed and returns its address (skips the test
// when the build cannot terminate TLS).
func programmedAddr(t *testing.T, ns string) string {
	t.Helper()
	var addr string
	if err := waitFor(20*time.Second, func() bool {
		g := cl.get(t, "gateway", ns, "gw")
		addrs, _ := field(g, "status", "addresses").([]any)
		if len(addrs) > 0 {
			addr = str(addrs[0], "value")
		}
		return condTrue(field(g, "status", "conditions"), "Programmed")
	}); err != nil {
		t.Skipf("HTTPS listener never Programmed (TLS termination not in this build?): %v",
			field(cl.get(t, "gateway", ns, "gw"), "status"))
	}
	return addr
}

// certSerial is the serial number of the certificate addr:443 presents for host, -1 if none.
func certSerial(addr, host string) int64 {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr+":443",
		&tls.Config{ServerName: host, InsecureSkipVerify: true})
	if err != nil {
		return -1
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func waitSerial(t *testing.T, addr string, want int64, what string) {
	t.Helper()
	if err := waitFor(10*time.Second, func() bool { return certSerial(addr, "secure.example") == want }); err != nil {
		t.Fatalf("%s not served (serial %d, want %d)", what, certSerial(addr, "secure.example"), want)
	}
}

func TestSecretRotation(t *testing.T) {
	ns, class, ctl := "t-secret", "ctl-secret", "pylon.dev/ctltest-secret"
	startPylon(t, ctl, "127.0.36.0/24")
	port := backend(t, "secret")
	certA, keyA, serialA := selfSigned(t, "secure.example", 1001)
	certB, keyB, serialB := selfSigned(t, "secure.example", 2002)
	cl.apply(t, nsClassYAML(ns, class, ctl)+"---\n"+httpsGatewayYAML(ns, class, "cert")+"---\n"+
		tlsSecretYAML(ns, "cert", certA, keyA)+"---\n"+serviceYAML(ns, "echo", port)+"---\n"+
		routeYAML(ns, "r", "secure.example", "echo"))
	addr := programmedAddr(t, ns)
	waitSerial(t, addr, serialA, "the first certificate")
	cl.apply(t, tlsSecretYAML(ns, "cert", certB, keyB))
	waitSerial(t, addr, serialB, "the rotated certificate")
}

// TestSecretNamedLater: Secrets are watched as metadata and read only once a Gateway names them.
// A Secret created after the Gateway that names it is read and served; a Secret that existed while
// nothing named it is read when the Gateway is changed to name it.
func TestSecretNamedLater(t *testing.T) {
	ns, class, ctl := "t-secret2", "ctl-secret2", "pylon.dev/ctltest-secret2"
	startPylon(t, ctl, "127.0.37.0/24")
	port := backend(t, "secret2")
	certA, keyA, serialA := selfSigned(t, "secure.example", 3003)
	certB, keyB, serialB := selfSigned(t, "secure.example", 4004)
	cl.apply(t, nsClassYAML(ns, class, ctl)+"---\n"+tlsSecretYAML(ns, "early", certB, keyB)+"---\n"+
		httpsGatewayYAML(ns, class, "late")+"---\n"+serviceYAML(ns, "echo", port)+"---\n"+
		routeYAML(ns, "r", "secure.example", "echo"))
	if err := waitFor(20*time.Second, func() bool {
		ls, _ := field(cl.get(t, "gateway", ns, "gw"), "status", "listeners").([]any)
		c := condIn(field(firstOr(ls), "conditions"), "ResolvedRefs")
		return c != nil && c["status"] == "False" && c["reason"] == "InvalidCertificateRef"
	}); err != nil {
		t.Fatalf("listener naming a missing Secret: want ResolvedRefs=False InvalidCertificateRef: %v",
			field(cl.get(t, "gateway", ns, "gw"), "status"))
	}
	cl.apply(t, tlsSecretYAML(ns, "late", certA, keyA))
	addr := programmedAddr(t, ns)
	waitSerial(t, addr, serialA, "the Secret created after the Gateway")
	cl.apply(t, httpsGatewayYAML(ns, class, "early"))
	waitSerial(t, addr, serialB, "the Secret named after it was created")
}

func firstOr(l []any) any {
	if len(l) == 0 {
		return nil
	}
	return l[0]
}

func selfSigned(t *testing.T, host string, serial int64) ([]byte, []byte, int64) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: host},
		DNSNames: []string{host}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), serial
}

// --publish-service: Gateways report the load-balancer addresses of the Service fronting pylon.
func TestPublishService(t *testing.T) {
	ns, class, ctl := "t-publish", "ctl-publish", "pylon.dev/ctltest-publish"
	port := freePort()
	p := &pylon{admin: fmt.Sprintf("127.0.0.1:%d", freePort()),
		log: filepath.Join(cl.dir, "TestPublishService.pylon.log")}
	p.args = []string{"run", "--kubeconfig", cl.kubeconfig, "--controller-name", ctl,
		"--publish-service", ns + "/front", "--admin", p.admin, "--workers", "1", "--log-level", "debug"}
	p.start(t)
	t.Cleanup(func() { p.stop() })
	cl.apply(t, fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
---
apiVersion: v1
kind: Service
metadata:
  name: front
  namespace: %[1]s
spec:
  type: LoadBalancer
  ports:
  - name: http
    port: 80
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: %[2]s
spec:
  controllerName: %[3]s
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: %[1]s
spec:
  gatewayClassName: %[2]s
  listeners:
  - name: http
    port: %[4]d
    protocol: HTTP
`, ns, class, ctl, port))
	if err := waitFor(15*time.Second, func() bool {
		c := condIn(field(cl.get(t, "gateway", ns, "gw"), "status", "conditions"), "Programmed")
		return c != nil && c["reason"] == "AddressNotAssigned"
	}); err != nil {
		t.Fatalf("without a load-balancer address: want Programmed=False AddressNotAssigned: %v",
			field(cl.get(t, "gateway", ns, "gw"), "status"))
	}
	lb := `{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.77"}]}}}`
	if _, err := cl.kc("patch", "service", "front", "-n", ns, "--subresource=status", "--type=merge", "-p", lb); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(15*time.Second, func() bool {
		st := field(cl.get(t, "gateway", ns, "gw"), "status")
		addrs, _ := field(st, "addresses").([]any)
		return len(addrs) == 1 && str(addrs[0], "value") == "192.0.2.77" && condTrue(field(st, "conditions"), "Programmed")
	}); err != nil {
		t.Fatalf("Gateway does not report the published address: %v", field(cl.get(t, "gateway", ns, "gw"), "status"))
	}
}

// A ListenerSet's listeners are Programmed only when bound on the parent Gateway's address: one on
// a port someone else holds there is Programmed=False Invalid with the bind error, a free one True.
func TestListenerSetProgrammedMeansBound(t *testing.T) {
	ns, class, ctl := "t-lset", "ctl-lset", "pylon.dev/ctltest-lset"
	startPylon(t, ctl, "127.0.38.0/24")
	// the first pool address, with a port already taken on it
	held, err := net.Listen("tcp", "127.0.38.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	busy := held.Addr().(*net.TCPAddr).Port
	free := freePort()
	cl.apply(t, nsClassYAML(ns, class, ctl)+"---\n"+fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: %[1]s
spec:
  gatewayClassName: %[2]s
  allowedListeners:
    namespaces:
      from: Same
  listeners:
  - name: http
    port: 80
    protocol: HTTP
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata:
  name: ls
  namespace: %[1]s
spec:
  parentRef:
    name: gw
  listeners:
  - name: busy
    port: %[3]d
    protocol: HTTP
  - name: free
    port: %[4]d
    protocol: HTTP
`, ns, class, busy, free))
	if addr := gatewayAddr(t, ns); addr != "127.0.38.1" {
		t.Fatalf("Gateway address %s, want 127.0.38.1", addr)
	}
	var ls []any
	want := func() bool {
		o := cl.get(t, "listenerset", ns, "ls")
		ls, _ = field(o, "status", "listeners").([]any)
		if len(ls) != 2 {
			return false
		}
		okBusy, okFree := false, false
		for _, l := range ls {
			conds := field(l, "conditions")
			switch str(l, "name") {
			case "busy":
				for _, c := range conds.([]any) {
					if str(c, "type") == "Programmed" && str(c, "status") == "False" && str(c, "reason") == "Invalid" &&
						strings.Contains(str(c, "message"), "cannot listen") {
						okBusy = true
					}
				}
			case "free":
				okFree = condTrue(conds, "Programmed")
			}
		}
		return okBusy && okFree
	}
	if waitFor(15*time.Second, want) != nil {
		t.Fatalf("ListenerSet listeners status: %v", ls)
	}
}

// The API server echoes every status write back as a watch event that changes nothing the compiler
// reads. Such an echo must not count as a change of the route: the next compile (here: one new
// route) reuses the routes compiled before, instead of building every route whose status came back.
func TestStatusEchoKeepsCompiledRoutes(t *testing.T) {
	ns, class, ctl := "t-echo", "ctl-echo", "pylon.dev/ctltest-echo"
	p := startPylon(t, ctl, "127.0.39.0/24")
	port := backend(t, "echo")
	cl.apply(t, baseYAML(ns, class, ctl)+"---\n"+serviceYAML(ns, "echo", port)+routesYAML(ns, "r", "echo", 5))
	addr := gatewayAddr(t, ns)
	waitHTTP(t, addr, "r4.example", "backend=echo", 200, 10*time.Second)
	waitRouteStatuses(t, ns, "r", 5)
	time.Sleep(500 * time.Millisecond) // the last echoes reach pylon
	off := len(p.logText())
	cl.apply(t, routeYAML(ns, "r5", "r5.example", "echo"))
	waitHTTP(t, addr, "r5.example", "backend=echo", 200, 10*time.Second)
	m := regexp.MustCompile(`routes (\d+) built, (\d+) reused`).FindStringSubmatch(p.logText()[off:])
	if m == nil {
		t.Fatalf("no compile logged after creating r5:\n%s", p.logText()[off:])
	}
	// other tests' routes, left in the cluster, are compiled (and reused) too
	if reused, _ := strconv.Atoi(m[2]); m[1] != "1" || reused < 5 {
		t.Fatalf("compile after one new route: %s built, %s reused; want 1 built, at least 5 reused (status "+
			"echoes must not invalidate compiled routes)", m[1], m[2])
	}
}

// Routes arriving one after another change the Gateway's attachedRoutes with every compile. A
// Gateway write sent while the watch has not yet shown the previous one carries a resourceVersion
// that write already moved on: a 409 for sure. pylon waits for the watch instead, so a burst of
// routes costs no refused writes (and no pass over every object to recover from them).
func TestBurstWritesWithoutConflicts(t *testing.T) {
	ns, class, ctl := "t-burst", "ctl-burst", "pylon.dev/ctltest-burst"
	p := startPylon(t, ctl, "127.0.41.0/24")
	port := backend(t, "burst")
	cl.apply(t, baseYAML(ns, class, ctl)+"---\n"+serviceYAML(ns, "echo", port))
	addr := gatewayAddr(t, ns)
	off := len(p.logText())
	const n = 40
	cl.apply(t, routesYAML(ns, "b", "echo", n))
	waitHTTP(t, addr, fmt.Sprintf("b%d.example", n-1), "backend=burst", 200, 10*time.Second)
	if err := waitFor(15*time.Second, func() bool {
		ls, _ := field(cl.get(t, "gateway", ns, "gw"), "status", "listeners").([]any)
		return len(ls) == 1 && field(ls[0], "attachedRoutes") == float64(n)
	}); err != nil {
		t.Fatalf("attachedRoutes did not reach %d", n)
	}
	waitRouteStatuses(t, ns, "b", n)
	log := p.logText()[off:]
	if c := strings.Count(log, "conflict; writing again"); c > 0 {
		t.Fatalf("%d status writes refused with 409 during a burst of %d routes", c, n)
	}
	if c := strings.Count(log, "status pass (all objects)"); c > 0 {
		t.Fatalf("%d passes over every object during a burst of %d routes", c, n)
	}
}
