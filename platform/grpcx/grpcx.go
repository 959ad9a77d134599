// Package grpcx builds herald's gRPC servers: health on (reflection is the
// caller's choice, see [RegisterReflection]), an OpenTelemetry server span
// per call continuing the caller's traceparent, panics recovered, requests
// that do not parse refused with INVALID_ARGUMENT (see [NewServer]), and
// every error mapped to a status code by [Status], the one place where
// application errors become gRPC codes, with what it echoes bounded in
// size. A [Limiter] sheds the calls past a bound on those in flight.
package grpcx

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-events/herald/platform/apperr"
	"github.com/herald-events/herald/platform/fault"
	"github.com/herald-events/herald/platform/observe"
)

// Status maps err to a gRPC status:
//
//	apperr.KindInvalid            → InvalidArgument, with google.rpc.BadRequest field violations
//	apperr.KindNotFound           → NotFound
//	apperr.KindAlreadyExists      → AlreadyExists
//	apperr.KindFailedPrecondition → FailedPrecondition
//	apperr.KindUnauthenticated    → Unauthenticated
//	apperr.KindPermissionDenied   → PermissionDenied
//	apperr.KindResourceExhausted  → ResourceExhausted, with google.rpc.RetryInfo when it names a delay
//	context.Canceled              → Canceled
//	a conflict (a deadlock)       → Aborted, "<dependency> conflict with a concurrent request, retry"
//	a transient error             → Unavailable, "<dependency> unavailable, retry"
//	context.DeadlineExceeded      → DeadlineExceeded
//	a gRPC status error           → itself
//	anything else                 → Internal, without the detail
//
// Messages may echo what a client sent (an id, a currency code), so they
// are cut to [maxMessageBytes], and the field violations of an invalid
// request to [maxViolationBytes] in all: a 100 KB order id must not come
// back whole in grpc-message, which clients cap (gRPC C-core at 8 KB of
// metadata).
//
// A transient error ([fault.IsTransient]: the database or another dependency
// cannot be reached now) tells the client to retry the same request (with
// the same idempotency key); its message names the dependency only, never
// the internal detail. A conflict ([fault.IsConflict]: a deadlock the
// database broke) answers ABORTED, to be retried the same way.
func Status(err error) *status.Status {
	if err == nil {
		return status.New(codes.OK, "")
	}
	if ae, ok := apperr.As(err); ok {
		switch ae.Kind {
		case apperr.KindInvalid:
			st := status.New(codes.InvalidArgument, clip(ae.Error(), maxMessageBytes))
			return withDetail(st, badRequest(ae.Violations))
		case apperr.KindNotFound:
			return status.New(codes.NotFound, clip(ae.Message, maxMessageBytes))
		case apperr.KindAlreadyExists:
			return status.New(codes.AlreadyExists, clip(ae.Message, maxMessageBytes))
		case apperr.KindFailedPrecondition:
			return status.New(codes.FailedPrecondition, clip(ae.Message, maxMessageBytes))
		case apperr.KindUnauthenticated:
			return status.New(codes.Unauthenticated, clip(ae.Message, maxMessageBytes))
		case apperr.KindPermissionDenied:
			return status.New(codes.PermissionDenied, clip(ae.Message, maxMessageBytes))
		case apperr.KindResourceExhausted:
			st := status.New(codes.ResourceExhausted, clip(ae.Message, maxMessageBytes))
			if ae.RetryDelay > 0 {
				return withDetail(st, &errdetails.RetryInfo{RetryDelay: durationpb.New(ae.RetryDelay)})
			}
			return st
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, clip(err.Error(), maxMessageBytes))
	case fault.IsTransient(err):
		dep := fault.DependencyOf(err)
		if dep == "" {
			dep = "a dependency"
		}
		if fault.IsConflict(err) {
			// Concurrent requests raced this one (a deadlock the
			// database broke): the same request again should succeed.
			return status.New(codes.Aborted, dep+" conflict with a concurrent request, retry")
		}
		return status.New(codes.Unavailable, dep+" unavailable, retry")
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, clip(err.Error(), maxMessageBytes))
	}
	if st, ok := status.FromError(err); ok {
		if len(st.Message()) > maxMessageBytes {
			p := st.Proto()
			p.Message = clip(p.Message, maxMessageBytes)
			return status.FromProto(p)
		}
		return st
	}
	return status.New(codes.Internal, "internal error")
}

// withDetail returns st carrying d, or st itself if d cannot be attached.
func withDetail(st *status.Status, d protoadapt.MessageV1) *status.Status {
	if withDetails, err := st.WithDetails(d); err == nil {
		return withDetails
	}
	return st
}

// UnaryInterceptor recovers panics, maps errors with [Status], counts and
// times each call in m (which may be nil) and logs it with the call's
// context (and so its trace and span ids): at Error level for Internal and
// Unknown, Warn for Unavailable, Debug otherwise.
func UnaryInterceptor(log *slog.Logger, m *observe.Metrics) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		start := time.Now()
		defer func() {
			if r := recover(); r != nil {
				log.Error("grpc handler panic", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				resp, err = nil, status.Error(codes.Internal, "internal error")
			}
		}()
		resp, err = handler(ctx, req)
		st := Status(err)
		m.GRPC(info.FullMethod, st.Code().String(), time.Since(start))
		level := slog.LevelDebug
		switch st.Code() {
		case codes.Internal, codes.Unknown:
			level = slog.LevelError
		case codes.Unavailable:
			level = slog.LevelWarn
		}
		log.Log(ctx, level, "grpc call", "method", info.FullMethod, "code", st.Code().String(),
			"duration", time.Since(start), "err", err)
		if err != nil {
			return nil, st.Err()
		}
		return resp, nil
	}
}

// StreamInterceptor maps the errors of streaming calls (health's Watch,
// reflection) with [Status], as [UnaryInterceptor] does for unary ones,
// and recovers panics.
func StreamInterceptor(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("grpc stream handler panic", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		if err = handler(srv, ss); err != nil {
			st := Status(err)
			log.Log(ss.Context(), slog.LevelDebug, "grpc stream", "method", info.FullMethod, "code", st.Code().String(), "err", err)
			return st.Err()
		}
		return nil
	}
}

// RegisterReflection turns on gRPC server reflection on s (grpcurl's
// "list" and "describe"): it reveals every method and message of the API,
// so a process offers it only when asked to.
func RegisterReflection(s *grpc.Server) { reflection.Register(s) }

// NewServer returns a gRPC server with the interceptors and the standard
// health service, without reflection ([RegisterReflection]). Each call gets a server span that
// continues the caller's traceparent. m and t may be nil.
//
// A request that does not parse (truncated or malformed protobuf, a string
// that is not valid UTF-8) is answered INVALID_ARGUMENT and logged at Warn,
// where grpc-go alone would answer INTERNAL and log nothing; see
// decodeFaults. Interceptors in opts run inside this package's.
func NewServer(log *slog.Logger, m *observe.Metrics, t *observe.Tracing, opts ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	if t == nil {
		t = observe.LocalTracing()
	}
	codec := newDecodeFaults()
	opts = append([]grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(t.Provider), otelgrpc.WithPropagators(t.Propagator))),
		grpc.ForceServerCodecV2(codec), grpc.StatsHandler(codec),
		grpc.ChainUnaryInterceptor(UnaryInterceptor(log, m), codec.unary(log)),
		grpc.ChainStreamInterceptor(StreamInterceptor(log), codec.stream(log)),
	}, opts...)
	s := grpc.NewServer(opts...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	return s, hs
}
