// Command h2c-echo is an HTTP/2-only (h2c, prior knowledge) backend for
// pylon's black-box tests, standard library only. Like the Gateway API
// conformance echo server on an appProtocol kubernetes.io/h2c port, it
// answers HTTP/1.x requests with 400 "Expected h2c request".
//
// The last path segment picks what it does:
//
//	.../big?n=N[&cl=1]  N bytes (a fixed pattern), with Content-Length when cl=1
//	.../trailers        a body, then trailers x-sum (sha256 of the body) and x-end
//	.../early           a 103 Early Hints interim response, then the echo
//	.../status?code=N   the echo with status N
//	.../sleep?ms=N      the echo after N ms
//	anything else       JSON: method, path, host, proto, headers, body length and sha256,
//	                    request trailers (those the request's Trailer field declared: Go's rule)
//
// It listens on -addr (port 0 = any) and prints "listening on ADDR" on stdout.
//
// With -tls-cert and -tls-key it serves TLS instead, offering the ALPN
// protocols of -alpn (default "h2"; "http/1.1" alone makes an HTTP/1.1-only
// TLS server, which still answers 400); with -client-ca it also requires a
// client certificate signed by that CA. The JSON echo then also has "tls",
// "sni", "alpn" and "client_cn"; it always has "conns", the connections
// accepted so far.
package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// accepted counts connections (before any TLS handshake).
var accepted atomic.Int64

type countingListener struct{ net.Listener }

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		accepted.Add(1)
	}
	return c, err
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

func echo(w http.ResponseWriter, r *http.Request, status int) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	hdrs := map[string][]string{}
	for k, v := range r.Header {
		hdrs[strings.ToLower(k)] = v
	}
	trailers := map[string][]string{} // complete once the body is read
	for k, v := range r.Trailer {
		if v != nil {
			trailers[strings.ToLower(k)] = v
		}
	}
	info := map[string]any{
		"method":         r.Method,
		"path":           r.URL.RequestURI(),
		"host":           r.Host,
		"proto":          r.Proto,
		"headers":        hdrs,
		"content_length": r.ContentLength,
		"body_len":       n,
		"body_sha256":    hex.EncodeToString(h.Sum(nil)),
		"trailers":       trailers,
		"conns":          accepted.Load(),
		"tls":            r.TLS != nil,
	}
	if r.TLS != nil {
		info["sni"] = r.TLS.ServerName
		info["alpn"] = r.TLS.NegotiatedProtocol
		if len(r.TLS.PeerCertificates) > 0 {
			info["client_cn"] = r.TLS.PeerCertificates[0].Subject.CommonName
		}
	}
	out, _ := json.Marshal(info)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(status)
	w.Write(out)
}

func handler(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 {
		http.Error(w, "Expected h2c request", http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	switch path.Base(r.URL.Path) {
	case "big":
		n, _ := strconv.Atoi(q.Get("n"))
		if q.Get("cl") == "1" {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		chunk := pattern(26 * 1260) // whole alphabets: the stream is one unbroken pattern
		for n > 0 {
			k := min(n, len(chunk))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			n -= k
		}
	case "trailers":
		body := []byte("body with trailers\n")
		sum := sha256.Sum256(body)
		w.Header().Set("Trailer", "X-Sum, X-End")
		w.WriteHeader(http.StatusOK)
		w.Write(body)
		w.(http.Flusher).Flush()
		w.Header().Set("X-Sum", hex.EncodeToString(sum[:]))
		w.Header().Set("X-End", "yes")
	case "early":
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		echo(w, r, http.StatusOK)
	case "status":
		code, _ := strconv.Atoi(q.Get("code"))
		echo(w, r, code)
	case "sleep":
		ms, _ := strconv.Atoi(q.Get("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		echo(w, r, http.StatusOK)
	default:
		echo(w, r, http.StatusOK)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	certFile := flag.String("tls-cert", "", "serve TLS with this certificate (PEM)")
	keyFile := flag.String("tls-key", "", "the certificate's key (PEM)")
	alpn := flag.String("alpn", "h2", "ALPN protocols offered over TLS, comma-separated")
	clientCA := flag.String("client-ca", "", "require client certificates signed by this CA (PEM; TLS only)")
	flag.Parse()
	raw, err := net.Listen("tcp", *addr)
	if err != nil {
		fail(err)
	}
	var ln net.Listener = countingListener{raw}
	var protos http.Protocols
	protos.SetHTTP1(true) // only to answer 400, as the conformance echo server does
	protos.SetUnencryptedHTTP2(true)
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			fail(err)
		}
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: strings.Split(*alpn, ",")}
		if *clientCA != "" {
			pem, err := os.ReadFile(*clientCA)
			if err != nil {
				fail(err)
			}
			cfg.ClientCAs = x509.NewCertPool()
			cfg.ClientCAs.AppendCertsFromPEM(pem)
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
		protos.SetHTTP2(true)
		ln = tls.NewListener(ln, cfg)
	}
	srv := &http.Server{Handler: http.HandlerFunc(handler), Protocols: &protos}
	fmt.Printf("listening on %s\n", raw.Addr())
	os.Stdout.Sync()
	fmt.Fprintln(os.Stderr, srv.Serve(ln))
	os.Exit(1)
}
