package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// The apiserver listens on loopback, which a pod's network namespace has its own of; and there is
// no kube-proxy to route the `kubernetes` Service. So the agent does for that one Service what
// kube-proxy would: it forwards TCP from the bridge address (reachable from every pod through its
// default route) to the apiserver. TLS passes through untouched: pods verify the apiserver's
// certificate (it carries the bridge address) against ca.crt and authenticate with their own
// token. The port is the apiserver's own when free, so the `kubernetes` Endpoints the apiserver
// advertises (bridge address, its port) are true.

const maxAPIConns = 512

// startAPIForward listens on gateway (the apiserver's port if free, else any) and forwards each
// connection to server's host:port until ctx ends. Returns the port.
func startAPIForward(ctx context.Context, gateway net.IP, server string) (int, error) {
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return 0, fmt.Errorf("apiserver URL %q: %v", server, err)
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "443")
	}
	_, port, _ := net.SplitHostPort(target)
	ln, err := net.Listen("tcp4", net.JoinHostPort(gateway.String(), port))
	if err != nil {
		if ln, err = net.Listen("tcp4", net.JoinHostPort(gateway.String(), "0")); err != nil {
			return 0, err
		}
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	slots := make(chan struct{}, maxAPIConns)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
					klog.Errorf("apiserver forward: %v", err)
				}
				return
			}
			select {
			case slots <- struct{}{}:
			default:
				klog.Warningf("apiserver forward: %d connections open, refusing %s", maxAPIConns, c.RemoteAddr())
				c.Close()
				continue
			}
			go func() {
				defer func() { <-slots }()
				forward(c, target)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// forward splices one client connection to target in both directions, passing half-closes on.
func forward(c net.Conn, target string) {
	defer c.Close()
	s, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		klog.V(2).Infof("apiserver forward: %v", err)
		return
	}
	defer s.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
	go pipe(s, c)
	go pipe(c, s)
	wg.Wait()
}

// serviceEnv is the `kubernetes` Service's part of every container's environment (the kubelet
// adds it to all pods): the forwarder's address.
func serviceEnv(host net.IP, port int) [][2]string {
	h, p := host.String(), strconv.Itoa(port)
	return [][2]string{
		{"KUBERNETES_SERVICE_HOST", h},
		{"KUBERNETES_SERVICE_PORT", p},
		{"KUBERNETES_SERVICE_PORT_HTTPS", p},
		{"KUBERNETES_PORT", "tcp://" + net.JoinHostPort(h, p)},
	}
}
