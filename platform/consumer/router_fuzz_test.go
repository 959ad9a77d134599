package consumer

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/registry"
	"github.com/herald-events/herald/platform/schema"
)

// dlqRecorder keeps the dead letters of one delivery.
type dlqRecorder struct {
	mu   sync.Mutex
	msgs []*bus.Message
}

func (d *dlqRecorder) Publish(_ context.Context, msgs ...*bus.Message) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.msgs = append(d.msgs, msgs...)
	return nil
}
func (d *dlqRecorder) Capabilities() bus.Capabilities { return bus.Capabilities{} }
func (d *dlqRecorder) Close() error                   { return nil }

func (d *dlqRecorder) take() []*bus.Message {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.msgs
	d.msgs = nil
	return out
}

// FuzzRouter delivers an arbitrary value with arbitrary CloudEvents headers
// (ce_id, ce_type, ce_time, traceparent) to a Router that handles
// OrderCreated, decoding with the schema codec on the embedded registry (in
// process, no network). Bare dispatch must never panic and must either
// succeed or fail with a Permanent error (garbage is never worth retrying);
// the full middleware chain must then acknowledge the message, with exactly
// one dead letter, classed permanent, when dispatch failed, and none
// otherwise.
//
//	go test -run '^$' -fuzz FuzzRouter -fuzztime 20s ./platform/consumer
func FuzzRouter(f *testing.F) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg, err := registry.New(registry.Config{Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	f.Cleanup(srv.Close)
	client, err := schema.NewClient(srv.URL, "", "")
	if err != nil {
		f.Fatal(err)
	}
	codec, err := schema.NewCodec(client)
	if err != nil {
		f.Fatal(err)
	}
	const topic = "herald.orders.v1"
	if _, err := codec.Register(topic, (&ordersv1.OrderCreated{}).ProtoReflect().Descriptor()); err != nil {
		f.Fatal(err)
	}
	created, err := codec.Encode(topic, &ordersv1.OrderCreated{OrderId: "o-1", CustomerId: "c-1",
		Lines: []*ordersv1.OrderLine{{Sku: "A", Quantity: 2}}})
	if err != nil {
		f.Fatal(err)
	}
	noKey, err := codec.Encode(topic, &ordersv1.OrderCreated{CustomerId: "c-1"})
	if err != nil {
		f.Fatal(err)
	}
	cancelled, err := codec.Encode(topic, &ordersv1.OrderCancelled{OrderId: "o-1"})
	if err != nil {
		f.Fatal(err)
	}

	dlq := &dlqRecorder{}
	r, err := NewRouter(Config{Group: "fuzz", Decoder: codec, DeadLetter: dlq, Logger: quiet,
		MaxAttempts: 2, Backoff: time.Microsecond, MaxBackoff: time.Microsecond})
	if err != nil {
		f.Fatal(err)
	}
	var handled int
	if err := Handle(r, func(_ context.Context, ev *Event, msg *ordersv1.OrderCreated) ([]proto.Message, error) {
		if ev.ID == "" || msg.GetOrderId() == "" {
			return nil, errors.New("handler reached without an id or a key")
		}
		handled++
		return nil, nil
	}); err != nil {
		f.Fatal(err)
	}
	full := r.Handler()

	const (
		createdType = "herald.orders.v1.OrderCreated"
		tp          = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		ts          = "2026-03-01T12:00:00Z"
	)
	f.Add(created, "e-1", createdType, ts, tp)                         // handled
	f.Add(created, "", createdType, ts, tp)                            // no ce_id
	f.Add(created, "e-1", "herald.orders.v1.OrderCancelled", ts, tp)   // ce_type disagrees with the value
	f.Add(cancelled, "e-2", "herald.orders.v1.OrderCancelled", ts, "") // a type nobody handles: passed over
	f.Add(noKey, "e-3", createdType, "not a time", "garbage")          // empty key field
	f.Add([]byte("plain text"), "e-4", createdType, ts, tp)            // not Confluent framing
	f.Add(created[:6], "e-5", "", "", "")                              // frame without payload

	ctx := context.Background()
	f.Fuzz(func(t *testing.T, value []byte, id, typ, at, traceparent string) {
		msg := func() *bus.Message {
			m := &bus.Message{Topic: topic, Key: []byte("k"), Value: value, Partition: 1, Offset: 7}
			m.SetHeader(event.HeaderID, id)
			m.SetHeader(event.HeaderType, typ)
			m.SetHeader(event.HeaderTime, at)
			m.SetHeader(event.HeaderTraceParent, traceparent)
			return m
		}
		before := handled
		derr := r.dispatch(ctx, msg())
		if derr != nil && !IsPermanent(derr) {
			t.Fatalf("dispatch failed with an unclassified (transient) error: %v", derr)
		}
		if derr != nil && handled != before {
			t.Fatalf("handler ran, yet dispatch failed: %v", derr)
		}

		if err := full(ctx, msg()); err != nil {
			t.Fatalf("the middleware chain did not acknowledge the message: %v", err)
		}
		dead := dlq.take()
		switch {
		case derr == nil && len(dead) != 0:
			t.Fatalf("dispatch succeeded, yet %d dead letters", len(dead))
		case derr != nil && len(dead) != 1:
			t.Fatalf("dispatch failed (%v), yet %d dead letters", derr, len(dead))
		case derr != nil:
			if class, _ := dead[0].Header(HeaderDLQClass); class != ClassPermanent {
				t.Fatalf("dead letter class %q, want %q (dispatch: %v)", class, ClassPermanent, derr)
			}
			if reason, _ := dead[0].Header(HeaderDLQError); reason == "" {
				t.Fatal("dead letter without a reason")
			}
			if dead[0].Topic != topic+".dlq" {
				t.Fatalf("dead letter on %s", dead[0].Topic)
			}
		}
	})
}
