package consumer_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/event"
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
