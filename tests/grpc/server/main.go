// Command grpc-echo-server is a gRPC backend for pylon's black-box tests.
// It serves every method (no protobuf registration): the reply is JSON naming
// the server, the full method, the request payload and the request metadata.
// Request metadata "x-echo-header" / "x-echo-trailer" is returned as response
// header / trailer metadata; "x-want-code" makes the call fail with that code.
// A method whose name ends in "Stream" is a bidirectional stream: every
// request message gets its own reply (with "seq", from 0) until the client
// half-closes.
//
// It listens on -addr (port 0 = any) and prints the bound port on stdout:
// h2c by default; with -tls-cert and -tls-key, TLS (ALPN h2, as grpc-go
// offers it), and with -client-ca it also requires a client certificate
// signed by that CA (its CN is reported as "client_cn"). Every reply carries
// "conns": the connections accepted so far.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	grpctest "pylon/tests/grpc"
)

// countingListener counts accepted connections (before any TLS handshake).
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func clientCN(stream grpc.ServerStream) string {
	p, ok := peer.FromContext(stream.Context())
	if !ok {
		return ""
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
		return ti.State.PeerCertificates[0].Subject.CommonName
	}
	return ""
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	name := flag.String("name", "echo", "server name reported in replies")
	certFile := flag.String("tls-cert", "", "serve TLS with this certificate (PEM)")
	keyFile := flag.String("tls-key", "", "the certificate's key (PEM)")
	clientCA := flag.String("client-ca", "", "require client certificates signed by this CA (PEM; TLS only)")
	flag.Parse()

	raw, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ln := &countingListener{Listener: raw}
	reply := func(stream grpc.ServerStream, method string, md metadata.MD, req []byte, seq int) error {
		out := map[string]any{
			"server":   *name,
			"method":   method,
			"payload":  string(req),
			"metadata": md,
			"conns":    ln.n.Load(),
		}
		if seq >= 0 {
			out["seq"] = seq
		}
		if cn := clientCN(stream); cn != "" {
			out["client_cn"] = cn
		}
		b, _ := json.Marshal(out)
		return stream.SendMsg(b)
	}
	handler := func(_ any, stream grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(stream)
		md, _ := metadata.FromIncomingContext(stream.Context())
		if v := md.Get("x-echo-header"); len(v) > 0 {
			stream.SetHeader(metadata.Pairs("x-echo-header", v[0]))
		}
		if v := md.Get("x-echo-trailer"); len(v) > 0 {
			stream.SetTrailer(metadata.Pairs("x-echo-trailer", v[0]))
		}
		if strings.HasSuffix(method, "Stream") {
			for seq := 0; ; seq++ {
				var req []byte
				if err := stream.RecvMsg(&req); errors.Is(err, io.EOF) {
					return nil
				} else if err != nil {
					return err
				}
				if err := reply(stream, method, md, req, seq); err != nil {
					return err
				}
			}
		}
		var req []byte
		if err := stream.RecvMsg(&req); err != nil {
			return err
		}
		if v := md.Get("x-want-code"); len(v) > 0 {
			c, _ := strconv.Atoi(v[0])
			return status.Error(codes.Code(c), "requested failure")
		}
		return reply(stream, method, md, req, -1)
	}
	opts := []grpc.ServerOption{grpc.ForceServerCodec(grpctest.RawCodec{}), grpc.UnknownServiceHandler(handler)}
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
		if *clientCA != "" {
			pem, err := os.ReadFile(*clientCA)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			cfg.ClientCAs = x509.NewCertPool()
			cfg.ClientCAs.AppendCertsFromPEM(pem)
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	s := grpc.NewServer(opts...)
	fmt.Println(raw.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	if err := s.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
