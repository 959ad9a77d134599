package grpcx_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/herald-events/herald/platform/apperr"
	"github.com/herald-events/herald/platform/fault"
	"github.com/herald-events/herald/platform/grpcx"
)

func TestStatus(t *testing.T) {
	dbDown := fmt.Errorf("create order: %w", fault.Transient("database", errors.New("dial tcp 10.0.0.7:5432: connection refused")))
	cases := []struct {
		name    string
		err     error
		code    codes.Code
		msg     string // the whole message, when set
		private string // text that must not reach the client
	}{
		{name: "nil", err: nil, code: codes.OK},
		{name: "not found", err: apperr.NotFound("order o-1"), code: codes.NotFound},
		{name: "unauthenticated", err: fmt.Errorf("auth: %w", apperr.Unauthenticated("token expired")), code: codes.Unauthenticated, msg: "token expired"},
		{name: "permission denied", err: apperr.PermissionDenied("operators only"), code: codes.PermissionDenied, msg: "operators only"},
		{name: "resource exhausted", err: apperr.ResourceExhausted(0, "1000 orders wait"), code: codes.ResourceExhausted, msg: "1000 orders wait"},
		{name: "transient database error", err: dbDown, code: codes.Unavailable, msg: "database unavailable, retry", private: "10.0.0.7"},
		{name: "database conflict", err: fmt.Errorf("create order: %w", fault.Conflict("database", errors.New("ERROR: deadlock detected (SQLSTATE 40P01) on relation 174"))),
			code: codes.Aborted, msg: "database conflict with a concurrent request, retry", private: "relation"},
		{name: "unmarked network error", err: fmt.Errorf("publish: %w", &netTimeout{}), code: codes.Unavailable, msg: "a dependency unavailable, retry"},
		{name: "application error wins over transient", err: errors.Join(apperr.FailedPrecondition("order o-1 is final"), dbDown), code: codes.FailedPrecondition},
		{name: "cancelled", err: fault.Transient("database", context.Canceled), code: codes.Canceled},
		{name: "deadline", err: fmt.Errorf("query: %w", context.DeadlineExceeded), code: codes.DeadlineExceeded},
		{name: "unclassified", err: errors.New("secret detail"), code: codes.Internal, msg: "internal error", private: "secret"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := grpcx.Status(tc.err)
			if st.Code() != tc.code {
				t.Fatalf("code %s (%q), want %s", st.Code(), st.Message(), tc.code)
			}
			if tc.msg != "" && st.Message() != tc.msg {
				t.Fatalf("message %q, want %q", st.Message(), tc.msg)
			}
			if tc.private != "" && strings.Contains(st.Message(), tc.private) {
				t.Fatalf("message %q leaks %q", st.Message(), tc.private)
			}
		})
	}
}

// TestRetryInfo: a ResourceExhausted error that names a delay carries it
// as google.rpc.RetryInfo; one without carries no details.
func TestRetryInfo(t *testing.T) {
	st := grpcx.Status(fmt.Errorf("create order: %w", apperr.ResourceExhausted(50*time.Millisecond, "busy")))
	var got []time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			got = append(got, ri.GetRetryDelay().AsDuration())
		}
	}
	if st.Code() != codes.ResourceExhausted || len(got) != 1 || got[0] != 50*time.Millisecond {
		t.Fatalf("status %s %q, retry delays %v; want ResourceExhausted with one of 50ms", st.Code(), st.Message(), got)
	}
	if d := grpcx.Status(apperr.ResourceExhausted(0, "busy")).Details(); len(d) != 0 {
		t.Fatalf("details %v without a delay", d)
	}
}

type netTimeout struct{}

func (*netTimeout) Error() string   { return "i/o timeout" }
func (*netTimeout) Timeout() bool   { return true }
func (*netTimeout) Temporary() bool { return true }

// TestInterceptorLogLevel: an outage is a warning, a bug is an error.
func TestInterceptorLogLevel(t *testing.T) {
	cases := []struct {
		name  string
		err   error
		level string
	}{
		{"unavailable", fault.Transient("database", errors.New("refused")), "level=WARN"},
		{"internal", errors.New("bug"), "level=ERROR"},
		{"not found", apperr.NotFound("order"), "level=DEBUG"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			ic := grpcx.UnaryInterceptor(log, nil)
			_, err := ic(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/x.v1.S/M"},
				func(context.Context, any) (any, error) { return nil, tc.err })
			if status.Code(err) != grpcx.Status(tc.err).Code() {
				t.Fatalf("returned %v", err)
			}
			if !strings.Contains(logs.String(), tc.level) {
				t.Fatalf("log %q, want %s", logs.String(), tc.level)
			}
		})
	}
}

// TestStatusBounded: values a client sent come back cut, so a status stays
// well under the 8 KB of metadata that some clients accept.
func TestStatusBounded(t *testing.T) {
	huge := strings.Repeat("é", 50_000) // 100 KB, two bytes a character
	var many apperr.Violations
	many.Add("order_id", "no order %q", huge)
	for i := range 500 {
		many.Add(fmt.Sprintf("items[%d].sku", i), "unknown sku %q", huge[:1000])
	}
	cases := []struct {
		name string
		err  error
	}{
		{"not found", apperr.NotFound("order %s not found", huge)},
		{"already exists", apperr.AlreadyExists("request_id %q was already used", huge)},
		{"failed precondition", apperr.FailedPrecondition("order %s is final", huge)},
		{"invalid", many.Err()},
		{"status", status.Error(codes.PermissionDenied, huge)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := grpcx.Status(tc.err)
			b, err := proto.Marshal(st.Proto())
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Message()) > 1024 || len(b) > 4096 {
				t.Fatalf("message %d bytes, status %d bytes", len(st.Message()), len(b))
			}
			if !utf8.ValidString(st.Message()) || !strings.Contains(st.Message(), "bytes cut") {
				t.Fatalf("message not cut cleanly: %q", st.Message()[max(0, len(st.Message())-80):])
			}
		})
	}
	st := grpcx.Status(many.Err())
	br, ok := st.Details()[0].(*errdetails.BadRequest)
	if !ok || len(br.GetFieldViolations()) < 2 || br.GetFieldViolations()[1].GetField() != "items[0].sku" {
		t.Fatalf("details %v", st.Details())
	}
	if n := len(br.GetFieldViolations()); n >= 500 {
		t.Fatalf("all %d violations sent", n)
	}
}
