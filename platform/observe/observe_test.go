package observe_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/herald-events/herald/platform/observe"
)

func TestLogLinesCarryTraceAndSpanIDs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(observe.LogHandler(slog.NewTextHandler(&buf, nil))).With("service", "orders")
	tr := observe.LocalTracing()
	ctx, span := tr.Tracer("test").Start(context.Background(), "op")
	log.InfoContext(ctx, "inside")
	span.End()
	log.InfoContext(context.Background(), "outside")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := "trace_id=" + span.SpanContext().TraceID().String() + " span_id=" + span.SpanContext().SpanID().String()
	if !strings.Contains(lines[0], want) || !strings.Contains(lines[0], "service=orders") {
		t.Fatalf("line with a span = %q, want %q", lines[0], want)
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Fatalf("line without a span has ids: %q", lines[1])
	}
}

func TestTraceparentRoundTrip(t *testing.T) {
	tr := observe.LocalTracing()
	ctx, span := tr.Tracer("test").Start(context.Background(), "op")
	defer span.End()
	tp := tr.Inject(ctx)
	if !strings.HasPrefix(tp, "00-"+span.SpanContext().TraceID().String()+"-") {
		t.Fatalf("traceparent %q does not carry the trace id", tp)
	}
	ctx2, child := tr.Tracer("test").Start(tr.Extract(context.Background(), tp), "child")
	defer child.End()
	_ = ctx2
	if child.SpanContext().TraceID() != span.SpanContext().TraceID() {
		t.Fatal("a span started from an extracted traceparent is in another trace")
	}
	var nilMetrics *observe.Metrics
	nilMetrics.Consumed("g", "t", observe.ResultOK) // a nil *Metrics records nothing and does not panic
}
