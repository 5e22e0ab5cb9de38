package main

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
)

// imageUser is the user an image's config names (USER in its Dockerfile): the pylon image runs
// as 65532:65532 (the repository's Dockerfile); the others as root.
func imageUser(k imageKind) (uid, gid int64) {
	if k == kindPylon {
		return 65532, 65532
	}
	return 0, 0
}

// securityArgs turns the pod's and the container's securityContext into podinit options, as
// far as a process runtime can honour them:
//   - runAsUser/runAsGroup (container over pod over image), supplementalGroups and fsGroup as
//     supplementary groups; runAsNonRoot refuses a container that would run as uid 0, with the
//     kubelet's message;
//   - allowPrivilegeEscalation: false sets no_new_privs;
//   - readOnlyRootFilesystem makes the root mount read-only (volumes keep their own mode);
//   - pod sysctls: net.* ones are set in the pod's network namespace.
//
// Ignored, with no effect on the process: capabilities (a non-root process has none after
// setuid; a root one keeps the agent's), privileged, seccomp, AppArmor, SELinux, procMount,
// fsGroup ownership changes of volumes, sysctls outside net.* (logged).
func securityArgs(pod *corev1.Pod, c *corev1.Container, k imageKind) ([]string, error) {
	uid, gid := imageUser(k)
	var nonRoot *bool
	var groups []int64
	if ps := pod.Spec.SecurityContext; ps != nil {
		if ps.RunAsUser != nil {
			uid = *ps.RunAsUser
		}
		if ps.RunAsGroup != nil {
			gid = *ps.RunAsGroup
		}
		nonRoot = ps.RunAsNonRoot
		groups = append(groups, ps.SupplementalGroups...)
		if ps.FSGroup != nil {
			groups = append(groups, *ps.FSGroup)
		}
	}
	var args []string
	if cs := c.SecurityContext; cs != nil {
		if cs.RunAsUser != nil {
			uid = *cs.RunAsUser
		}
		if cs.RunAsGroup != nil {
			gid = *cs.RunAsGroup
		}
		if cs.RunAsNonRoot != nil {
			nonRoot = cs.RunAsNonRoot
		}
		if cs.AllowPrivilegeEscalation != nil && !*cs.AllowPrivilegeEscalation {
			args = append(args, "--no-new-privs")
		}
		if cs.ReadOnlyRootFilesystem != nil && *cs.ReadOnlyRootFilesystem {
			args = append(args, "--ro-root")
		}
	}
	if nonRoot != nil && *nonRoot && uid == 0 {
		return nil, fmt.Errorf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)",
			pod.Namespace+"/"+pod.Name, c.Name)
	}
	if uid < 0 || gid < 0 || uid > 1<<31-2 || gid > 1<<31-2 {
		return nil, fmt.Errorf("container %s: runAsUser/runAsGroup out of range", c.Name)
	}
	if uid != 0 || gid != 0 || len(groups) > 0 {
		g := make([]string, 0, len(groups))
		for _, n := range groups {
			if n < 0 || n > 1<<31-2 {
				return nil, fmt.Errorf("container %s: supplemental group %d out of range", c.Name, n)
			}
			g = append(g, strconv.FormatInt(n, 10))
		}
		args = append(args, "--uid", strconv.FormatInt(uid, 10), "--gid", strconv.FormatInt(gid, 10),
			"--groups", strings.Join(g, ","))
	}
	if ps := pod.Spec.SecurityContext; ps != nil {
		for _, s := range ps.Sysctls {
			if !namespacedSysctl(s.Name) || strings.ContainsAny(s.Value, "\n\x00") {
				klog.Warningf("pod %s/%s: sysctl %s not applied (only net.* sysctls are set, in the pod's network namespace)",
					pod.Namespace, pod.Name, s.Name)
				continue
			}
			args = append(args, "--sysctl", s.Name+"="+s.Value)
		}
	}
	return args, nil
}
