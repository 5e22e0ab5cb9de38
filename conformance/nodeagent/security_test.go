package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ptr[T any](v T) *T { return &v }

// The chart's pod: pod-level runAsUser/runAsNonRoot/sysctls, container-level no privilege
// escalation, read-only root, capabilities dropped.
func TestSecurityArgsChartPod(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}, Spec: corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot: ptr(true), RunAsUser: ptr(int64(65532)), RunAsGroup: ptr(int64(65532)),
			Sysctls: []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: "0"},
				{Name: "kernel.shm_rmid_forced", Value: "1"}},
		}}}
	c := &corev1.Container{Name: "pylon", SecurityContext: &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr(false), ReadOnlyRootFilesystem: ptr(true),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}
	args, err := securityArgs(pod, c, kindPylon)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"--no-new-privs", "--ro-root", "--uid", "65532", "--gid", "65532", "--groups", "",
		"--sysctl", "net.ipv4.ip_unprivileged_port_start=0"}
	if !slices.Equal(args, want) {
		t.Errorf("securityArgs = %q, want %q (kernel.* sysctls are not applied)", args, want)
	}
	o, prog, msg := parsePodinit(append(append([]string{"--host-mntns", "mnt:[1]"}, args...), "--", "/bin/true"))
	if msg != "" || o.uid != 65532 || o.gid != 65532 || !o.roRoot || !o.noNewPrivs || len(o.sysctls) != 1 ||
		o.groups == nil || len(o.groups) != 0 || !slices.Equal(prog, []string{"/bin/true"}) {
		t.Errorf("parsePodinit: %+v %q %q", o, prog, msg)
	}
}

func TestSecurityArgsDefaults(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}}
	c := &corev1.Container{Name: "c"}
	// No securityContext: the image's user; root for echo-basic (nothing to pass), 65532 for pylon.
	if args, err := securityArgs(pod, c, kindEcho); err != nil || len(args) != 0 {
		t.Errorf("echo: %q %v", args, err)
	}
	if args, err := securityArgs(pod, c, kindPylon); err != nil || !slices.Contains(args, "65532") {
		t.Errorf("pylon: %q %v", args, err)
	}
	// runAsNonRoot with a root image is refused, as the kubelet does.
	c.SecurityContext = &corev1.SecurityContext{RunAsNonRoot: ptr(true)}
	if _, err := securityArgs(pod, c, kindEcho); err == nil || !strings.Contains(err.Error(), "runAsNonRoot") {
		t.Errorf("runAsNonRoot as root: %v", err)
	}
	// Container settings win over the pod's.
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr(int64(1000)), SupplementalGroups: []int64{5, 6}}
	c.SecurityContext = &corev1.SecurityContext{RunAsUser: ptr(int64(2000))}
	args, err := securityArgs(pod, c, kindEcho)
	if err != nil || !slices.Equal(args, []string{"--uid", "2000", "--gid", "0", "--groups", "5,6"}) {
		t.Errorf("override: %q %v", args, err)
	}
}

func TestPodinitRejects(t *testing.T) {
	for _, args := range [][]string{
		{"--sysctl", "kernel.shm_rmid_forced=1", "--", "x"},
		{"--sysctl", "net/../../etc/passwd=1", "--", "x"},
		{"--sysctl", "net.ipv4.ip_forward", "--", "x"},
		{"--uid", "-1", "--", "x"},
		{"--uid", "abc", "--", "x"},
		{"--groups", "1,x", "--", "x"},
		{"--bogus", "--", "x"},
		{"--uid"},
		{"--ro-root"},
	} {
		if _, _, msg := parsePodinit(args); msg == "" {
			t.Errorf("parsePodinit(%q) accepted", args)
		}
	}
	for name, want := range map[string]bool{
		"net.ipv4.ip_unprivileged_port_start": true,
		"net/ipv4/conf/eth0.1/forwarding":     true,
		"net.core.somaxconn":                  true,
		"kernel.msgmax":                       false,
		"net..x":                              false,
		"net":                                 false,
		"vm.swappiness":                       false,
	} {
		if got := namespacedSysctl(name); got != want {
			t.Errorf("namespacedSysctl(%q) = %v", name, got)
		}
	}
}

func TestPylonArgv(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "pylon")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := &agent{cfg: config{pylonBin: bin}}
	if k := a.classify("ghcr.io/pylon/pylon:0.1.0"); k != kindPylon {
		t.Errorf("classify(chart image) = %v", k)
	}
	env := []string{"POD_NAMESPACE=edge"}
	c := &corev1.Container{Name: "pylon", Image: "ghcr.io/pylon/pylon:0.1.0",
		Args: []string{"run", "--in-cluster", "--lease-namespace=$(POD_NAMESPACE)"}}
	argv, err := a.pylonArgv(c, env)
	if err != nil || !slices.Equal(argv, []string{bin, "run", "--in-cluster", "--lease-namespace=edge"}) {
		t.Errorf("args only: %q %v", argv, err)
	}
	c.Command = []string{"/usr/local/bin/pylon", "run"}
	c.Args = []string{"--in-cluster"}
	if argv, err = a.pylonArgv(c, env); err != nil || !slices.Equal(argv, []string{bin, "run", "--in-cluster"}) {
		t.Errorf("command + args: %q %v", argv, err)
	}
	c.Command = []string{"/bin/sh", "-c", "pylon run"}
	if _, err = a.pylonArgv(c, env); err == nil {
		t.Error("a shell command accepted for the pylon image")
	}
	a.cfg.pylonBin = filepath.Join(t.TempDir(), "missing")
	c.Command = nil
	if _, err = a.pylonArgv(c, env); err == nil || !strings.Contains(err.Error(), "make build") {
		t.Errorf("missing binary: %v", err)
	}
}
