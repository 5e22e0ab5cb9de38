// Command grpc-echo-client makes one unary gRPC call over h2c and prints a
// JSON object: code (numeric gRPC status), message, reply (the raw reply
// text), header and trailer (response metadata). With -stream n it instead
// opens one bidirectional stream, sends n messages ("DATA-0", "DATA-1"...),
// reading each reply before the next message, and adds "replies" (their
// texts) to the output.
// Usage: grpc-echo-client -addr 127.0.0.1:PORT -authority host -method /svc/M
//
//	[-md key=value]... [-data text | -size bytes] [-parallel n | -stream n]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
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
	nstream := flag.Int("stream", 0, "one bidirectional stream of this many messages instead of unary calls")
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
	if *nstream > 0 {
		os.Exit(streamCall(ctx, conn, *method, *data, *nstream))
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

// streamCall runs the -stream mode; returns the exit status.
func streamCall(ctx context.Context, conn *grpc.ClientConn, method, data string, n int) int {
	desc := &grpc.StreamDesc{StreamName: method, ServerStreams: true, ClientStreams: true}
	var replies []string
	var header metadata.MD
	s, err := conn.NewStream(ctx, desc, method)
	if err == nil {
		for i := 0; i < n && err == nil; i++ {
			msg := []byte(fmt.Sprintf("%s-%d", data, i))
			if err = s.SendMsg(&msg); err != nil {
				break
			}
			var r []byte
			if err = s.RecvMsg(&r); err == nil {
				replies = append(replies, string(r))
			}
		}
		if err == nil {
			err = s.CloseSend()
		}
		if err == nil {
			var r []byte
			if err = s.RecvMsg(&r); err == io.EOF {
				err = nil
			} else if err == nil {
				err = fmt.Errorf("unexpected message after the last reply")
			}
		}
		header, _ = s.Header()
	}
	st := status.Convert(err)
	var trailer metadata.MD
	if s != nil {
		trailer = s.Trailer()
	}
	out, _ := json.Marshal(map[string]any{
		"code":    int(st.Code()),
		"message": st.Message(),
		"reply":   "",
		"replies": replies,
		"header":  header,
		"trailer": trailer,
		"ok":      len(replies),
	})
	fmt.Println(string(out))
	return 0
}
