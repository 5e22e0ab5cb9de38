package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// podinitMain runs as `ip netns exec <ns> nodeagent podinit --host-mntns NS [--bind SRC:DST[:ro]]...
// [--workdir D] -- PROGRAM ARGS...`. `ip netns exec` has already entered the pod's network namespace and a fresh
// mount namespace whose root is a slave of the host's, so bind mounts made here are seen by this
// process only. We refuse to run in the host's mount namespace: a bind mount over /etc/... there
// would leak onto the host.
func podinitMain(args []string) int {
	var binds []string
	workdir, hostNS := "", ""
	i := 0
	for ; i < len(args); i++ {
		switch args[i] {
		case "--bind":
			if i+1 >= len(args) {
				return podinitFail("--bind needs SRC:DST[:ro]")
			}
			binds = append(binds, args[i+1])
			i++
		case "--host-mntns":
			if i+1 >= len(args) {
				return podinitFail("--host-mntns needs the agent's mount namespace")
			}
			hostNS = args[i+1]
			i++
		case "--workdir":
			if i+1 >= len(args) {
				return podinitFail("--workdir needs a directory")
			}
			workdir = args[i+1]
			i++
		case "--":
			i++
			goto done
		default:
			return podinitFail("unknown argument " + args[i])
		}
	}
done:
	if i >= len(args) {
		return podinitFail("no program after --")
	}
	prog := args[i:]
	if len(binds) > 0 {
		// The agent passes its own mount namespace (/proc/1 may not be readable in a sandbox).
		self, err := os.Readlink("/proc/self/ns/mnt")
		if err != nil || hostNS == "" || self == hostNS {
			return podinitFail("not in a private mount namespace; refusing to bind-mount volumes")
		}
		if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
			return podinitFail("make / private: " + err.Error())
		}
	}
	for _, b := range binds {
		parts := strings.Split(b, ":")
		if len(parts) < 2 || len(parts) > 3 || !filepath.IsAbs(parts[0]) || !filepath.IsAbs(parts[1]) {
			return podinitFail("bad --bind " + b)
		}
		src, dst := parts[0], filepath.Clean(parts[1])
		ro := len(parts) == 3 && parts[2] == "ro"
		st, err := os.Stat(src)
		if err != nil {
			return podinitFail(err.Error())
		}
		// The mount point has to exist on the shared filesystem; an empty directory (or file) left
		// behind on the host is harmless, removing it later could detach other pods' mounts.
		if st.IsDir() {
			err = os.MkdirAll(dst, 0o755)
		} else {
			if err = os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
				var f *os.File
				if f, err = os.OpenFile(dst, os.O_CREATE|os.O_RDONLY, 0o644); err == nil {
					f.Close()
				}
			}
		}
		if err != nil {
			return podinitFail(fmt.Sprintf("mount point %s: %v", dst, err))
		}
		if err := syscall.Mount(src, dst, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
			return podinitFail(fmt.Sprintf("bind %s on %s: %v", src, dst, err))
		}
		if ro {
			if err := syscall.Mount("", dst, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
				return podinitFail(fmt.Sprintf("read-only %s: %v", dst, err))
			}
		}
	}
	if workdir != "" {
		if err := os.Chdir(workdir); err != nil {
			return podinitFail("workdir: " + err.Error())
		}
	}
	if err := syscall.Exec(prog[0], prog, os.Environ()); err != nil {
		return podinitFail(fmt.Sprintf("exec %s: %v", prog[0], err))
	}
	return 0
}

func podinitFail(msg string) int {
	fmt.Fprintf(os.Stderr, "nodeagent podinit: %s\n", msg)
	return 127
}
