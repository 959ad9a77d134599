// Package ports adapts the risk use case to the bus. [Events.Transform]
// turns one consumed OrderCreated record into one RiskAssessed record, with
// the CloudEvents headers the outbox writes; it runs inside the Kafka
// transaction of a kafkabus.Transformer, which produces the result and
// commits the consumed offset together. [Events.DeadLetter] and
// [Events.Committed] are the transformer's dead-letter and commit hooks.
package ports

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	riskv1 "github.com/herald-events/herald/gen/go/herald/risk/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/observe"
	"github.com/herald-events/herald/platform/schema"
	"github.com/herald-events/herald/services/risk/app"
)

// Codec decodes consumed values and encodes produced ones; [schema.Codec]
// is one.
type Codec interface {
	Decode(topic string, value []byte) (proto.Message, error)
	Encode(topic string, msg proto.Message) ([]byte, error)
}

// DeadLetterSuffix names the dead-letter topic of a consumed topic, as the
// consumer routers do.
const DeadLetterSuffix = ".dlq"

var orderCreated = (&ordersv1.OrderCreated{}).ProtoReflect().Descriptor().FullName()

// Config configures [Events].
type Config struct {
	App   *app.App
	Codec Codec
	// Service names the service: ce_source is "herald/<Service>", and
	// published events are counted under it.
	Service string
	// Group is the consumer group, as named in dead letters and metrics.
	Group string
	// Namespace prefixes produced topics; see event.Namespaced.
	Namespace string
	// Metrics may be nil.
	Metrics *observe.Metrics
	// Tracing continues each order's trace. Default [observe.LocalTracing].
	Tracing *observe.Tracing
}

// Events is the event port.
type Events struct {
	cfg    Config
	tracer trace.Tracer
}

// NewEvents returns the event port.
func NewEvents(cfg Config) *Events {
	if cfg.Tracing == nil {
		cfg.Tracing = observe.LocalTracing()
	}
	return &Events{cfg: cfg, tracer: cfg.Tracing.Tracer("herald/" + cfg.Service)}
}

// Transform assesses an OrderCreated record and returns the RiskAssessed
// record to produce. Records of other types pass through without output
// and without being decoded (their ce_type header says what they are;
// records without one are not herald events and left to others). A record
// that claims to be OrderCreated but cannot be read fails with a
// [consumer.Permanent] error; a panic does too. Other errors (the registry
// out of reach) are transient.
func (e *Events) Transform(ctx context.Context, in *bus.Message) (out []*bus.Message, err error) {
	if typ, _ := in.Header(event.HeaderType); protoreflect.FullName(typ) != orderCreated {
		return nil, nil
	}
	err = consumer.Recover()(func(ctx context.Context, in *bus.Message) error {
		var err error
		out, err = e.transform(ctx, in)
		return err
	})(ctx, in)
	return out, err
}

func (e *Events) transform(ctx context.Context, in *bus.Message) ([]*bus.Message, error) {
	if id, _ := in.Header(event.HeaderID); id == "" {
		return nil, consumer.Permanent(fmt.Errorf("message %s: missing %s header", in, event.HeaderID))
	}
	msg, err := e.cfg.Codec.Decode(in.Topic, in.Value)
	if err != nil {
		if errors.Is(err, schema.ErrUndecodable) {
			return nil, consumer.Permanent(err)
		}
		return nil, err
	}
	created, ok := msg.(*ordersv1.OrderCreated)
	if !ok {
		return nil, consumer.Permanent(fmt.Errorf("message %s: %s header %q but value is %s",
			in, event.HeaderType, orderCreated, msg.ProtoReflect().Descriptor().FullName()))
	}
	// The assessment continues the order's trace: a consumer span, child
	// of the OrderCreated's publish span, whose context the RiskAssessed
	// carries on. ("transform", not the routers' "handle": the step
	// consumes and produces in one transaction.)
	tp, _ := in.Header(event.HeaderTraceParent)
	id, _ := in.Header(event.HeaderID)
	ctx, span := e.tracer.Start(e.cfg.Tracing.Extract(ctx, tp), "transform "+string(orderCreated),
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
			attribute.String("messaging.system", "kafka"), attribute.String("messaging.destination.name", in.Topic),
			attribute.String("messaging.consumer.group.name", e.cfg.Group), attribute.String("cloudevents.event_id", id)))
	defer span.End()
	m, err := e.message(ctx, e.cfg.App.Assess(created))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return nil, err
	}
	return []*bus.Message{m}, nil
}

// message frames an event and sets the CloudEvents headers the outbox
// sets. The ce_id is new on every call: the transaction, not the id, keeps
// the output once-only.
func (e *Events) message(ctx context.Context, ev *riskv1.RiskAssessed) (*bus.Message, error) {
	route, err := event.RouteOf(ev.ProtoReflect().Descriptor())
	if err != nil {
		return nil, err
	}
	env, err := event.New("herald/"+e.cfg.Service, ev)
	if err != nil {
		return nil, err
	}
	env.TraceParent = e.cfg.Tracing.Inject(ctx)
	topic := event.Namespaced(e.cfg.Namespace, route.Topic)
	value, err := e.cfg.Codec.Encode(topic, ev)
	if err != nil {
		return nil, err
	}
	key := route.Key(ev)
	m := &bus.Message{Topic: topic, Key: []byte(key), Value: value}
	m.SetHeader(event.HeaderID, env.ID)
	m.SetHeader(event.HeaderType, env.Type())
	m.SetHeader(event.HeaderSource, env.Source)
	m.SetHeader(event.HeaderTime, env.Time.Format(time.RFC3339Nano))
	m.SetHeader(event.HeaderSpecVersion, event.SpecVersion)
	m.SetHeader(event.HeaderSubject, key)
	m.SetHeader(event.HeaderContentType, event.ContentType)
	m.SetHeader(event.HeaderTraceParent, env.TraceParent)
	return m, nil
}

// DeadLetter returns the dead letter of a record that failed permanently,
// or nil for a transient failure (the transformer then retries). The dead
// letter is the one [consumer.DeadLetter] would publish, with the same
// herald_dlq_* headers, built by that middleware itself so the two cannot
// drift apart; the transformer produces it in its transaction instead of
// publishing it on its own.
func (e *Events) DeadLetter(ctx context.Context, in *bus.Message, err error) *bus.Message {
	if !consumer.IsPermanent(err) {
		return nil
	}
	var c capture
	fail := func(context.Context, *bus.Message) error { return err }
	// The transformer logs the dead letter, and Committed counts it once
	// its transaction committed: no logger or metrics here.
	quiet := slog.New(slog.DiscardHandler)
	if consumer.DeadLetter(&c, e.cfg.Group, DeadLetterSuffix, quiet, nil)(fail)(ctx, in) != nil {
		return nil
	}
	return c.msg
}

// capture is a bus.Publisher that keeps the message it is given.
type capture struct{ msg *bus.Message }

func (c *capture) Publish(_ context.Context, msgs ...*bus.Message) error {
	if len(msgs) != 1 {
		return fmt.Errorf("capture: %d messages, want 1", len(msgs))
	}
	c.msg = msgs[0]
	return nil
}

func (c *capture) Capabilities() bus.Capabilities { return bus.Capabilities{AtomicBatches: true} }

func (c *capture) Close() error { return nil }

// Committed counts a record whose transaction committed: consumed (ok or
// dead-lettered) and, for each output, published. Records passed over are
// not counted, as the routers do not count types they do not handle.
func (e *Events) Committed(in *bus.Message, out []*bus.Message, deadLettered bool) {
	typ, _ := in.Header(event.HeaderType)
	switch {
	case deadLettered:
		e.cfg.Metrics.Consumed(e.cfg.Group, typ, observe.ResultDeadLettered)
	case len(out) > 0:
		e.cfg.Metrics.Consumed(e.cfg.Group, typ, observe.ResultOK)
		for _, m := range out {
			t, _ := m.Header(event.HeaderType)
			e.cfg.Metrics.Published(e.cfg.Service, t, 1)
		}
	}
}
