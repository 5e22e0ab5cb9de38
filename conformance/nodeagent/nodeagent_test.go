package main

import (
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Pure parts of the agent; the lifecycle against a real apiserver is in ../harness.

func TestImageName(t *testing.T) {
	a := &agent{cfg: config{stubImages: "coredns, pause"}}
	for img, want := range map[string]imageKind{
		"registry.k8s.io/gateway-api/echo-basic:v1.5.1":          kindEcho,
		"gcr.io/k8s-staging-gateway-api/echo-basic:v20240412-v1": kindEcho,
		"echo-basic":                                       kindEcho,
		"localhost:5000/echo-basic@sha256:0123":            kindEcho,
		"registry.k8s.io/coredns/coredns:v1.12.2":          kindStub,
		"registry.k8s.io/pause:3.10":                       kindStub,
		"registry.k8s.io/gateway-api/echo-advanced:v1.5.1": kindUnsupported,
		"nginx":                         kindUnsupported,
		"example.com/echo-basic-fork:1": kindUnsupported,
	} {
		if got := a.classify(img); got != want {
			t.Errorf("classify(%q) = %v, want %v", img, got, want)
		}
	}
}

func TestExpandEnv(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	for in, want := range map[string]string{
		"plain":      "plain",
		"$(A)-$(B)":  "1-two",
		"$(C)":       "$(C)",
		"$$(A)":      "$(A)",
		"x$(A":       "x$(A",
		"cost $5":    "cost $5",
		"trailing $": "trailing $",
	} {
		if got := expandEnv(in, vars); got != want {
			t.Errorf("expandEnv(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFieldValue(t *testing.T) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u-1",
		Labels: map[string]string{"app": "x"}}, Spec: corev1.PodSpec{NodeName: "n"}}
	for path, want := range map[string]string{
		"metadata.name": "p", "metadata.namespace": "ns", "metadata.uid": "u-1",
		"spec.nodeName": "n", "status.podIP": "10.244.0.9", "metadata.labels['app']": "x",
	} {
		got, err := fieldValue(p, path, "10.244.0.9")
		if err != nil || got != want {
			t.Errorf("fieldValue(%q) = %q, %v; want %q", path, got, err, want)
		}
	}
	if _, err := fieldValue(p, "spec.bogus", ""); err == nil {
		t.Error("unsupported fieldRef accepted")
	}
}

func TestWriteKeysStaysInVolume(t *testing.T) {
	dir := t.TempDir()
	data := map[string][]byte{"tls.crt": []byte("C"), "tls.key": []byte("K")}
	items := []corev1.KeyToPath{{Key: "tls.crt", Path: "crt"}, {Key: "tls.key", Path: "sub/key"}}
	if err := writeKeys(dir, data, items, nil, "secret"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "sub/key")); string(b) != "K" {
		t.Errorf("sub/key = %q", b)
	}
	bad := []corev1.KeyToPath{{Key: "tls.crt", Path: "../escape"}}
	if err := writeKeys(dir, data, bad, nil, "secret"); err == nil {
		t.Error("path leaving the volume accepted")
	}
	if err := writeKeys(dir, data, []corev1.KeyToPath{{Key: "nope", Path: "x"}}, nil, "secret"); err == nil {
		t.Error("missing key accepted")
	}
}

func TestLogRecords(t *testing.T) {
	rec, ok := parseRecord([]byte("2026-01-02T03:04:05.123456789Z stdout F hello world"))
	if !ok || !rec.full || string(rec.text) != "hello world" || rec.ts.Year() != 2026 {
		t.Fatalf("parseRecord: %+v %v", rec, ok)
	}
	if _, ok := parseRecord([]byte("garbage")); ok {
		t.Error("garbage parsed")
	}
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := newLogWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	w.write("stdout", "F", []byte("one"))
	w.write("stderr", "P", []byte("par"))
	w.Close()
	b, _ := os.ReadFile(path)
	if n := len(splitLines(b)); n != 2 {
		t.Fatalf("want 2 records, got %d: %q", n, b)
	}
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	start := 0
	for i, c := range b {
		if c == '\n' {
			out = append(out, b[start:i])
			start = i + 1
		}
	}
	return out
}
