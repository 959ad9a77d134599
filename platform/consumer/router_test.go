package consumer_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/schema"
)

// plainDecoder reads values as plain protobuf OrderCreated messages.
type plainDecoder struct{}

func (plainDecoder) Decode(_ string, b []byte) (proto.Message, error) {
	m := &ordersv1.OrderCreated{}
	return m, proto.Unmarshal(b, m)
}

// TestEventWithoutKeyIsDeadLettered: an event whose key field is empty never
// reaches its handler; it goes to the dead-letter topic as permanent.
func TestEventWithoutKeyIsDeadLettered(t *testing.T) {
	rec := &recorder{}
	r, err := consumer.NewRouter(consumer.Config{Group: "g", Decoder: plainDecoder{}, DeadLetter: rec, Logger: nopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	called := 0
	if err := consumer.Handle(r, func(context.Context, *consumer.Event, *ordersv1.OrderCreated) ([]proto.Message, error) {
		called++
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	h := r.Handler()
	for _, tc := range []struct {
		orderID string
		calls   int
		dead    int
	}{{"o-1", 1, 0}, {"", 1, 1}} {
		value, _ := proto.Marshal(&ordersv1.OrderCreated{OrderId: tc.orderID})
		m := &bus.Message{Topic: "herald.orders.v1", Value: value}
		m.SetHeader(event.HeaderID, "e-"+tc.orderID)
		m.SetHeader(event.HeaderType, "herald.orders.v1.OrderCreated")
		if err := h(context.Background(), m); err != nil {
			t.Fatalf("order %q: %v", tc.orderID, err)
		}
		if called != tc.calls || len(rec.msgs) != tc.dead {
			t.Fatalf("order %q: handler called %d times, %d dead letters; want %d and %d", tc.orderID, called, len(rec.msgs), tc.calls, tc.dead)
		}
	}
	reason, _ := rec.msgs[0].Header(consumer.HeaderDLQError)
	class, _ := rec.msgs[0].Header(consumer.HeaderDLQClass)
	if class != consumer.ClassPermanent || !strings.Contains(reason, consumer.ErrNoKey.Error()) {
		t.Fatalf("dead letter class %q reason %q", class, reason)
	}
}

// countingDecoder counts its calls and finds every value undecodable.
type countingDecoder struct{ calls int }

func (d *countingDecoder) Decode(string, []byte) (proto.Message, error) {
	d.calls++
	return nil, fmt.Errorf("garbage: %w", schema.ErrUndecodable)
}

// TestUnhandledTypePassesUndecoded: a record whose ce_type names a type
// the router has no handler for is passed over without decoding, so a
// group neither pays for nor judges events it does not read, and the
// subscriber is told (bus.PassOver); a record without ce_type is still
// decoded (and here dead-lettered), which is no pass.
func TestUnhandledTypePassesUndecoded(t *testing.T) {
	rec, dec := &recorder{}, &countingDecoder{}
	r, err := consumer.NewRouter(consumer.Config{Group: "g", Decoder: dec, DeadLetter: rec, Logger: nopLogger(), MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := consumer.Handle(r, func(context.Context, *consumer.Event, *ordersv1.OrderCreated) ([]proto.Message, error) {
		t.Error("handler called")
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	h := r.Handler()
	var passed atomic.Int64
	ctx := bus.WithPassOverCount(context.Background(), &passed)
	other := &bus.Message{Topic: "herald.orders.v1", Value: []byte("garbage")}
	other.SetHeader(event.HeaderID, "e-1")
	other.SetHeader(event.HeaderType, "herald.orders.v1.OrderConfirmed")
	if err := h(ctx, other); err != nil || dec.calls != 0 || len(rec.msgs) != 0 || passed.Load() != 1 {
		t.Fatalf("unhandled type: err %v, %d decodes, %d dead letters, %d passed over; want nil, 0, 0, 1", err, dec.calls, len(rec.msgs), passed.Load())
	}
	untyped := &bus.Message{Topic: "herald.orders.v1", Value: []byte("garbage")}
	untyped.SetHeader(event.HeaderID, "e-2")
	if err := h(ctx, untyped); err != nil || dec.calls != 1 || len(rec.msgs) != 1 || passed.Load() != 1 {
		t.Fatalf("record without ce_type: err %v, %d decodes, %d dead letters, %d passed over; want nil, 1, 1, 1", err, dec.calls, len(rec.msgs), passed.Load())
	}
}
