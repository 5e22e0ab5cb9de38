package main

import "testing"

func TestDNSStubAnswer(t *testing.T) {
	// ID 0x1234, RD, one question "a." A IN
	q := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 0, 0, 1, 0, 1}
	r := dnsStubAnswer(q)
	if r == nil || len(r) != len(q) {
		t.Fatalf("no answer: %v", r)
	}
	if r[0] != 0x12 || r[1] != 0x34 || r[2]&0x80 == 0 || r[2]&0x01 == 0 || r[3]&0x0f != 0 {
		t.Fatalf("bad header % x", r[:4])
	}
	if string(r[12:]) != string(q[12:]) {
		t.Fatalf("question not echoed")
	}
	if dnsStubAnswer(r) != nil || dnsStubAnswer(q[:5]) != nil {
		t.Fatalf("answered a response or a runt")
	}
}
