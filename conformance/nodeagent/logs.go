package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"k8s.io/klog/v2"
)

// startLogServer serves the kubelet's container log endpoint, which the apiserver proxies
// `kubectl logs` (and client-go GetLogs) to:
//
//	GET /containerLogs/{namespace}/{pod}/{container}?follow=&tailLines=&sinceSeconds=&sinceTime=
//	    &timestamps=&limitBytes=&previous=
//
// The apiserver does not verify the kubelet's certificate unless --kubelet-certificate-authority is
// set (our cluster does not set it), so a self-signed one made at start-up is enough. Client
// certificates are not checked: the endpoint listens on the bridge address only.
func (a *agent) startLogServer(ctx context.Context, addr string) (int, error) {
	cert, err := selfSignedCert(a.netw.gateway)
	if err != nil {
		return 0, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return 0, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/containerLogs/", a.serveLogs)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.Errorf("log endpoint: %v", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func selfSignedCert(ip net.IP) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "pylon-nodeagent"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{ip, net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

type logQuery struct {
	follow     bool
	timestamps bool
	previous   bool
	tail       int64 // -1: all
	since      time.Time
	limit      int64 // 0: none
}

func parseLogQuery(r *http.Request) (logQuery, error) {
	q := r.URL.Query()
	lq := logQuery{tail: -1}
	lq.follow = q.Get("follow") == "true"
	lq.timestamps = q.Get("timestamps") == "true"
	lq.previous = q.Get("previous") == "true"
	if v := q.Get("tailLines"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return lq, fmt.Errorf("bad tailLines %q", v)
		}
		lq.tail = n
	}
	if v := q.Get("limitBytes"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return lq, fmt.Errorf("bad limitBytes %q", v)
		}
		lq.limit = n
	}
	if v := q.Get("sinceSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return lq, fmt.Errorf("bad sinceSeconds %q", v)
		}
		lq.since = time.Now().Add(-time.Duration(n) * time.Second)
	}
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return lq, fmt.Errorf("bad sinceTime %q", v)
		}
		lq.since = t
	}
	return lq, nil
}

// logRecord is one parsed line of a CRI-format log file.
type logRecord struct {
	ts   time.Time
	tsr  []byte
	full bool
	text []byte
}

func parseRecord(line []byte) (logRecord, bool) {
	f := bytes.SplitN(line, []byte{' '}, 4)
	if len(f) != 4 {
		return logRecord{}, false
	}
	ts, err := time.Parse(time.RFC3339Nano, string(f[0]))
	if err != nil {
		return logRecord{}, false
	}
	return logRecord{ts: ts, tsr: f[0], full: string(f[2]) == "F", text: f[3]}, true
}

type limitedWriter struct {
	w    io.Writer
	left int64 // <0: unlimited
}

var errLimit = errors.New("limit reached")

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.left < 0 {
		return l.w.Write(p)
	}
	if l.left == 0 {
		return 0, errLimit
	}
	if int64(len(p)) > l.left {
		n, _ := l.w.Write(p[:l.left])
		l.left = 0
		return n, errLimit
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	return n, err
}

func (a *agent) serveLogs(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/containerLogs/"), "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		http.Error(w, "want /containerLogs/{namespace}/{pod}/{container}", http.StatusBadRequest)
		return
	}
	lq, err := parseLogQuery(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	key := parts[0] + "/" + parts[1]
	a.mu.Lock()
	rt := a.running[a.byKey[key]]
	a.mu.Unlock()
	if rt == nil {
		http.Error(w, "pod "+key+" is not running on this node", http.StatusNotFound)
		return
	}
	var path string
	for _, c := range rt.containers {
		if c.name == parts[2] {
			path = c.logPath
		}
	}
	if path == "" {
		http.Error(w, "container "+parts[2]+" is not valid for pod "+key, http.StatusNotFound)
		return
	}
	if lq.previous {
		path += ".prev"
		lq.follow = false
	}
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			w.Header().Set("Content-Type", "text/plain")
			return // nothing logged yet (stub containers never log)
		}
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "text/plain")
	lw := &limitedWriter{w: w, left: -1}
	if lq.limit > 0 {
		lw.left = lq.limit
	}
	emit := func(rec logRecord) error {
		if !lq.since.IsZero() && rec.ts.Before(lq.since) {
			return nil
		}
		var b []byte
		if lq.timestamps {
			b = append(append(b, rec.tsr...), ' ')
		}
		b = append(b, rec.text...)
		if rec.full {
			b = append(b, '\n')
		}
		_, err := lw.Write(b)
		return err
	}

	// Existing content: keep the last tailLines records (ring), then emit.
	br := bufio.NewReaderSize(f, 64<<10)
	var ring []logRecord
	var offset int64
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			break // a partial last line is read again when following
		}
		offset += int64(len(line))
		rec, ok := parseRecord(line[:len(line)-1])
		if !ok {
			continue
		}
		if lq.tail == 0 {
			continue
		}
		ring = append(ring, rec)
		if lq.tail > 0 && int64(len(ring)) > lq.tail {
			ring = ring[1:]
		}
	}
	for _, rec := range ring {
		if emit(rec) != nil {
			return
		}
	}
	if !lq.follow {
		return
	}
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	// Follow: poll the file for appended complete lines until the client goes away or the
	// pod stops (its log file is then closed and removed).
	var pending []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := f.ReadAt(buf, offset)
		if n > 0 {
			offset += int64(n)
			pending = append(pending, buf[:n]...)
			for {
				i := bytes.IndexByte(pending, '\n')
				if i < 0 {
					break
				}
				if rec, ok := parseRecord(pending[:i]); ok {
					if emit(rec) != nil {
						return
					}
				}
				pending = pending[i+1:]
			}
			if len(pending) > 1<<20 {
				pending = nil // a runaway line without newline: drop it rather than grow
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if n > 0 && err == nil {
			continue
		}
		if rt.stopping() {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-rt.stopCh:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}
