package main

import (
	"context"
	"io"
	"net"
	"strconv"
	"testing"
	"time"
)

// The forwarder splices bytes both ways and passes the client's half-close on (a TLS client's
// close_notify then FIN must reach the apiserver); the apiserver's port being taken on the
// listening address (here: by the target itself) falls back to a free one.
func TestAPIForward(t *testing.T) {
	target, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	go func() {
		c, err := target.Accept()
		if err != nil {
			return
		}
		b, _ := io.ReadAll(c) // until the client's half-close arrives
		_, _ = c.Write(append([]byte("echo:"), b...))
		c.Close()
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tport := target.Addr().(*net.TCPAddr).Port
	port, err := startAPIForward(ctx, net.IPv4(127, 0, 0, 1), "https://"+target.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if port == tport || port == 0 {
		t.Fatalf("forwarder port %d (target %d)", port, tport)
	}
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "echo:hello" {
		t.Fatalf("through the forwarder: %q, %v", got, err)
	}
	env := serviceEnv(net.IPv4(10, 244, 0, 1), 6443)
	if env[0] != [2]string{"KUBERNETES_SERVICE_HOST", "10.244.0.1"} || env[1] != [2]string{"KUBERNETES_SERVICE_PORT", "6443"} {
		t.Errorf("serviceEnv = %v", env)
	}
}
