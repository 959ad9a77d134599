package grpcx

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (c *decodeFaults) len() int {
	n := 0
	c.faults.Range(func(any, any) bool { n++; return true })
	return n
}

// TestDecodeFaultsForgotten: a call that ends before an interceptor sees
// its faulty message (grpc-go refuses a second message on a unary call)
// leaves nothing behind in the codec.
func TestDecodeFaultsForgotten(t *testing.T) {
	codec := newDecodeFaults()
	log := slog.New(slog.DiscardHandler)
	s := grpc.NewServer(grpc.ForceServerCodecV2(codec), grpc.StatsHandler(codec),
		grpc.ChainUnaryInterceptor(codec.unary(log)), grpc.ChainStreamInterceptor(codec.stream(log)))
	healthpb.RegisterHealthServer(s, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	defer s.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	bad := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{0xff})
	good := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte("x"))
	for _, msgs := range [][][]byte{{bad, good}, {good, bad}, {bad, bad}} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, "/grpc.health.v1.Health/Check", grpc.ForceCodecV2(rawCodec{}))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if err := cs.SendMsg(&m); err != nil && err != io.EOF {
				t.Fatal(err)
			}
		}
		_ = cs.CloseSend()
		var out []byte
		if err := cs.RecvMsg(&out); err == nil {
			t.Fatal("two messages on a unary call were accepted")
		}
		cancel()
	}
	deadline := time.Now().Add(5 * time.Second)
	for codec.len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d faulty messages kept after their calls ended", codec.len())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
