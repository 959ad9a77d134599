package module

import (
	"context"
	"fmt"

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
	for _, msg := range out {
		if err := u.contract.Validate(msg); err != nil {
			// The handler would return the same event again: dead-letter
			// the consumed event at once.
			return consumer.Permanent(fmt.Errorf("%s: event caused by %s: %w", u.names.Name, ev.ID, err))
		}
		m, err := u.frame(ctx, msg)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	if err := pub.Publish(ctx, msgs...); err != nil {
		return fmt.Errorf("%s: publish %d events caused by %s: %w", u.names.Name, len(msgs), ev.ID, err)
	}
	// Counted when produced: an aborted transaction is counted again
	// when its record is handled again.
	for _, m := range msgs {
		t, _ := m.Header(event.HeaderType)
		u.metrics.Published(u.names.Name, t, 1)
	}
	return nil
}

// frame encodes msg with a new ce_id: the transaction, not the id, keeps
// the output once-only. The event continues the trace in ctx (the
// consumer's span).
func (u *busUnit) frame(ctx context.Context, msg proto.Message) (*bus.Message, error) {
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
		Headers: event.Headers(env.ID, env.Type(), env.Source, env.Time.Format(event.TimeLayout), key, u.tracing.Inject(ctx))}, nil
}
