// Command grpc-echo-client makes one unary gRPC call over h2c and prints a
// JSON object: code (numeric gRPC status), message, reply (the raw reply
// text), header and trailer (response metadata).
// Usage: grpc-echo-client -addr 127.0.0.1:PORT -authority host -method /svc/M
//
//	[-md key=value]... [-data text | -size bytes] [-parallel n]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	grpctest "pylon/tests/grpc"
)

type mdFlags []string

func (m *mdFlags) String() string     { return strings.Join(*m, ",") }
func (m *mdFlags) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	addr := flag.String("addr", "", "host:port to dial")
	authority := flag.String("authority", "", ":authority to send")
	method := flag.String("method", "/echo.Echo/Say", "full method name")
	data := flag.String("data", "hello", "request payload")
	timeout := flag.Duration("timeout", 5*time.Second, "call deadline")
	size := flag.Int("size", 0, "send a payload of this many bytes instead of -data")
	parallel := flag.Int("parallel", 1, "make this many calls at once on the connection")
	var md mdFlags
	flag.Var(&md, "md", "request metadata key=value (repeatable)")
	flag.Parse()

	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(grpctest.RawCodec{}))}
	if *authority != "" {
		opts = append(opts, grpc.WithAuthority(*authority))
	}
	conn, err := grpc.NewClient("passthrough:///"+*addr, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	for _, kv := range md {
		k, v, _ := strings.Cut(kv, "=")
		ctx = metadata.AppendToOutgoingContext(ctx, k, v)
	}
	req := []byte(*data)
	if *size > 0 {
		req = []byte(strings.Repeat("x", *size))
	}
	type result struct {
		code            int
		message         string
		reply           []byte
		header, trailer metadata.MD
	}
	results := make([]result, *parallel)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func(r *result) {
			defer wg.Done()
			err := conn.Invoke(ctx, *method, &req, &r.reply, grpc.Header(&r.header), grpc.Trailer(&r.trailer))
			st := status.Convert(err)
			r.code, r.message = int(st.Code()), st.Message()
		}(&results[i])
	}
	wg.Wait()
	// the first failure if any, else the first result; "ok" counts successes
	pick, ok := 0, 0
	for i, r := range results {
		if r.code == 0 {
			ok++
		} else if results[pick].code == 0 {
			pick = i
		}
	}
	r := results[pick]
	reply := string(r.reply)
	if *size > 0 {
		reply = fmt.Sprintf("%d bytes", len(r.reply))
	}
	out, _ := json.Marshal(map[string]any{
		"code":    r.code,
		"message": r.message,
		"reply":   reply,
		"header":  r.header,
		"trailer": r.trailer,
		"ok":      ok,
	})
	fmt.Println(string(out))
}
