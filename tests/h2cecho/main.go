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
package main

import (
	"crypto/sha256"
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
	"time"
)

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
	out, _ := json.Marshal(map[string]any{
		"method":         r.Method,
		"path":           r.URL.RequestURI(),
		"host":           r.Host,
		"proto":          r.Proto,
		"headers":        hdrs,
		"content_length": r.ContentLength,
		"body_len":       n,
		"body_sha256":    hex.EncodeToString(h.Sum(nil)),
		"trailers":       trailers,
	})
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

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var protos http.Protocols
	protos.SetHTTP1(true) // only to answer 400, as the conformance echo server does
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: http.HandlerFunc(handler), Protocols: &protos}
	fmt.Printf("listening on %s\n", ln.Addr())
	os.Stdout.Sync()
	fmt.Fprintln(os.Stderr, srv.Serve(ln))
	os.Exit(1)
}
