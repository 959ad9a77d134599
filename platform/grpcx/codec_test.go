package grpcx_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/herald-events/herald/platform/grpcx"
)

// rawCodec sends the bytes it is given as they are, so a test can put any
// wire data on a call.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serve starts a grpcx server on a free port, with the services register
// adds (if not nil), and returns a client connection to it and the
// server's log.
func serve(t *testing.T, register func(*grpc.Server), opts ...grpc.ServerOption) (*grpc.ClientConn, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, _ := grpcx.NewServer(log, nil, nil, opts...)
	if register != nil {
		register(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn, logs
}

// TestUnparsableRequest: truncated protobuf and invalid UTF-8 in a string
// field are the client's fault: INVALID_ARGUMENT, logged at Warn, for unary
// and streamed requests; a well-formed request still works.
func TestUnparsableRequest(t *testing.T) {
	conn, logs := serve(t, nil)
	// grpc.health.v1.HealthCheckRequest { string service = 1; }
	str := func(b []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), b)
	}
	good := str([]byte(""))
	truncated := str([]byte("herald.orders.v1.OrderService"))[:10]
	badUTF8 := str([]byte{'o', 0xff, 0xfe, 'k'})
	cases := []struct {
		name string
		body []byte
		code codes.Code
	}{
		{"well formed", good, codes.OK},
		{"truncated", truncated, codes.InvalidArgument},
		{"invalid utf-8", badUTF8, codes.InvalidArgument},
		{"bad tag", []byte{0x00}, codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run("unary "+tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var out []byte
			body := tc.body
			err := conn.Invoke(ctx, "/grpc.health.v1.Health/Check", &body, &out, grpc.ForceCodecV2(rawCodec{}))
			if status.Code(err) != tc.code {
				t.Fatalf("code %s (%v), want %s", status.Code(err), err, tc.code)
			}
		})
		t.Run("stream "+tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			desc := &grpc.StreamDesc{ServerStreams: true}
			cs, err := conn.NewStream(ctx, desc, "/grpc.health.v1.Health/Watch", grpc.ForceCodecV2(rawCodec{}))
			if err != nil {
				t.Fatal(err)
			}
			body := tc.body
			if err := cs.SendMsg(&body); err != nil {
				t.Fatal(err)
			}
			_ = cs.CloseSend()
			var out []byte
			err = cs.RecvMsg(&out)
			if status.Code(err) != tc.code {
				t.Fatalf("code %s (%v), want %s", status.Code(err), err, tc.code)
			}
		})
	}
	if n := strings.Count(logs.String(), `level=WARN msg="grpc request not parsed"`); n != 6 {
		t.Fatalf("%d warnings of unparsed requests, want 6:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "method=/grpc.health.v1.Health/Check") {
		t.Fatalf("log does not name the method:\n%s", logs)
	}
	// The health check itself is unaffected.
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check: %v %v", resp, err)
	}
}
