package grpcx_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/herald-events/herald/platform/grpcx"
	"github.com/herald-events/herald/platform/observe"
)

// blocking is a service whose one method waits until release is closed.
func blocking(release <-chan struct{}) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "test.Block",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Wait",
			Handler: func(_ any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
				in := new(emptypb.Empty)
				if err := dec(in); err != nil {
					return nil, err
				}
				h := func(ctx context.Context, _ any) (any, error) {
					select {
					case <-release:
						return &emptypb.Empty{}, nil
					case <-ctx.Done():
						return nil, ctx.Err()
					}
				}
				return ic(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/test.Block/Wait"}, h)
			},
		}},
	}
}

// TestLimiterSheds: past the limit a call is refused at once with
// RESOURCE_EXHAUSTED and counted; health checks still answer; once calls
// finish, new ones are admitted again.
func TestLimiterSheds(t *testing.T) {
	m := observe.New()
	lim := grpcx.NewLimiter(2, m)
	release := make(chan struct{})
	conn, _ := serve(t, func(s *grpc.Server) { s.RegisterService(blocking(release), struct{}{}) }, lim.ServerOptions()...)
	call := func(ctx context.Context) error {
		return conn.Invoke(ctx, "/test.Block/Wait", &emptypb.Empty{}, &emptypb.Empty{})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	done := make(chan error, 2)
	for range 2 {
		go func() { done <- call(ctx) }()
	}
	for lim.InFlight() < 2 {
		if ctx.Err() != nil {
			t.Fatal("the two calls never got in")
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	err := call(ctx)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third call: %v, want ResourceExhausted", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the refusal took %s: it must not wait for a slot", took)
	}
	if resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil ||
		resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check while full: %v %v", resp, err)
	}
	close(release)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("admitted call: %v", err)
		}
	}
	if err := call(ctx); err != nil {
		t.Fatalf("call after the others finished: %v", err)
	}

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `herald_grpc_shed_total{method="/test.Block/Wait"} 1`) {
		t.Fatalf("shed call not counted:\n%s", grep(rec.Body.String(), "herald_grpc_"))
	}
	if lim.InFlight() != 0 {
		t.Fatalf("%d calls in flight after all ended", lim.InFlight())
	}
}

// TestLimiterOff: a limit of 0 sheds nothing.
func TestLimiterOff(t *testing.T) {
	lim := grpcx.NewLimiter(0, nil)
	release := make(chan struct{})
	close(release)
	conn, _ := serve(t, func(s *grpc.Server) { s.RegisterService(blocking(release), struct{}{}) }, lim.ServerOptions()...)
	for range 5 {
		if err := conn.Invoke(context.Background(), "/test.Block/Wait", &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
