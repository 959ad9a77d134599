package observe

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing is the OpenTelemetry setup of a process: a tracer provider and
// the W3C trace-context propagator that reads and writes traceparent. A nil
// *Tracing traces nothing.
type Tracing struct {
	Provider   trace.TracerProvider
	Propagator propagation.TextMapPropagator
}

// NewTracing returns tracing for a process named service. Spans are always
// created, so trace context flows through gRPC calls and events; they are
// exported over OTLP/gRPC only when the standard variables ask for it
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, with
// the other OTEL_EXPORTER_OTLP_* settings read by the exporter), unless
// OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true. Call shutdown to
// flush.
func NewTracing(ctx context.Context, service string, getenv func(string) string) (t *Tracing, shutdown func(context.Context) error, err error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service))),
	}
	export := (getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "") &&
		getenv("OTEL_TRACES_EXPORTER") != "none" && getenv("OTEL_SDK_DISABLED") != "true"
	if export {
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	return &Tracing{Provider: tp, Propagator: propagation.TraceContext{}}, tp.Shutdown, nil
}

// LocalTracing creates spans and propagates trace context without
// exporting anything: the default when a component is given no tracing.
func LocalTracing() *Tracing {
	return &Tracing{Provider: sdktrace.NewTracerProvider(), Propagator: propagation.TraceContext{}}
}

// Tracer returns a tracer for a component; nil tracing gives a no-op one.
func (t *Tracing) Tracer(name string) trace.Tracer {
	if t == nil || t.Provider == nil {
		return noop.NewTracerProvider().Tracer(name)
	}
	return t.Provider.Tracer(name)
}

// Inject returns the traceparent of the span in ctx ("" without one).
func (t *Tracing) Inject(ctx context.Context) string {
	if t == nil {
		return ""
	}
	c := propagation.MapCarrier{}
	t.Propagator.Inject(ctx, c)
	return c["traceparent"]
}

// Extract returns ctx carrying the remote span of a traceparent.
func (t *Tracing) Extract(ctx context.Context, traceparent string) context.Context {
	if t == nil || traceparent == "" {
		return ctx
	}
	return t.Propagator.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

// LogHandler wraps h so that every record logged with a context that holds
// a span carries trace_id and span_id.
func LogHandler(h slog.Handler) slog.Handler { return traceHandler{h} }

type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(as)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
