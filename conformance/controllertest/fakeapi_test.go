package controllertest

// Tests against a fake API server (plain HTTP, answers scripted per request) for the failure modes
// a real kube-apiserver cannot be made to produce on demand: a 410 on every watch, a list page with
// a duplicate key.

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeAPI struct {
	mu      sync.Mutex
	lists   map[string][]time.Time // plural -> when each LIST came
	watches map[string]int
	// answers
	watch410 bool   // every watch: an ERROR event with code 410
	dupList  string // plural whose list pages carry a duplicate key
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	plural := path.Base(r.URL.Path)
	w.Header().Set("Content-Type", "application/json")
	if r.Method != "GET" {
		w.WriteHeader(404)
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`)
		return
	}
	if r.URL.Query().Get("watch") != "" {
		f.mu.Lock()
		f.watches[plural]++
		f.mu.Unlock()
		w.WriteHeader(200)
		if f.watch410 {
			fmt.Fprint(w, `{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure",`+
				`"reason":"Expired","message":"too old resource version","code":410}}`+"\n")
			return
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done() // a quiet watch, until pylon hangs up
		return
	}
	f.mu.Lock()
	f.lists[plural] = append(f.lists[plural], time.Now())
	f.mu.Unlock()
	if plural == f.dupList {
		fmt.Fprint(w, `{"kind":"List","apiVersion":"v1","metadata":{"resourceVersion":"5"},"items":[],"items":[]}`)
		return
	}
	fmt.Fprint(w, `{"kind":"List","apiVersion":"v1","metadata":{"resourceVersion":"5"},"items":[]}`)
}

func (f *fakeAPI) listTimes(plural string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.lists[plural]...)
}

// runFake serves f and runs pylon against it for d, then stops pylon and returns its log.
func runFake(t *testing.T, f *fakeAPI, d time.Duration) string {
	t.Helper()
	f.lists, f.watches = map[string][]time.Time{}, map[string]int{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: f}
	go srv.Serve(l)
	defer srv.Close()
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: http://%s
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
current-context: fake
users:
- name: fake
  user:
    token: fake
`, l.Addr())), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &pylon{admin: fmt.Sprintf("127.0.0.1:%d", freePort()),
		log: filepath.Join(cl.dir, strings.ReplaceAll(t.Name(), "/", "_")+".pylon.log")}
	p.cmd = exec.Command(os.Getenv("PYLON_BIN"), "run", "--kubeconfig", kc, "--no-leader-election",
		"--admin", p.admin, "--workers", "1", "--log-level", "debug")
	if err := startLogged(p.cmd, p.log); err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	p.stop()
	return p.logText()
}

// A server that answers every watch with 410 Gone: the first 410 relists at once, the ones that
// keep coming back off (growing, capped) instead of relisting in a tight loop.
func TestRepeated410BacksOff(t *testing.T) {
	f := &fakeAPI{watch410: true}
	log := runFake(t, f, 5*time.Second)
	lists := f.listTimes("httproutes")
	// backoff after the 2nd, 3rd... 410: >= 100, 200, 400, 800, 1600 ms (jitter 50%..150%)
	if len(lists) < 3 || len(lists) > 12 {
		t.Fatalf("%d HTTPRoute lists in 5 s against a server that always answers 410 (want 3..12)\n%s",
			len(lists), tail(log, 30))
	}
	if !strings.Contains(log, "is gone; listing again") || !strings.Contains(log, "is gone again; listing again in") {
		t.Fatalf("410s not logged as expected:\n%s", tail(log, 30))
	}
	// the gaps grow: the last one is longer than the first (which follows a single 410: at once)
	first, last := lists[1].Sub(lists[0]), lists[len(lists)-1].Sub(lists[len(lists)-2])
	if last <= first || last < 200*time.Millisecond {
		t.Fatalf("relist gaps do not grow: first %v, last %v", first, last)
	}
}

// A list page with a duplicate key is hostile input: the list fails, is retried with backoff and
// logged once.
func TestListDuplicateKeyRejected(t *testing.T) {
	f := &fakeAPI{dupList: "httproutes"}
	log := runFake(t, f, 4*time.Second)
	lists := f.listTimes("httproutes")
	if len(lists) < 2 || len(lists) > 10 {
		t.Fatalf("%d HTTPRoute lists in 4 s (want 2..10: retried with backoff)\n%s", len(lists), tail(log, 30))
	}
	warns := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, " warn ") && strings.Contains(line, "duplicate") {
			warns++
		}
	}
	if warns != 1 {
		t.Fatalf("%d warnings about the duplicate key (want 1)\n%s", warns, tail(log, 30))
	}
	if n := len(f.listTimes("gateways")); n != 1 {
		t.Fatalf("Gateway listed %d times (want 1: only the bad kind retries)", n)
	}
}

// A watch that stays silent (connection up, no byte, no bookmark) is dropped after 90 s and resumed
// from its resourceVersion. Takes 100 s: runs only with PYLON_CTLTEST_SLOW=1.
func TestSilentWatchResumed(t *testing.T) {
	if os.Getenv("PYLON_CTLTEST_SLOW") != "1" {
		t.Skip("PYLON_CTLTEST_SLOW=1 runs this 100 s test")
	}
	f := &fakeAPI{}
	log := runFake(t, f, 100*time.Second)
	f.mu.Lock()
	n, lists := f.watches["httproutes"], len(f.lists["httproutes"])
	f.mu.Unlock()
	if n < 2 || lists != 1 || !strings.Contains(log, "HTTPRoute watch: no data for 90 s; resuming from resourceVersion 5") {
		t.Fatalf("silent HTTPRoute watch: %d watches, %d lists (want >= 2, 1)\n%s", n, lists, tail(log, 30))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
