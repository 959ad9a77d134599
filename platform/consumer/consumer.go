// Package consumer turns bus messages into typed events for handlers.
//
// A [Router] decodes each message (Confluent framing, CloudEvents headers),
// dispatches it by event type to the function registered with [Handle], and
// wraps the whole in middleware of the one shape func(bus.Handler)
// bus.Handler. Every failure falls in one of three classes:
//
//   - transient ([fault.IsTransient]: the database, the schema registry or
//     another dependency cannot be reached now): never dead-lettered.
//     [Circuit] keeps the message and calls the handler again without limit
//     with a capped backoff; the group's circuit opens on the first such
//     failure, so its other deliveries wait while one probe at a time tests
//     the dependency, and the first success closes it.
//     A conflict ([fault.IsConflict]: the database broke a deadlock or a
//     serialization failure by failing this unit of work) is run again at
//     once, a few times, before the circuit counts it as an outage.
//   - permanent ([Permanent], an undecodable value, a panic caught by
//     [Recover]): [DeadLetter] moves the message to its dead-letter topic at
//     once with the reason, so the consumer keeps going.
//   - unclassified (anything else): [Retry] tries a few times with backoff,
//     then the message is dead-lettered as retries_exhausted, logged at
//     Error level and counted, since such an error should be classified.
//
// When the context ends (shutdown, a lost partition) a failing message is
// never dead-lettered: the error is returned so the bus redelivers it.
// A [Unit] runs each handler call; the platform's (package module) claims the
// event in an inbox in the transaction of its effects, so they apply once.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/contract"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/fault"
	"github.com/herald-events/herald/platform/observe"
	"github.com/herald-events/herald/platform/schema"
)

// Decoder reads a framed value; [schema.Codec] is one.
type Decoder interface {
	Decode(topic string, value []byte) (proto.Message, error)
}

// ConsistencyChecker is implemented by a [Decoder] that can tell whether a
// value decoding to a type other than its ce_type header names is the
// message's fault; [schema.Codec] is one. Consistent returns nil when the
// schema registry agrees with the decoder (the message is bad and is
// dead-lettered) and a transient error when it does not or cannot be
// reached (the registry changed under the consumer: the message is
// retried until an operator restores the registry).
type ConsistencyChecker interface {
	Consistent() error
}

// Event is a decoded message with its CloudEvents attributes.
type Event struct {
	ID          string
	Type        string
	Source      string
	Time        time.Time
	TraceParent string
	Message     proto.Message
	Raw         *bus.Message

	duplicate bool
}

// MarkDuplicate records that the handler recognised the event as already
// processed (its inbox claim failed); it is counted as a duplicate.
func (e *Event) MarkDuplicate() { e.duplicate = true }

// Handler handles one event and returns the events it causes. Return
// [Permanent] for errors that retrying cannot fix, and an error marked with
// [fault.Transient] when a dependency cannot be reached (the platform's
// stores mark theirs). The router's [Unit] applies the handler's effect and
// publishes the events it returns as one unit of work; on an error neither
// happens.
type Handler func(ctx context.Context, ev *Event) ([]proto.Message, error)

// Unit runs one call of a handler as a unit of work: whatever the handler
// changes and the events it returns take effect together, or not at all,
// and an event already handled is not handled again (mark it with
// [Event.MarkDuplicate]). The platform provides two: in a database
// transaction with the inbox claim and the outbox rows, and inside the
// consumer's bus transaction (see the module package). The default,
// [Direct], only calls the handler.
type Unit func(ctx context.Context, ev *Event, h Handler) error

// Direct is the [Unit] of a router whose handlers have effects of their own
// and cause no events: it calls h and fails when h returns events, since it
// has nowhere to publish them.
func Direct(ctx context.Context, ev *Event, h Handler) error {
	out, err := h(ctx, ev)
	if err != nil {
		return err
	}
	if len(out) > 0 {
		return fmt.Errorf("event %s: the handler returned %d events but the router has no unit of work to publish them", ev.ID, len(out))
	}
	return nil
}

type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// Permanent marks err as not worth retrying: the message goes to the
// dead-letter topic.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err was marked with [Permanent].
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// Config configures a [Router].
type Config struct {
	// Group is the consumer group, namespaced already (see the names
	// package). Required.
	Group string
	// Namespace prefixes every topic (see [event.Namespaced]). Default
	// none.
	Namespace string
	// Decoder decodes values. Required.
	Decoder Decoder
	// DeadLetter publishes dead letters. Required.
	DeadLetter bus.Publisher
	// DeadLetterSuffix is appended to a topic to name its dead-letter
	// topic. Default [bus.DeadLetterSuffix].
	DeadLetterSuffix string
	// MaxAttempts bounds the attempts of a message failing with an
	// unclassified error before it is dead-lettered. Default 5. Transient
	// errors are retried without limit (see [Circuit]).
	MaxAttempts int
	// MaxRetryTime bounds the time spent retrying one message failing with
	// an unclassified error before it is dead-lettered. Default 30s.
	MaxRetryTime time.Duration
	// Backoff is the first pause between attempts of an unclassified
	// failure, doubled each time (with jitter) up to MaxBackoff. Defaults
	// 50ms and 2s.
	Backoff, MaxBackoff time.Duration
	// CircuitBackoff is the first pause between probes of an unavailable
	// dependency, doubled each time (with jitter) up to CircuitMaxBackoff.
	// Defaults 100ms and 2s.
	CircuitBackoff, CircuitMaxBackoff time.Duration
	// Logger defaults to [slog.Default].
	Logger *slog.Logger
	// Metrics counts handled messages; nil records nothing.
	Metrics *observe.Metrics
	// Tracing continues each event's trace in a consumer span around its
	// handler. Default [observe.LocalTracing].
	Tracing *observe.Tracing
	// Unit runs each handler call. Default [Direct].
	Unit Unit
	// RequireCloudEvents refuses records without a ce_id header
	// (dead-letters them). Default false: such a record, from a producer
	// outside herald, is accepted with an id derived from its position
	// (see [DerivedID]).
	RequireCloudEvents bool
	// Contract, when set, checks each event before its unit runs: an
	// event of a type not declared for its topic, or breaking its
	// schema's rules, is dead-lettered with class routing or contract
	// (see checkContract). Default nil: no check. contract.Disabled()
	// checks the routing only.
	Contract *contract.Validator
}

// Router dispatches events of its topics to typed handlers.
type Router struct {
	cfg      Config
	handlers map[protoreflect.FullName]Handler
	topics   []string
	circuit  func(bus.Handler) bus.Handler
	system   string // the bus's, for telemetry; set by Run
}

// NewRouter validates cfg and returns an empty router.
func NewRouter(cfg Config) (*Router, error) {
	if cfg.Group == "" || cfg.Decoder == nil || cfg.DeadLetter == nil {
		return nil, errors.New("consumer: Group, Decoder and DeadLetter are required")
	}
	if cfg.DeadLetterSuffix == "" {
		cfg.DeadLetterSuffix = bus.DeadLetterSuffix
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.MaxRetryTime <= 0 {
		cfg.MaxRetryTime = 30 * time.Second
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 50 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Tracing == nil {
		cfg.Tracing = observe.LocalTracing()
	}
	if cfg.Unit == nil {
		cfg.Unit = Direct
	}
	if cfg.Contract != nil {
		cfg.Unit = checkContract(cfg.Contract, cfg.Namespace, cfg.Unit)
	}
	circuit := Circuit(CircuitPolicy{Group: cfg.Group, Floor: cfg.CircuitBackoff, Ceil: cfg.CircuitMaxBackoff, Logger: cfg.Logger, Metrics: cfg.Metrics})
	return &Router{cfg: cfg, handlers: map[protoreflect.FullName]Handler{}, circuit: circuit}, nil
}

// ErrNoKey marks an event whose key field (see the event option) is empty;
// no handler is called for it and it is dead-lettered.
var ErrNoKey = errors.New("event has an empty key field")

// Handle registers fn for events of type T and subscribes the router to
// T's topic. fn returns the events the one it handles causes (nil for
// none). Events of T whose key field is empty are permanent failures (see
// [ErrNoKey]). It fails when T is not an event message or already has a
// handler.
func Handle[T proto.Message](r *Router, fn func(ctx context.Context, ev *Event, msg T) ([]proto.Message, error)) error {
	var zero T
	md := zero.ProtoReflect().Descriptor()
	route, err := event.RouteOf(md)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", r.cfg.Group, err)
	}
	if _, dup := r.handlers[md.FullName()]; dup {
		return fmt.Errorf("consumer %s: a second handler for %s", r.cfg.Group, md.FullName())
	}
	r.handlers[md.FullName()] = func(ctx context.Context, ev *Event) ([]proto.Message, error) {
		msg, ok := ev.Message.(T)
		if !ok {
			return nil, Permanent(fmt.Errorf("event %s: decoded as %T", ev.ID, ev.Message))
		}
		if route.Key(msg) == "" {
			return nil, Permanent(fmt.Errorf("%s %s: %w", ev.Type, ev.ID, ErrNoKey))
		}
		return fn(ctx, ev, msg)
	}
	if topic := event.Namespaced(r.cfg.Namespace, route.Topic); !slices.Contains(r.topics, topic) {
		r.topics = append(r.topics, topic)
	}
	return nil
}

// Topics lists the topics the router consumes.
func (r *Router) Topics() []string { return slices.Clone(r.topics) }

// Group returns the consumer group.
func (r *Router) Group() string { return r.cfg.Group }

// Handler returns the router as a bus handler with its middleware:
// recover, failure counting, the group's circuit for transient errors,
// bounded retry of unclassified ones, dead-lettering, and timing. Every
// handler of one router shares its circuit.
func (r *Router) Handler() bus.Handler {
	group, m, log := r.cfg.Group, r.cfg.Metrics, r.cfg.Logger
	types := make([]string, 0, len(r.handlers))
	for t := range r.handlers {
		types = append(types, string(t))
	}
	m.ConsumerInit(group, types, []string{classConflict, classTransient, classPermanent, classUnclassified}, r.deadLetterClasses())
	h := bus.Handler(r.dispatch)
	h = Recover()(h)
	h = countFailures(group, m)(h)
	h = r.circuit(h)
	h = Retry(RetryPolicy{MaxAttempts: r.cfg.MaxAttempts, MaxElapsed: r.cfg.MaxRetryTime, Floor: r.cfg.Backoff, Ceil: r.cfg.MaxBackoff}, func(msg *bus.Message, attempt int, err error) {
		typ, _ := msg.Header(event.HeaderType)
		m.Retried(group, typ)
		log.Debug("retrying message", "group", group, "message", msg.String(), "attempt", attempt, "err", err)
	})(h)
	h = DeadLetter(r.cfg.DeadLetter, group, r.cfg.DeadLetterSuffix, log, m)(h)
	return func(ctx context.Context, msg *bus.Message) error {
		start := time.Now()
		err := h(ctx, msg)
		typ, _ := msg.Header(event.HeaderType)
		var at time.Time
		if ts, ok := msg.Header(event.HeaderTime); ok {
			at, _ = time.Parse(time.RFC3339Nano, ts)
		}
		m.Handled(group, typ, time.Since(start), at)
		if err != nil && ctx.Err() == nil {
			m.Consumed(group, typ, observe.ResultError)
		}
		return err
	}
}

// countFailures records every failed attempt with its class.
func countFailures(group string, m *observe.Metrics) func(bus.Handler) bus.Handler {
	return func(next bus.Handler) bus.Handler {
		return func(ctx context.Context, msg *bus.Message) error {
			err := next(ctx, msg)
			if err != nil && ctx.Err() == nil {
				typ, _ := msg.Header(event.HeaderType)
				m.Failed(group, typ, classOf(err))
			}
			return err
		}
	}
}

// Failure classes counted in herald_events_failed_total.
const (
	classConflict     = "conflict"
	classTransient    = "transient"
	classPermanent    = "permanent"
	classUnclassified = "unclassified"
)

// classOf names err's class. Transient wins over permanent: an unavailable
// dependency is never the message's fault. A conflict (a deadlock) is a
// transient failure counted apart, since the dependency was up.
func classOf(err error) string {
	switch {
	case fault.IsConflict(err):
		return classConflict
	case fault.IsTransient(err):
		return classTransient
	case IsPermanent(err):
		return classPermanent
	default:
		return classUnclassified
	}
}

// Run consumes the router's topics with sub until ctx is done.
func (r *Router) Run(ctx context.Context, sub bus.Subscriber) error {
	if len(r.topics) == 0 {
		return fmt.Errorf("consumer %s: no handlers registered", r.cfg.Group)
	}
	r.system = sub.Capabilities().System
	return sub.Run(ctx, r.cfg.Group, r.topics, r.Handler())
}

func (r *Router) dispatch(ctx context.Context, m *bus.Message) error {
	if t, ok := m.Header(event.HeaderType); ok && r.handlers[protoreflect.FullName(t)] == nil {
		// A type the router does not handle, by its header: passed over
		// without decoding (a value that is not what its header says is
		// judged by the groups that handle that type).
		markSkipped(ctx)
		return nil
	}
	ev, err := r.decode(m)
	if err != nil {
		return err
	}
	h, ok := r.handlers[protoreflect.FullName(ev.Type)]
	if !ok {
		// Topics carry every event of a domain; a service handles the
		// types it cares about and passes over the rest.
		markSkipped(ctx)
		return nil
	}
	// The process span, named and described as the OpenTelemetry
	// messaging conventions ask; it continues the producer's span.
	attrs := append(observe.MessagingAttributes(r.system, observe.OperationProcess, r.cfg.Group, m),
		attribute.String("cloudevents.event_id", ev.ID), attribute.String("cloudevents.event_type", ev.Type))
	ctx, span := r.cfg.Tracing.Tracer("herald/consumer").Start(r.cfg.Tracing.Extract(ctx, ev.TraceParent),
		observe.MessagingSpanName(observe.OperationProcess, m.Topic),
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
	defer span.End()
	if err := r.cfg.Unit(ctx, ev, h); err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return err
	}
	result := observe.ResultOK
	if ev.duplicate {
		result = observe.ResultDuplicate
	}
	r.cfg.Metrics.Consumed(r.cfg.Group, ev.Type, result)
	return nil
}

func (r *Router) decode(m *bus.Message) (*Event, error) {
	id, derived, err := r.eventID(m) // see headerless.go
	if err != nil {
		return nil, err
	}
	msg, err := r.cfg.Decoder.Decode(m.Topic, m.Value)
	if err != nil {
		if errors.Is(err, schema.ErrUndecodable) {
			return nil, Permanent(err)
		}
		return nil, fault.Transient("schema registry", err)
	}
	ev := &Event{ID: id, Message: msg, Raw: m, Type: string(msg.ProtoReflect().Descriptor().FullName())}
	if t, ok := m.Header(event.HeaderType); ok && t != ev.Type {
		mismatch := fmt.Errorf("message %s: %s header %q but value is %s", m, event.HeaderType, t, ev.Type)
		if cc, ok := r.cfg.Decoder.(ConsistencyChecker); ok {
			if err := cc.Consistent(); err != nil {
				return nil, fmt.Errorf("%w; not treated as a bad message: %w", mismatch, err)
			}
		}
		return nil, Permanent(mismatch)
	}
	ev.Source, _ = m.Header(event.HeaderSource)
	ev.TraceParent, _ = m.Header(event.HeaderTraceParent)
	if ts, ok := m.Header(event.HeaderTime); ok {
		ev.Time, _ = time.Parse(time.RFC3339Nano, ts)
	} else if derived {
		ev.Time = m.Timestamp
	}
	return ev, nil
}
