package controllertest

// The propagation and scale benchmark (bench/kube-propagation.sh runs it), modelled on the public
// gateway-api-bench: routes attached at scale, time from creating an HTTPRoute to the first 200
// through it, time for attachedRoutes to reach 1000, failed requests while routes change under
// load, and pylon's RSS at 5000 routes. Runs only with PYLON_CTLBENCH=1; writes a Markdown summary
// to PYLON_CTLBENCH_OUT (default: stdout only).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type rest struct {
	base string
	c    *http.Client
}

func newRest(t *testing.T) *rest {
	p := filepath.Join(cl.dir, "pki")
	cert, err := tls.LoadX509KeyPair(p+"/admin.crt", p+"/admin.key")
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := os.ReadFile(p + "/ca.crt")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	tr := &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool},
		MaxIdleConnsPerHost: 64, ForceAttemptHTTP2: true}
	return &rest{base: cl.apiserver, c: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (r *rest) do(method, path string, body []byte, ct string) (int, []byte, error) {
	req, _ := http.NewRequest(method, r.base+path, bytes.NewReader(body))
	if body != nil {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := r.c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, nil
}

func routeJSON(ns, name, host string) []byte {
	return []byte(fmt.Sprintf(`{"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute",`+
		`"metadata":{"name":%q,"namespace":%q},"spec":{"parentRefs":[{"name":"gw"}],"hostnames":[%q],`+
		`"rules":[{"backendRefs":[{"name":"echo","port":8080}]}]}}`, name, ns, host))
}

func (r *rest) createRoutes(t *testing.T, ns, prefix string, from, to, par int) {
	t.Helper()
	var wg sync.WaitGroup
	var fails atomic.Int64
	ch := make(chan int)
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				name := fmt.Sprintf("%s%d", prefix, i)
				code, b, err := r.do("POST", "/apis/gateway.networking.k8s.io/v1/namespaces/"+ns+"/httproutes",
					routeJSON(ns, name, name+".bench"), "application/json")
				if err != nil || (code != 201 && code != 409) {
					if fails.Add(1) < 5 {
						t.Logf("create %s: %d %v %s", name, code, err, b)
					}
				}
			}
		}()
	}
	for i := from; i < to; i++ {
		ch <- i
	}
	close(ch)
	wg.Wait()
	if fails.Load() > 0 {
		t.Fatalf("%d route creations failed", fails.Load())
	}
}

// watchAdded watches HTTPRoutes in ns from now on, on a connection of its own, and records when
// each ADDED event reaches this process: the API server's write and watch delivery measured by a
// second client, apart from pylon. Stop with the returned cancel function.
func (r *rest) watchAdded(t *testing.T, ns string) (map[string]time.Time, *sync.Mutex, func()) {
	t.Helper()
	code, b, err := r.do("GET", "/apis/gateway.networking.k8s.io/v1/namespaces/"+ns+"/httproutes?limit=1", nil, "")
	var list struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err != nil || code != 200 || json.Unmarshal(b, &list) != nil {
		t.Fatalf("list for watch: %d %v", code, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", r.base+"/apis/gateway.networking.k8s.io/v1/namespaces/"+ns+
		"/httproutes?watch=1&resourceVersion="+list.Metadata.ResourceVersion, nil)
	tr := r.c.Transport.(*http.Transport).Clone()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil || resp.StatusCode != 200 {
		cancel()
		t.Fatalf("watch: %v", err)
	}
	seen := map[string]time.Time{}
	var mu sync.Mutex
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			at := time.Now()
			var ev struct {
				Type   string `json:"type"`
				Object struct {
					Metadata struct {
						Name string `json:"name"`
					} `json:"metadata"`
				} `json:"object"`
			}
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Type == "ADDED" {
				mu.Lock()
				seen[ev.Object.Metadata.Name] = at
				mu.Unlock()
			}
		}
	}()
	return seen, &mu, cancel
}

func (r *rest) deleteRoute(ns, name string) {
	r.do("DELETE", "/apis/gateway.networking.k8s.io/v1/namespaces/"+ns+"/httproutes/"+name, nil, "")
}

func attached(t *testing.T, r *rest, ns string) int {
	code, b, err := r.do("GET", "/apis/gateway.networking.k8s.io/v1/namespaces/"+ns+"/gateways/gw", nil, "")
	if err != nil || code != 200 {
		return -1
	}
	m := regexp.MustCompile(`"attachedRoutes":(\d+)`).FindSubmatch(b)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func waitAttached(t *testing.T, r *rest, ns string, n int, d time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	for time.Since(t0) < d {
		if attached(t, r, ns) >= n {
			return time.Since(t0)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("attachedRoutes did not reach %d within %v (last %d)", n, d, attached(t, r, ns))
	return 0
}

// waitStatuses waits until n HTTPRoutes in ns carry a status from pylon: the status writes that
// follow a burst of creates are done (the API server is busy with them until then, and the
// propagation and memory measurements are about a cluster at rest).
func waitStatuses(t *testing.T, r *rest, ns string, n int, d time.Duration) {
	t.Helper()
	t0 := time.Now()
	last := -1
	for time.Since(t0) < d {
		code, b, err := r.do("GET", "/apis/gateway.networking.k8s.io/v1/namespaces/"+ns+"/httproutes", nil, "")
		if err == nil && code == 200 {
			if last = strings.Count(string(b), `"controllerName":"`); last >= n {
				return
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("route statuses did not reach %d within %v (last %d)", n, d, last)
}

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(p/100*float64(len(s)) + 0.5)
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

// cpuTicks returns the machine's total and steal CPU time (USER_HZ ticks, /proc/stat): steal is
// time the hypervisor ran something else while this VM had work, which no process here controls.
func cpuTicks() (total, steal int64) {
	b, _ := os.ReadFile("/proc/stat")
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
	for i := 1; i < len(f); i++ {
		n, _ := strconv.ParseInt(f[i], 10, 64)
		total += n
		if i == 8 {
			steal = n
		}
	}
	return
}

func rssKB(pid int, field string) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	m := regexp.MustCompile(field + `:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

var swapRe = regexp.MustCompile(`compile\+swap ([0-9.]+) ms, first event to swap ([0-9.]+) ms`)

var genRe = regexp.MustCompile(`(?m)^(\S+Z) info kubernetes: generation \d+: .*first event to swap ([0-9.]+) ms`)

// e2eParts splits each create -> first 200 sample into: create to the event reaching pylon (the
// API server's write and watch delivery), pylon's event -> swap, and swap to the first 200 (the
// client's polling). For each sample the first swap logged after its create is taken; log
// timestamps have millisecond resolution.
func e2eParts(log string, offset int, starts, ends []time.Time) (api, ctl, poll []float64) {
	type swap struct {
		at    time.Time
		event float64
	}
	var sw []swap
	for _, m := range genRe.FindAllStringSubmatch(log[offset:], -1) {
		at, err := time.Parse("2006-01-02T15:04:05.000Z", m[1])
		e, _ := strconv.ParseFloat(m[2], 64)
		if err == nil {
			sw = append(sw, swap{at, e})
		}
	}
	for i, st := range starts {
		for _, w := range sw {
			ev := w.at.Add(-time.Duration(w.event * float64(time.Millisecond)))
			if w.at.Before(st) || ev.Before(st.Add(-time.Millisecond)) {
				continue
			}
			api = append(api, float64(ev.Sub(st).Microseconds())/1000)
			ctl = append(ctl, w.event)
			poll = append(poll, float64(ends[i].Sub(w.at).Microseconds())/1000)
			break
		}
	}
	return
}

// controller latencies logged by pylon after offset
func swapTimes(log string, offset int) (compile, event []float64) {
	for _, m := range swapRe.FindAllStringSubmatch(log[offset:], -1) {
		c, _ := strconv.ParseFloat(m[1], 64)
		e, _ := strconv.ParseFloat(m[2], 64)
		compile = append(compile, c)
		event = append(event, e)
	}
	return
}

func TestBenchPropagation(t *testing.T) {
	if os.Getenv("PYLON_CTLBENCH") != "1" {
		t.Skip("PYLON_CTLBENCH=1 runs the benchmark (bench/kube-propagation.sh)")
	}
	nBase := 3000
	if v, err := strconv.Atoi(os.Getenv("PYLON_CTLBENCH_ROUTES")); err == nil && v > 0 {
		nBase = v
	}
	ns, class, ctl := "bench", "bench", "pylon.dev/bench"
	p := startPylon(t, ctl, "127.0.40.0/24")
	// info level: debug would log every connection of the probes
	p.stop()
	for i, a := range p.args {
		if a == "debug" {
			p.args[i] = "info"
			if v := os.Getenv("PYLON_CTLBENCH_LOG"); v != "" { // debug: what the controller thread does
				p.args[i] = v
			}
		}
	}
	p.start(t)
	port := backend(t, "bench")
	cl.apply(t, baseYAML(ns, class, ctl)+"---\n"+serviceYAML(ns, "echo", port))
	addr := gatewayAddr(t, ns)
	r := newRest(t)
	var out strings.Builder
	fmt.Fprintf(&out, "| measure | result | target |\n|---|---|---|\n")

	// 1. attachedRoutes reaching 1000 after creating 1000 routes
	t0 := time.Now()
	r.createRoutes(t, ns, "r", 0, 1000, 16)
	created := time.Since(t0)
	waitAttached(t, r, ns, 1000, 60*time.Second)
	att := time.Since(t0)
	fmt.Fprintf(&out, "| 1000 HTTPRoutes created (16 parallel clients) | %.2f s | |\n", created.Seconds())
	fmt.Fprintf(&out, "| first create to attachedRoutes = 1000 | %.2f s | < 1 s after the last create |\n", att.Seconds())
	fmt.Fprintf(&out, "| last create to attachedRoutes = 1000 | %.3f s | < 1 s |\n", (att - created).Seconds())

	// 2. up to nBase attached routes
	r.createRoutes(t, ns, "r", 1000, nBase, 16)
	waitAttached(t, r, ns, nBase, 120*time.Second)
	waitStatuses(t, r, ns, nBase, 180*time.Second)
	waitHTTP(t, addr, fmt.Sprintf("r%d.bench", nBase-1), "backend=bench", 200, 10*time.Second)

	// 3. propagation: new route -> first 200 (end to end), event -> swap (controller)
	off := len(p.logText())
	var e2e []float64
	var starts, ends []time.Time
	var byWatcher []float64
	seen, seenMu, stopWatch := r.watchAdded(t, ns)
	tot0, steal0 := cpuTicks()
	cli := &http.Client{Timeout: time.Second}
	for i := 0; i < 50; i++ {
		name := fmt.Sprintf("p%d", i)
		host := name + ".bench"
		t1 := time.Now()
		if code, b, err := r.do("POST", "/apis/gateway.networking.k8s.io/v1/namespaces/"+ns+"/httproutes",
			routeJSON(ns, name, host), "application/json"); err != nil || code != 201 {
			t.Fatalf("create %s: %d %v %s", name, code, err, b)
		}
		for {
			req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
			req.Host = host
			resp, err := cli.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Since(t1) > 10*time.Second {
				t.Fatalf("route %s never served", name)
			}
			time.Sleep(200 * time.Microsecond)
		}
		e2e = append(e2e, float64(time.Since(t1).Microseconds())/1000)
		starts = append(starts, t1.UTC())
		ends = append(ends, time.Now().UTC())
		time.Sleep(30 * time.Millisecond)
		seenMu.Lock()
		if at, ok := seen[name]; ok {
			byWatcher = append(byWatcher, float64(at.Sub(t1).Microseconds())/1000)
			if e := e2e[len(e2e)-1]; e > 50 {
				t.Logf("slow sample %s: create -> first 200 %.1f ms, create -> ADDED at the second watcher %.1f ms",
					name, e, byWatcher[len(byWatcher)-1])
			}
		}
		seenMu.Unlock()
	}
	stopWatch()
	tot1, steal1 := cpuTicks()
	compile, event := swapTimes(p.logText(), off)
	pAPI, pCtl, pPoll := e2eParts(p.logText(), off, starts, ends)
	fmt.Fprintf(&out, "| create HTTPRoute -> first 200, %d routes attached (n=50) | p50 %.1f ms, p99 %.1f ms, max %.1f ms | p99 < 100 ms |\n",
		nBase, pct(e2e, 50), pct(e2e, 99), pct(e2e, 100))
	fmt.Fprintf(&out, "| watch event -> table swap (controller, n=%d compiles) | p50 %.1f ms, p99 %.1f ms | p99 < 10 ms |\n",
		len(event), pct(event, 50), pct(event, 99))
	fmt.Fprintf(&out, "| compile + swap alone | p50 %.1f ms, p99 %.1f ms | |\n", pct(compile, 50), pct(compile, 99))
	fmt.Fprintf(&out, "| create -> first 200, in parts (n=%d matched): create -> event at pylon / event -> swap / swap -> first 200 | p50 %.1f / %.1f / %.1f ms, p99 %.1f / %.1f / %.1f ms | |\n",
		len(pAPI), pct(pAPI, 50), pct(pCtl, 50), pct(pPoll, 50), pct(pAPI, 99), pct(pCtl, 99), pct(pPoll, 99))
	fmt.Fprintf(&out, "| create -> ADDED event at a second watcher (the bench's own, n=%d) | p50 %.1f ms, p99 %.1f ms, max %.1f ms | |\n",
		len(byWatcher), pct(byWatcher, 50), pct(byWatcher, 99), pct(byWatcher, 100))
	if tot1 > tot0 {
		fmt.Fprintf(&out, "| CPU time stolen by the hypervisor during those 50 samples | %.1f %% | |\n",
			100*float64(steal1-steal0)/float64(tot1-tot0))
	}

	// 4. failed requests while routes change under load
	var ok, bad atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 2 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
				req.Host = "r0.bench"
				resp, err := c.Do(req)
				if err != nil {
					bad.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				} else {
					bad.Add(1)
				}
			}
		}()
	}
	churn0 := time.Now()
	for i := 0; i < 100; i++ {
		r.createRoutes(t, ns, "c", i, i+1, 1)
		if i >= 10 {
			r.deleteRoute(ns, fmt.Sprintf("c%d", i-10))
		}
	}
	churn := time.Since(churn0)
	close(stop)
	wg.Wait()
	fmt.Fprintf(&out, "| requests failed while 100 routes were created and 90 deleted (%.1f s, 4 clients) | %d of %d | 0 |\n",
		churn.Seconds(), bad.Load(), ok.Load()+bad.Load())

	// 5. RSS at 5000 routes
	total := 5000
	r.createRoutes(t, ns, "r", nBase, total, 16)
	waitAttached(t, r, ns, total+50+10, 120*time.Second)
	waitStatuses(t, r, ns, total+50+10, 180*time.Second)
	off = len(p.logText())
	// a change the compiler reads (pylon drops annotations on arrival: annotating would not compile)
	cl.kc("label", "endpointslice", "echo-1", "-n", ns, "bench=1", "--overwrite")
	time.Sleep(time.Second)
	c5, _ := swapTimes(p.logText(), off)
	busy := rssKB(p.cmd.Process.Pid, "VmRSS")
	time.Sleep(7 * time.Second)                          // idle: pylon returns freed heap to the system (malloc_trim)
	if f := os.Getenv("PYLON_CTLBENCH_SMAPS"); f != "" { // where the idle RSS is, mapping by mapping
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", p.cmd.Process.Pid))
		os.WriteFile(f, b, 0o644)
	}
	fmt.Fprintf(&out, "| pylon RSS with %d HTTPRoutes attached (1 worker): just after a compile / idle / peak | %.1f / %.1f / %.1f MB | < 50 MB |\n",
		total+60, float64(busy)/1024, float64(rssKB(p.cmd.Process.Pid, "VmRSS"))/1024,
		float64(rssKB(p.cmd.Process.Pid, "VmHWM"))/1024)
	if len(c5) > 0 {
		fmt.Fprintf(&out, "| full compile + swap at %d routes | %.1f ms | |\n", total+60, c5[len(c5)-1])
	}
	t.Log("\n" + out.String())
	if f := os.Getenv("PYLON_CTLBENCH_OUT"); f != "" {
		os.WriteFile(f, []byte(out.String()), 0o644)
	}
}
