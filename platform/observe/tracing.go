package observe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"runtime/debug"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing is the OpenTelemetry setup of a process: a tracer provider and
// the W3C trace-context propagator that reads and writes traceparent. A nil
// *Tracing traces nothing.
//
// Tracing made by [NewTracing] or [NewTracingWith] also has one provider
// per service of the process ([Tracing.Service]), so that the spans of
// each service carry its own service.name even when several services share
// a process (see docs/operations.md, "Traces").
type Tracing struct {
	Provider   trace.TracerProvider
	Propagator propagation.TextMapPropagator

	services *serviceProviders // nil: Provider serves every service
}

// Identity is what the spans of a process say about where they come from:
// the OpenTelemetry resource attributes service.name, service.namespace,
// service.version and service.instance.id.
type Identity struct {
	// Name is the process's service.name, used for spans that belong to
	// no single service (gRPC health checks, for example). Default "herald".
	Name string
	// Namespace is service.namespace. Default "herald".
	Namespace string
	// Version is service.version. Default: [BuildVersion].
	Version string
	// InstanceID is service.instance.id (herald's instance id).
	InstanceID string
}

// BuildVersion is the version of the running binary as the Go toolchain
// recorded it: the main module's version (a tag, or a pseudo-version
// when built from a VCS checkout), else the VCS revision (with "+dirty"
// for a modified tree), else "devel".
func BuildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return rev + dirty
}

// NewTracing returns tracing for a process. Spans are always created, so
// trace context flows through gRPC calls and events; they are exported
// over OTLP/gRPC only when the standard variables ask for it
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, with
// the other OTEL_EXPORTER_OTLP_* settings read by the exporter), unless
// OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true. The resource
// follows id, then OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME (each
// overriding the one before), as the OpenTelemetry SDK specification
// orders them. Call shutdown to flush.
func NewTracing(ctx context.Context, id Identity, getenv func(string) string) (t *Tracing, shutdown func(context.Context) error, err error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var procs []sdktrace.SpanProcessor
	export := (getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "") &&
		getenv("OTEL_TRACES_EXPORTER") != "none" && getenv("OTEL_SDK_DISABLED") != "true"
	if export {
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		procs = append(procs, sdktrace.NewBatchSpanProcessor(exp))
	}
	t, err = NewTracingWith(id, getenv, procs...)
	if err != nil {
		return nil, nil, err
	}
	return t, t.Shutdown, nil
}

// NewTracingWith is [NewTracing] with the span processors given (an
// in-memory recorder in tests, for example) instead of the OTLP exporter
// the environment names. It fails on a malformed OTEL_RESOURCE_ATTRIBUTES.
func NewTracingWith(id Identity, getenv func(string) string, procs ...sdktrace.SpanProcessor) (*Tracing, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if id.Name == "" {
		id.Name = "herald"
	}
	if id.Namespace == "" {
		id.Namespace = "herald"
	}
	if id.Version == "" {
		id.Version = BuildVersion()
	}
	attrs := []attribute.KeyValue{semconv.ServiceNamespace(id.Namespace), semconv.ServiceVersion(id.Version)}
	if id.InstanceID != "" {
		attrs = append(attrs, semconv.ServiceInstanceID(id.InstanceID))
	}
	fromEnv, err := parseResourceAttributes(getenv("OTEL_RESOURCE_ATTRIBUTES"))
	if err != nil {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	sp := &serviceProviders{procs: procs, byName: map[string]*sdktrace.TracerProvider{}}
	for _, kv := range fromEnv {
		if kv.Key == semconv.ServiceNameKey {
			sp.fixed = kv.Value.AsString()
			continue
		}
		attrs = append(attrs, kv)
	}
	if n := getenv("OTEL_SERVICE_NAME"); n != "" {
		sp.fixed = n
	}
	sp.attrs = attrs
	t := &Tracing{Propagator: propagation.TraceContext{}, services: sp}
	t.Provider = sp.provider(id.Name)
	return t, nil
}

// parseResourceAttributes reads OTEL_RESOURCE_ATTRIBUTES: key=value pairs
// separated by commas, values percent-encoded.
func parseResourceAttributes(s string) ([]attribute.KeyValue, error) {
	var out []attribute.KeyValue
	for _, pair := range strings.Split(s, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", pair)
		}
		val, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("value of %s: %w", k, err)
		}
		out = append(out, attribute.String(k, val))
	}
	return out, nil
}

// serviceProviders holds one tracer provider per service name, all
// feeding the same span processors.
type serviceProviders struct {
	attrs []attribute.KeyValue // the resource without service.name
	fixed string               // the operator's service.name for every span ("" if not set)
	procs []sdktrace.SpanProcessor

	mu     sync.Mutex
	byName map[string]*sdktrace.TracerProvider
}

func (s *serviceProviders) provider(name string) *sdktrace.TracerProvider {
	if s.fixed != "" {
		name = s.fixed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if tp := s.byName[name]; tp != nil {
		return tp
	}
	attrs := append([]attribute.KeyValue{semconv.ServiceName(name)}, s.attrs...)
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(resource.NewWithAttributes(semconv.SchemaURL, attrs...))}
	for _, p := range s.procs {
		opts = append(opts, sdktrace.WithSpanProcessor(p))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	s.byName[name] = tp
	return tp
}

// Service returns the tracing of one service of the process: the same
// propagator, a provider whose resource says service.name=name (unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES named the process's
// service, which then names every span). Tracing without per-service
// providers (built by hand, or [LocalTracing]) returns itself.
func (t *Tracing) Service(name string) *Tracing {
	if t == nil || t.services == nil {
		return t
	}
	return &Tracing{Provider: t.services.provider(name), Propagator: t.Propagator, services: t.services}
}

// Routed returns tracing whose tracers pick the service of each span when
// it starts: route maps the span's name to a service ("" keeps the
// process's). One gRPC server serves the RPCs of several services; routed
// by method, each RPC's span carries its service's name.
func (t *Tracing) Routed(route func(spanName string) string) *Tracing {
	if t == nil || t.services == nil {
		return t
	}
	return &Tracing{Provider: routedProvider{t: t, route: route}, Propagator: t.Propagator, services: t.services}
}

type routedProvider struct {
	embedded.TracerProvider
	t     *Tracing
	route func(string) string
}

func (p routedProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return routedTracer{p: p, name: name, opts: opts}
}

type routedTracer struct {
	embedded.Tracer
	p    routedProvider
	name string
	opts []trace.TracerOption
}

func (r routedTracer) Start(ctx context.Context, spanName string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	tp := r.p.t.Provider
	if svc := r.p.route(spanName); svc != "" {
		tp = r.p.t.services.provider(svc)
	}
	return tp.Tracer(r.name, r.opts...).Start(ctx, spanName, opts...)
}

// Shutdown flushes and stops every provider of t.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	if t.services == nil {
		if tp, ok := t.Provider.(*sdktrace.TracerProvider); ok {
			return tp.Shutdown(ctx)
		}
		return nil
	}
	t.services.mu.Lock()
	tps := make([]*sdktrace.TracerProvider, 0, len(t.services.byName))
	for _, tp := range t.services.byName {
		tps = append(tps, tp)
	}
	t.services.mu.Unlock()
	var errs []error
	for _, tp := range tps {
		errs = append(errs, tp.Shutdown(ctx))
	}
	return errors.Join(errs...)
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
