package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/klog/v2"
)

// hostMountNS is the agent's own mount namespace; podinit refuses to bind-mount in it.
var hostMountNS, _ = os.Readlink("/proc/self/ns/mnt")

type imageKind int

const (
	kindUnsupported imageKind = iota
	kindEcho                  // the upstream echo-basic server
	kindPylon                 // the pylon binary (--pylon-bin), the chart's image
	kindStub                  // no process; Ready at once (coredns, pause in the base manifests)
)

func (k imageKind) String() string {
	switch k {
	case kindEcho:
		return "echo-basic"
	case kindPylon:
		return "pylon"
	case kindStub:
		return "stub"
	}
	return "unsupported"
}

// imageName is the last path element of an image reference without tag or digest:
// "registry.k8s.io/gateway-api/echo-basic:v1.5.1" -> "echo-basic".
func imageName(image string) string {
	if i := strings.IndexByte(image, '@'); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndexByte(image, '/'); i >= 0 {
		image = image[i+1:]
	}
	if i := strings.IndexByte(image, ':'); i >= 0 {
		image = image[:i]
	}
	return image
}

func (a *agent) classify(image string) imageKind {
	n := imageName(image)
	switch n {
	case "echo-basic":
		return kindEcho
	case "pylon":
		return kindPylon
	}
	for _, s := range strings.Split(a.cfg.stubImages, ",") {
		if s = strings.TrimSpace(s); s != "" && s == n {
			return kindStub
		}
	}
	return kindUnsupported
}

// Exit of a container process, kept for lastState.
type exitInfo struct {
	code       int
	signal     string
	startedAt  time.Time
	finishedAt time.Time
}

type ctrRuntime struct {
	name  string
	image string
	kind  imageKind
	spec  corev1.Container

	logPath string

	// Guarded by podRuntime.mu.
	pid       int
	running   bool
	startedAt time.Time
	restarts  int32
	last      *exitInfo
	done      bool // terminated for good (restartPolicy says no restart)
	ready     bool
	waiting   string // waiting reason while not running (CrashLoopBackOff...)
}

type podRuntime struct {
	uid     types.UID
	key     string
	dir     string
	ip      net.IP
	hostIP  string
	created time.Time
	policy  corev1.RestartPolicy

	unsupported string // non-empty: we cannot run this pod, and why

	mu         sync.Mutex
	containers []*ctrRuntime

	stopCh   chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup // supervisors and prober
}

func (rt *podRuntime) stopping() bool {
	select {
	case <-rt.stopCh:
		return true
	default:
		return false
	}
}

// stop asks every process to terminate, waits up to 3 s, then kills what is left.
func (rt *podRuntime) stop() {
	rt.stopOnce.Do(func() { close(rt.stopCh) })
	rt.signalAll(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { rt.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(3 * time.Second):
	}
	rt.signalAll(syscall.SIGKILL)
	<-done
}

func (rt *podRuntime) signalAll(sig syscall.Signal) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, c := range rt.containers {
		if c.running && c.pid > 1 {
			_ = syscall.Kill(-c.pid, sig) // the process group: podinit execs the program in place
		}
	}
}

func (a *agent) startPod(ctx context.Context, pod *corev1.Pod) (*podRuntime, error) {
	key := pod.Namespace + "/" + pod.Name
	rt := &podRuntime{
		uid:     pod.UID,
		key:     key,
		dir:     filepath.Join(a.cfg.stateDir, "pods", string(pod.UID)),
		hostIP:  a.netw.gateway.String(),
		created: time.Now(),
		policy:  pod.Spec.RestartPolicy,
		stopCh:  make(chan struct{}),
	}
	var bad []string
	for _, c := range pod.Spec.InitContainers {
		if a.classify(c.Image) != kindStub {
			bad = append(bad, fmt.Sprintf("init container %s image %s", c.Name, c.Image))
		}
	}
	for _, c := range pod.Spec.Containers {
		k := a.classify(c.Image)
		if k == kindUnsupported {
			bad = append(bad, fmt.Sprintf("container %s image %s", c.Name, c.Image))
		}
		rt.containers = append(rt.containers, &ctrRuntime{
			name: c.Name, image: c.Image, kind: k, spec: c,
			logPath: filepath.Join(rt.dir, "logs", c.Name+".log"),
		})
	}
	if len(bad) > 0 {
		rt.unsupported = "unsupported image: the pylon node agent runs only echo-basic and pylon images (stubs: " +
			a.cfg.stubImages + "); cannot run " + strings.Join(bad, ", ")
		a.register(rt)
		klog.Warningf("pod %s: %s", key, rt.unsupported)
		return rt, nil
	}

	if err := os.MkdirAll(filepath.Join(rt.dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	ip, err := a.netw.allocate(string(pod.UID))
	if err != nil {
		return nil, err
	}
	if err := a.netw.setupPod(string(pod.UID), ip); err != nil {
		a.netw.release(ip)
		return nil, fmt.Errorf("pod network: %w", err)
	}
	rt.ip = ip
	fail := func(err error) (*podRuntime, error) {
		a.netw.teardownPod(string(pod.UID))
		a.netw.release(ip)
		_ = os.RemoveAll(rt.dir)
		return nil, err
	}
	configErr := func(err error) (*podRuntime, error) {
		a.writeWaiting(ctx, pod, "CreateContainerConfigError", err.Error())
		return fail(err)
	}
	vols, toks, err := a.materializeVolumes(ctx, pod, filepath.Join(rt.dir, "volumes"))
	if err != nil {
		return configErr(err)
	}
	saDir, saTok, err := a.automountDir(ctx, pod, filepath.Join(rt.dir, "serviceaccount"))
	if err != nil {
		return configErr(err)
	}
	if saTok != nil {
		toks = append(toks, saTok)
	}
	var refreshIn []time.Duration
	for _, tf := range toks {
		d, err := a.requestToken(ctx, pod, tf)
		if err != nil {
			return configErr(err)
		}
		refreshIn = append(refreshIn, d)
	}
	type launch struct {
		c     *ctrRuntime
		argv  []string
		env   []string
		binds []string
		extra []string // podinit options: securityContext, hostname
	}
	var launches []launch
	for _, c := range rt.containers {
		if c.kind == kindStub && imageName(c.spec.Image) != "coredns" {
			continue
		}
		env, err := a.resolveEnv(ctx, pod, &c.spec, ip.String())
		if err != nil {
			return configErr(err)
		}
		extra, err := securityArgs(pod, &c.spec, c.kind)
		if err != nil {
			return configErr(err)
		}
		extra = append(extra, "--hostname", podHostname(pod))
		var binds []string
		ownSA := false
		for _, m := range c.spec.VolumeMounts {
			src, ok := vols[m.Name]
			if !ok {
				err := fmt.Errorf("container %s: volume %q is not defined or not supported", c.name, m.Name)
				a.writeWaiting(ctx, pod, "CreateContainerConfigError", err.Error())
				return fail(err)
			}
			if m.SubPath != "" {
				if !filepath.IsLocal(m.SubPath) {
					return fail(fmt.Errorf("container %s: bad subPath %q", c.name, m.SubPath))
				}
				src = filepath.Join(src, m.SubPath)
			}
			if strings.Contains(src, ":") || strings.Contains(m.MountPath, ":") || !filepath.IsAbs(m.MountPath) {
				return fail(fmt.Errorf("container %s: unusable mount %s -> %s", c.name, src, m.MountPath))
			}
			b := src + ":" + m.MountPath
			if m.ReadOnly {
				b += ":ro"
			}
			binds = append(binds, b)
			ownSA = ownSA || filepath.Clean(m.MountPath) == saMountPath
		}
		if saDir != "" && !ownSA {
			binds = append(binds, saDir+":"+saMountPath+":ro")
		}
		var argv []string
		switch c.kind {
		case kindPylon:
			if argv, err = a.pylonArgv(&c.spec, env); err != nil {
				return configErr(err)
			}
		case kindStub: // coredns: answer DNS so UDPRoute traffic has a peer (dnsstub.go)
			self, err := os.Executable()
			if err != nil {
				return fail(err)
			}
			argv = []string{self, "dnsstub", "--listen", ":53"}
			binds, extra = nil, nil
		default:
			argv = append([]string{a.cfg.echoBasic}, c.spec.Args...)
		}
		launches = append(launches, launch{c: c, argv: argv, env: env, binds: binds, extra: extra})
	}
	a.register(rt)
	for _, l := range launches {
		rt.wg.Add(1)
		go a.supervise(rt, l.c, l.argv, l.env, l.binds, l.extra)
	}
	if len(toks) > 0 {
		rt.wg.Add(1)
		go a.refreshTokens(rt, pod.DeepCopy(), toks, refreshIn)
	}
	rt.wg.Add(1)
	go a.probe(rt)
	klog.Infof("started pod %s at %s", key, ip)
	return rt, nil
}

// pylonArgv is what the pylon image would run: its entrypoint (/usr/local/bin/pylon, the
// repository's Dockerfile) with the container's args; a command naming pylon replaces the
// entrypoint, any other command cannot run here. $(VAR) references expand as in the kubelet.
func (a *agent) pylonArgv(spec *corev1.Container, env []string) ([]string, error) {
	if a.cfg.pylonBin == "" {
		return nil, fmt.Errorf("container %s: image %s: the node agent was started without --pylon-bin", spec.Name, spec.Image)
	}
	if st, err := os.Stat(a.cfg.pylonBin); err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return nil, fmt.Errorf("container %s: image %s: pylon binary %s is missing or not executable (make build)",
			spec.Name, spec.Image, a.cfg.pylonBin)
	}
	vars := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	argv := []string{a.cfg.pylonBin}
	if len(spec.Command) > 0 {
		if filepath.Base(spec.Command[0]) != "pylon" {
			return nil, fmt.Errorf("container %s: command %q: only the pylon binary runs from image %s",
				spec.Name, spec.Command[0], spec.Image)
		}
		for _, s := range spec.Command[1:] {
			argv = append(argv, expandEnv(s, vars))
		}
	}
	for _, s := range spec.Args {
		argv = append(argv, expandEnv(s, vars))
	}
	return argv, nil
}

// podHostname is the pod's hostname (spec.hostname, else its name, at most 63 bytes).
func podHostname(pod *corev1.Pod) string {
	h := pod.Spec.Hostname
	if h == "" {
		h = pod.Name
	}
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}

func (a *agent) register(rt *podRuntime) {
	a.mu.Lock()
	a.running[rt.uid] = rt
	a.byKey[rt.key] = rt.uid
	a.mu.Unlock()
}

// supervise runs one container program, restarting it as the pod's restartPolicy says with a
// capped exponential back-off, until the pod stops.
func (a *agent) supervise(rt *podRuntime, c *ctrRuntime, argv, env, binds, extra []string) {
	defer rt.wg.Done()
	self, err := os.Executable()
	if err != nil {
		klog.Errorf("pod %s: %v", rt.key, err)
		return
	}
	backoff := time.Second
	for !rt.stopping() {
		args := []string{"netns", "exec", nsName(string(rt.uid)), self, "podinit", "--host-mntns", hostMountNS}
		for _, b := range binds {
			args = append(args, "--bind", b)
		}
		args = append(args, extra...)
		args = append(args, "--workdir", rt.dir, "--")
		args = append(args, argv...)
		cmd := exec.Command("ip", args...)
		cmd.Env = env
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if _, err := os.Stat(c.logPath); err == nil {
			_ = os.Rename(c.logPath, c.logPath+".prev")
		}
		lw, err := newLogWriter(c.logPath)
		if err != nil {
			klog.Errorf("pod %s: log file: %v", rt.key, err)
			return
		}
		stdout, _ := cmd.StdoutPipe()
		stderr, _ := cmd.StderrPipe()
		started := time.Now()
		if err := cmd.Start(); err != nil {
			lw.Close()
			klog.Errorf("pod %s container %s: %v", rt.key, c.name, err)
			rt.mu.Lock()
			c.waiting = "RunContainerError"
			rt.mu.Unlock()
		} else {
			rt.mu.Lock()
			c.pid = cmd.Process.Pid
			c.running = true
			c.startedAt = started
			c.waiting = ""
			rt.mu.Unlock()
			a.enqueueKey(rt.key)
			var pw sync.WaitGroup
			pw.Add(2)
			go func() { defer pw.Done(); lw.copyFrom(stdout, "stdout") }()
			go func() { defer pw.Done(); lw.copyFrom(stderr, "stderr") }()
			pw.Wait()
			err := cmd.Wait()
			lw.Close()
			ex := &exitInfo{startedAt: started, finishedAt: time.Now()}
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					ex.code = 128 + int(ws.Signal())
					ex.signal = ws.Signal().String()
				} else {
					ex.code = ee.ExitCode()
				}
			} else if err != nil {
				ex.code = 128
			}
			rt.mu.Lock()
			c.running = false
			c.ready = false
			c.pid = 0
			c.last = ex
			rt.mu.Unlock()
			if !rt.stopping() {
				klog.Infof("pod %s container %s exited with code %d", rt.key, c.name, ex.code)
			}
			if time.Since(started) > 30*time.Second {
				backoff = time.Second
			}
			if rt.stopping() {
				return
			}
			if rt.policy == corev1.RestartPolicyNever || (rt.policy == corev1.RestartPolicyOnFailure && ex.code == 0) {
				rt.mu.Lock()
				c.done = true
				rt.mu.Unlock()
				a.enqueueKey(rt.key)
				return
			}
		}
		rt.mu.Lock()
		c.restarts++
		if c.waiting == "" {
			c.waiting = "CrashLoopBackOff"
		}
		rt.mu.Unlock()
		a.enqueueKey(rt.key)
		select {
		case <-rt.stopCh:
			return
		case <-time.After(backoff):
		}
		if backoff *= 2; backoff > 10*time.Second {
			backoff = 10 * time.Second
		}
	}
}

// probe decides readiness every second: the process runs and, if the container has a readiness
// probe (HTTP GET or TCP), the probe passes; without one, an echo-basic container is ready once its
// HTTP port accepts connections.
func (a *agent) probe(rt *podRuntime) {
	defer rt.wg.Done()
	client := &http.Client{Timeout: time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-rt.stopCh:
			return
		case <-t.C:
		}
		// Fast while something is not ready yet, every 2 s afterwards.
		rt.mu.Lock()
		allReady := true
		for _, c := range rt.containers {
			if !c.ready && !c.done {
				allReady = false
			}
		}
		rt.mu.Unlock()
		if allReady && i%8 != 0 {
			continue
		}
		changed := false
		for _, c := range rt.containers {
			var ok bool
			rt.mu.Lock()
			running := c.running
			rt.mu.Unlock()
			switch {
			case c.kind == kindStub:
				ok = true
			case !running:
				ok = false
			case c.kind == kindPylon && c.spec.ReadinessProbe == nil:
				ok = true
			default:
				ok = probeOnce(client, rt.ip.String(), &c.spec)
			}
			rt.mu.Lock()
			if c.kind != kindStub && !c.running {
				ok = false
			}
			if c.ready != ok {
				c.ready = ok
				changed = true
			}
			rt.mu.Unlock()
		}
		if changed {
			a.enqueueKey(rt.key)
		}
	}
}

func portOf(spec *corev1.Container, p intstr.IntOrString) int {
	if p.Type == intstr.Int {
		return p.IntValue()
	}
	for _, cp := range spec.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort)
		}
	}
	return 0
}

func envOf(spec *corev1.Container, name string) string {
	for _, e := range spec.Env {
		if e.Name == name && e.ValueFrom == nil {
			return e.Value
		}
	}
	return ""
}

func probeOnce(client *http.Client, ip string, spec *corev1.Container) bool {
	if p := spec.ReadinessProbe; p != nil {
		switch {
		case p.HTTPGet != nil:
			scheme := "http"
			if p.HTTPGet.Scheme == corev1.URISchemeHTTPS {
				return tcpOK(ip, portOf(spec, p.HTTPGet.Port))
			}
			u := fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(ip, strconv.Itoa(portOf(spec, p.HTTPGet.Port))), p.HTTPGet.Path)
			resp, err := client.Get(u)
			if err != nil {
				return false
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			return resp.StatusCode >= 200 && resp.StatusCode < 400
		case p.TCPSocket != nil:
			return tcpOK(ip, portOf(spec, p.TCPSocket.Port))
		default:
			return true // exec and gRPC probes are not implemented: running counts as ready
		}
	}
	if envOf(spec, "UDP_ECHO_SERVER") != "" {
		return true
	}
	port := 3000
	if v, err := strconv.Atoi(envOf(spec, "HTTP_PORT")); err == nil && v > 0 {
		port = v
	}
	return tcpOK(ip, port)
}

func tcpOK(ip string, port int) bool {
	if port <= 0 || port > 65535 {
		return false
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(port)), 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// logWriter writes a container's output in the CRI log format ("<RFC3339Nano> <stream> <F|P>
// <text>"), which the log endpoint parses back. A log is capped at maxLogBytes.
type logWriter struct {
	mu      sync.Mutex
	f       *os.File
	written int64
	capped  bool
}

const maxLogBytes = 64 << 20

func newLogWriter(path string) (*logWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return &logWriter{f: f}, nil
}

func (w *logWriter) copyFrom(r io.Reader, stream string) {
	br := bufio.NewReaderSize(r, 16<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			tag := "P"
			if line[len(line)-1] == '\n' {
				tag = "F"
				line = line[:len(line)-1]
			}
			w.write(stream, tag, line)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func (w *logWriter) write(stream, tag string, line []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.capped {
		return
	}
	rec := make([]byte, 0, len(line)+48)
	rec = time.Now().UTC().AppendFormat(rec, time.RFC3339Nano)
	rec = append(rec, ' ')
	rec = append(rec, stream...)
	rec = append(rec, ' ')
	rec = append(rec, tag...)
	rec = append(rec, ' ')
	rec = append(rec, line...)
	rec = append(rec, '\n')
	if w.written+int64(len(rec)) > maxLogBytes {
		w.capped = true
		rec = append(time.Now().UTC().AppendFormat(nil, time.RFC3339Nano), " stderr F [nodeagent: log capped at 64 MiB]\n"...)
	}
	n, _ := w.f.Write(rec)
	w.written += int64(n)
}

func (w *logWriter) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.f.Close()
}
