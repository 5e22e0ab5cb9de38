package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// podinit's options: what the agent decided from the pod spec (security.go), applied here, inside
// the pod's namespaces, because only a process in them can.
type podinitOpts struct {
	binds      []string // SRC:DST[:ro]
	sysctls    []string // name=value, net.* only: per network namespace
	hostNS     string
	workdir    string
	hostname   string
	roRoot     bool
	noNewPrivs bool
	uid, gid   int // -1: keep (root)
	groups     []int
}

// podinitMain runs as `ip netns exec <ns> nodeagent podinit --host-mntns NS [options] -- PROGRAM
// ARGS...`. `ip netns exec` has already entered the pod's network namespace and a fresh mount
// namespace whose root is a slave of the host's, so bind mounts made here are seen by this process
// only. We refuse to mount anything in the host's mount namespace: a bind mount over /etc/... there
// would leak onto the host.
//
// Options: --bind SRC:DST[:ro] (repeated), --sysctl NAME=VALUE (net.* only, repeated), --ro-root
// (the root mount read-only), --hostname H (own UTS namespace), --workdir D, --uid N, --gid N,
// --groups N,N..., --no-new-privs. Everything that needs root happens before the ids change.
func podinitMain(args []string) int {
	o, prog, msg := parsePodinit(args)
	if msg != "" {
		return podinitFail(msg)
	}
	// Namespace changes (unshare) and no_new_privs are per thread; exec keeps the calling
	// thread's, so all of it happens on this one.
	runtime.LockOSThread()
	if len(o.binds) > 0 || o.roRoot {
		// The agent passes its own mount namespace (/proc/1 may not be readable in a sandbox).
		self, err := os.Readlink("/proc/self/ns/mnt")
		if err != nil || o.hostNS == "" || self == o.hostNS {
			return podinitFail("not in a private mount namespace; refusing to mount anything")
		}
		if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
			return podinitFail("make / private: " + err.Error())
		}
	}
	for _, b := range o.binds {
		if msg := bindOne(b); msg != "" {
			return podinitFail(msg)
		}
	}
	for _, s := range o.sysctls {
		name, val, _ := strings.Cut(s, "=")
		// /proc/sys/net belongs to the network namespace of the process that opens it: ours.
		p := "/proc/sys/" + sysctlPath(name)
		if err := os.WriteFile(p, []byte(val), 0); err != nil {
			return podinitFail(fmt.Sprintf("sysctl %s=%s: %v", name, val, err))
		}
	}
	if o.roRoot {
		// Only the root mount: the pod's own binds keep their flags, as in a container whose
		// volumes are writable under a read-only root.
		if err := syscall.Mount("", "/", "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			return podinitFail("read-only root: " + err.Error())
		}
	}
	if o.hostname != "" {
		if err := syscall.Unshare(syscall.CLONE_NEWUTS); err != nil {
			return podinitFail("UTS namespace: " + err.Error())
		}
		if err := syscall.Sethostname([]byte(o.hostname)); err != nil {
			return podinitFail("hostname: " + err.Error())
		}
	}
	if o.workdir != "" {
		if err := os.Chdir(o.workdir); err != nil {
			return podinitFail("workdir: " + err.Error())
		}
	}
	if o.uid >= 0 || o.gid >= 0 || o.groups != nil {
		if err := syscall.Setgroups(o.groups); err != nil {
			return podinitFail("setgroups: " + err.Error())
		}
	}
	if o.gid >= 0 {
		if err := syscall.Setgid(o.gid); err != nil {
			return podinitFail("setgid: " + err.Error())
		}
	}
	if o.uid >= 0 {
		// From root to another uid: the kernel clears every capability.
		if err := syscall.Setuid(o.uid); err != nil {
			return podinitFail("setuid: " + err.Error())
		}
	}
	if o.noNewPrivs {
		const prSetNoNewPrivs = 38
		if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0); e != 0 {
			return podinitFail("no_new_privs: " + e.Error())
		}
	}
	if err := syscall.Exec(prog[0], prog, os.Environ()); err != nil {
		return podinitFail(fmt.Sprintf("exec %s: %v", prog[0], err))
	}
	return 0
}

func parsePodinit(args []string) (o podinitOpts, prog []string, msg string) {
	o.uid, o.gid = -1, -1
	i := 0
	val := func(what string) (string, bool) {
		if i+1 >= len(args) {
			msg = args[i] + " needs " + what
			return "", false
		}
		i++
		return args[i], true
	}
	id := func(s string) (int, bool) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 1<<31-2 {
			msg = "bad id " + s
			return 0, false
		}
		return n, true
	}
	for ; i < len(args); i++ {
		var v string
		var ok bool
		switch args[i] {
		case "--bind":
			if v, ok = val("SRC:DST[:ro]"); ok {
				o.binds = append(o.binds, v)
			}
		case "--sysctl":
			if v, ok = val("NAME=VALUE"); ok {
				if name, value, found := strings.Cut(v, "="); !found || !namespacedSysctl(name) ||
					strings.ContainsAny(value, "\n\x00") {
					return o, nil, "bad or non-namespaced --sysctl " + v
				}
				o.sysctls = append(o.sysctls, v)
			}
		case "--host-mntns":
			v, ok = val("the agent's mount namespace")
			o.hostNS = v
		case "--workdir":
			v, ok = val("a directory")
			o.workdir = v
		case "--hostname":
			v, ok = val("a name")
			o.hostname = v
		case "--uid":
			if v, ok = val("a number"); ok {
				o.uid, ok = id(v)
			}
		case "--gid":
			if v, ok = val("a number"); ok {
				o.gid, ok = id(v)
			}
		case "--groups":
			if v, ok = val("N,N..."); ok {
				o.groups = []int{}
				for _, g := range strings.Split(v, ",") {
					var n int
					if g == "" {
						continue
					}
					if n, ok = id(g); !ok {
						break
					}
					o.groups = append(o.groups, n)
				}
			}
		case "--ro-root":
			o.roRoot, ok = true, true
		case "--no-new-privs":
			o.noNewPrivs, ok = true, true
		case "--":
			if i+1 >= len(args) {
				return o, nil, "no program after --"
			}
			return o, args[i+1:], ""
		default:
			return o, nil, "unknown argument " + args[i]
		}
		if !ok {
			if msg == "" {
				msg = "bad " + args[i]
			}
			return o, nil, msg
		}
	}
	return o, nil, "no program after --"
}

// bindOne bind-mounts SRC on DST (read-only with ":ro"); an error message or "".
func bindOne(b string) string {
	parts := strings.Split(b, ":")
	if len(parts) < 2 || len(parts) > 3 || !filepath.IsAbs(parts[0]) || !filepath.IsAbs(parts[1]) {
		return "bad --bind " + b
	}
	src, dst := parts[0], filepath.Clean(parts[1])
	ro := len(parts) == 3 && parts[2] == "ro"
	st, err := os.Stat(src)
	if err != nil {
		return err.Error()
	}
	// The mount point has to exist on the shared filesystem; an empty directory (or file) left
	// behind on the host is harmless, removing it later could detach other pods' mounts.
	if st.IsDir() {
		err = os.MkdirAll(dst, 0o755)
	} else if err = os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
		var f *os.File
		if f, err = os.OpenFile(dst, os.O_CREATE|os.O_RDONLY, 0o644); err == nil {
			f.Close()
		}
	}
	if err != nil {
		return fmt.Sprintf("mount point %s: %v", dst, err)
	}
	if err := syscall.Mount(src, dst, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		return fmt.Sprintf("bind %s on %s: %v", src, dst, err)
	}
	if ro {
		if err := syscall.Mount("", dst, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			return fmt.Sprintf("read-only %s: %v", dst, err)
		}
	}
	return ""
}

// namespacedSysctl: a net.* sysctl name (dots or slashes as separators), which the kernel keeps
// per network namespace, so setting it in the pod's namespace cannot touch the host. Other
// namespaced sysctls (kernel.shm*, kernel.msg*: IPC namespace) would need a namespace pods here
// do not have.
func namespacedSysctl(name string) bool {
	p := sysctlPath(name)
	if !strings.HasPrefix(p, "net/") || len(p) > 256 {
		return false
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." {
			return false
		}
	}
	return !strings.ContainsAny(p, "\x00\n= ")
}

// sysctlPath maps a sysctl name to its path under /proc/sys: "net.ipv4.ip_forward" ->
// "net/ipv4/ip_forward"; a name written with slashes keeps its dots (interface names like eth0.1).
func sysctlPath(name string) string {
	if strings.Contains(name, "/") {
		return name
	}
	return strings.ReplaceAll(name, ".", "/")
}

func podinitFail(msg string) int {
	fmt.Fprintf(os.Stderr, "nodeagent podinit: %s\n", msg)
	return 127
}
