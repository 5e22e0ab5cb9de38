// Command grpc-echo-server is a gRPC backend for pylon's black-box tests.
// It serves every method (no protobuf registration): the reply is JSON naming
// the server, the full method, the request payload and the request metadata.
// Request metadata "x-echo-header" / "x-echo-trailer" is returned as response
// header / trailer metadata; "x-want-code" makes the call fail with that code.
// It listens on -addr (h2c, port 0 = any) and prints the bound port on stdout.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	grpctest "pylon/tests/grpc"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	name := flag.String("name", "echo", "server name reported in replies")
	flag.Parse()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	handler := func(_ any, stream grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(stream)
		md, _ := metadata.FromIncomingContext(stream.Context())
		var req []byte
		if err := stream.RecvMsg(&req); err != nil {
			return err
		}
		if v := md.Get("x-echo-header"); len(v) > 0 {
			stream.SetHeader(metadata.Pairs("x-echo-header", v[0]))
		}
		if v := md.Get("x-echo-trailer"); len(v) > 0 {
			stream.SetTrailer(metadata.Pairs("x-echo-trailer", v[0]))
		}
		if v := md.Get("x-want-code"); len(v) > 0 {
			c, _ := strconv.Atoi(v[0])
			return status.Error(codes.Code(c), "requested failure")
		}
		reply, _ := json.Marshal(map[string]any{
			"server":   *name,
			"method":   method,
			"payload":  string(req),
			"metadata": md,
		})
		return stream.SendMsg(reply)
	}
	s := grpc.NewServer(grpc.ForceServerCodec(grpctest.RawCodec{}),
		grpc.UnknownServiceHandler(handler))
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	if err := s.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
