package module

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/contract"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/names"
	"github.com/herald-events/herald/platform/observe"
)

// busUnit is the unit of work of a module without a database: the events
// a handler returns are produced through the delivery publisher, inside the
// consumer's bus transaction, which commits them together with the consumed
// offset (or aborts both). There is no inbox: the transaction, not the
// ce_id, makes the output once-only per consumed record.
type busUnit struct {
	codec    Codec
	produces produces
	names    names.Service
	tracing  *observe.Tracing
	metrics  *observe.Metrics
	contract *contract.Validator
}

func (u *busUnit) run(ctx context.Context, ev *consumer.Event, h consumer.Handler) error {
	out, err := h(ctx, ev)
	if err != nil || len(out) == 0 {
		return err
	}
	if err := u.produces.check(u.names.Name, out); err != nil {
		return err
	}
	pub, ok := bus.DeliveryPublisher(ctx)
	if !ok || !pub.Capabilities().AtomicBatches {
		return fmt.Errorf("%s: event %s: no consumer transaction to publish %d events in", u.names.Name, ev.ID, len(out))
	}
	msgs := make([]*bus.Message, 0, len(out))
	spans := make([]trace.Span, 0, len(out))
	defer func() {
		for _, sp := range spans {
			sp.End()
		}
	}()
	system := pub.Capabilities().System
	tracer := u.tracing.Tracer("herald/module")
	for _, msg := range out {
		if err := u.contract.Validate(msg); err != nil {
			// The handler would return the same event again: dead-letter
			// the consumed event at once.
			return consumer.Permanent(fmt.Errorf("%s: event caused by %s: %w", u.names.Name, ev.ID, err))
		}
		m, err := u.frame(msg)
		if err != nil {
			return err
		}
		// A send span per event, a child of the consumer's span; the
		// event's consumers continue it.
		sctx, span := tracer.Start(ctx, observe.MessagingSpanName(observe.OperationSend, m.Topic), trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(append(observe.MessagingAttributes(system, observe.OperationSend, "", m),
				attribute.String("cloudevents.event_id", m.ID), attribute.String("cloudevents.event_type", typeOf(m)))...))
		spans = append(spans, span)
		if tp := u.tracing.Inject(sctx); tp != "" {
			m.SetHeader(event.HeaderTraceParent, tp)
		}
		msgs = append(msgs, m)
	}
	if err := pub.Publish(ctx, msgs...); err != nil {
		for _, sp := range spans {
			sp.RecordError(err)
			sp.SetStatus(codes.Error, err.Error())
		}
		return fmt.Errorf("%s: publish %d events caused by %s: %w", u.names.Name, len(msgs), ev.ID, err)
	}
	// Counted when produced: an aborted transaction is counted again
	// when its record is handled again.
	for _, m := range msgs {
		u.metrics.Published(u.names.Name, typeOf(m), 1)
	}
	return nil
}

// typeOf is the event type a framed message's header names.
func typeOf(m *bus.Message) string {
	t, _ := m.Header(event.HeaderType)
	return t
}

// frame encodes msg with a new ce_id: the transaction, not the id, keeps
// the output once-only. The caller sets its traceparent.
func (u *busUnit) frame(msg proto.Message) (*bus.Message, error) {
	route, err := event.RouteOf(msg.ProtoReflect().Descriptor())
	if err != nil {
		return nil, err
	}
	env, err := event.New(u.names.Source(), msg)
	if err != nil {
		return nil, err
	}
	topic := u.names.Topic(route.Topic)
	value, err := u.codec.Encode(topic, msg)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", env.Type(), err)
	}
	key := route.Key(msg)
	return &bus.Message{ID: env.ID, Topic: topic, Key: []byte(key), Value: value,
		Headers: event.Headers(env.ID, env.Type(), env.Source, env.Time.Format(event.TimeLayout), key, "")}, nil
}
