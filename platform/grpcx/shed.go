package grpcx

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-events/herald/platform/observe"
)

// Limiter sheds load: it bounds the calls a server handles at once and
// refuses the ones past the bound at once with RESOURCE_EXHAUSTED, instead
// of letting them queue. The accepted calls then wait behind at most max
// others, so their latency stays bounded however many clients push; the
// refused ones cost the server next to nothing and the client learns at
// once that it should back off.
//
// RESOURCE_EXHAUSTED rather than UNAVAILABLE: herald answers UNAVAILABLE
// when a dependency is down (see [Status]), and clients commonly retry
// UNAVAILABLE at once by policy, which is what an overloaded server does
// not need. A client that retries RESOURCE_EXHAUSTED should do so with
// backoff (herald bench does, with the same idempotency key).
//
// Health checks (grpc.health.v1.Health) are never shed: an overloaded
// process is busy, not unhealthy, and must not be taken out of rotation
// for it.
type Limiter struct {
	max      int64
	inflight atomic.Int64
	m        *observe.Metrics
}

// NewLimiter returns a limiter of max calls at once, counting refused
// calls in m (herald_grpc_shed_total, by method) and exposing the calls in
// flight (herald_grpc_inflight). m may be nil. A max of 0 or less sheds
// nothing (the gauge still counts).
func NewLimiter(max int, m *observe.Metrics) *Limiter {
	l := &Limiter{max: int64(max), m: m}
	if m != nil {
		m.GaugeFunc("herald_grpc_inflight", "gRPC calls being handled (health checks excluded).", nil,
			func() float64 { return float64(l.inflight.Load()) })
	}
	return l
}

// ServerOptions are the unary and stream interceptors that apply the
// limit; pass them to [NewServer].
func (l *Limiter) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(l.unary), grpc.ChainStreamInterceptor(l.stream)}
}

// InFlight is the number of calls being handled now.
func (l *Limiter) InFlight() int { return int(l.inflight.Load()) }

const healthPrefix = "/grpc.health.v1.Health/"

// enter admits a call or returns the status that refuses it; an admitted
// call must call leave.
func (l *Limiter) enter(method string) error {
	n := l.inflight.Add(1)
	if l.max <= 0 || n <= l.max {
		return nil
	}
	l.inflight.Add(-1)
	l.m.Shed(method)
	return status.Error(codes.ResourceExhausted, "server overloaded: "+strconv.FormatInt(l.max, 10)+" calls in flight, retry with backoff")
}

func (l *Limiter) leave() { l.inflight.Add(-1) }

func (l *Limiter) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if strings.HasPrefix(info.FullMethod, healthPrefix) {
		return handler(ctx, req)
	}
	if err := l.enter(info.FullMethod); err != nil {
		return nil, err
	}
	defer l.leave()
	return handler(ctx, req)
}

func (l *Limiter) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if strings.HasPrefix(info.FullMethod, healthPrefix) {
		return handler(srv, ss)
	}
	if err := l.enter(info.FullMethod); err != nil {
		return err
	}
	defer l.leave()
	return handler(srv, ss)
}
