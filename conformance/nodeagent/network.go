package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
)

// network owns the host bridge and the pod address pool. Pod namespaces are plain `ip netns`
// namespaces named nsPrefix+<uid prefix>, so that a later agent (or cluster-down) finds leftovers
// by name alone.
type network struct {
	bridge  string
	podNet  *net.IPNet
	gateway net.IP // first host address: the bridge's, also the node's InternalIP

	mu   sync.Mutex
	used map[uint32]string // address -> pod UID
	next uint32
}

const nsPrefix = "pylon-pod-"

func ipcmd(args ...string) error {
	cmd := exec.Command("ip", args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func ip4u(ip net.IP) uint32 { return binary.BigEndian.Uint32(ip.To4()) }

func u2ip4(v uint32) net.IP {
	b := make(net.IP, 4)
	binary.BigEndian.PutUint32(b, v)
	return b
}

func newNetwork(bridge string, podNet *net.IPNet) (*network, error) {
	if podNet.IP.To4() == nil {
		return nil, fmt.Errorf("pod network %s: only IPv4 is supported", podNet)
	}
	ones, bits := podNet.Mask.Size()
	if bits-ones < 4 {
		return nil, fmt.Errorf("pod network %s is too small", podNet)
	}
	n := &network{bridge: bridge, podNet: podNet, used: map[uint32]string{}}
	n.gateway = u2ip4(ip4u(podNet.IP) + 1)
	n.next = ip4u(n.gateway) + 1
	if err := n.ensureBridge(); err != nil {
		return nil, err
	}
	return n, nil
}

// ensureBridge creates the bridge with the gateway address unless it already exists (cluster-up
// creates it before the apiserver starts, because the apiserver advertises the same address).
func (n *network) ensureBridge() error {
	ones, _ := n.podNet.Mask.Size()
	addr := fmt.Sprintf("%s/%d", n.gateway, ones)
	if _, err := net.InterfaceByName(n.bridge); err != nil {
		if err := ipcmd("link", "add", n.bridge, "type", "bridge"); err != nil {
			return err
		}
	}
	ifc, err := net.InterfaceByName(n.bridge)
	if err != nil {
		return err
	}
	addrs, _ := ifc.Addrs()
	have := false
	for _, a := range addrs {
		if a.String() == addr {
			have = true
		}
	}
	if !have {
		if err := ipcmd("addr", "add", addr, "dev", n.bridge); err != nil {
			return err
		}
	}
	return ipcmd("link", "set", n.bridge, "up")
}

// reserve marks an address as taken (a pod found running after an agent restart).
func (n *network) reserve(ip net.IP, uid string) {
	if ip == nil || ip.To4() == nil || !n.podNet.Contains(ip) {
		return
	}
	n.mu.Lock()
	n.used[ip4u(ip)] = uid
	n.mu.Unlock()
}

// allocate hands out the next free address, round-robin so that a deleted pod's address is not
// reused at once (stale EndpointSlices would otherwise point at the wrong pod).
func (n *network) allocate(uid string) (net.IP, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	first := ip4u(n.gateway) + 1
	ones, bits := n.podNet.Mask.Size()
	last := ip4u(n.podNet.IP) + (1 << uint(bits-ones)) - 2
	for i := uint32(0); i <= last-first; i++ {
		v := n.next
		n.next++
		if n.next > last {
			n.next = first
		}
		if _, taken := n.used[v]; !taken {
			n.used[v] = uid
			return u2ip4(v), nil
		}
	}
	return nil, fmt.Errorf("pod network %s exhausted", n.podNet)
}

func (n *network) release(ip net.IP) {
	if ip == nil || ip.To4() == nil {
		return
	}
	n.mu.Lock()
	delete(n.used, ip4u(ip))
	n.mu.Unlock()
}

func nsName(uid string) string {
	return nsPrefix + shortUID(uid)
}

func shortUID(uid string) string {
	s := strings.ReplaceAll(uid, "-", "")
	if len(s) > 12 {
		s = s[:12]
	}
	return s
}

// setupPod creates the pod's namespace with eth0 (a veth whose host end is on the bridge) carrying
// ip, loopback up and a default route via the bridge. Any half-made state is removed on error.
func (n *network) setupPod(uid string, ip net.IP) (err error) {
	ns := nsName(uid)
	hostIf := "plv" + shortUID(uid)
	_ = ipcmd("netns", "del", ns)
	_ = ipcmd("link", "del", hostIf)
	defer func() {
		if err != nil {
			n.teardownPod(uid)
		}
	}()
	ones, _ := n.podNet.Mask.Size()
	steps := [][]string{
		{"netns", "add", ns},
		{"link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"link", "set", hostIf, "master", n.bridge, "up"},
		{"-n", ns, "addr", "add", fmt.Sprintf("%s/%d", ip, ones), "dev", "eth0"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "route", "add", "default", "via", n.gateway.String()},
	}
	for _, s := range steps {
		if err := ipcmd(s...); err != nil {
			return err
		}
	}
	return nil
}

// teardownPod deletes the namespace; the veth pair goes with it.
func (n *network) teardownPod(uid string) {
	_ = ipcmd("netns", "del", nsName(uid))
	_ = ipcmd("link", "del", "plv"+shortUID(uid))
}

// listPodNamespaces returns the names of all pod namespaces present on the host.
func listPodNamespaces() []string {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], nsPrefix) {
			names = append(names, f[0])
		}
	}
	return names
}

// pidsInNamespace lists the processes whose network namespace is ns.
func pidsInNamespace(ns string) []string {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return nil
	}
	return strings.Fields(string(out))
}
