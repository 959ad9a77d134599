package consumer

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/contract"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/observe"
	"github.com/herald-events/herald/platform/registry"
	"github.com/herald-events/herald/platform/schema"
)

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, ...*bus.Message) error { return nil }
func (nopPublisher) Capabilities() bus.Capabilities                 { return bus.Capabilities{} }
func (nopPublisher) Close() error                                   { return nil }

// BenchmarkRouter compares handling one Confluent-framed OrderCreated
// through the router's bare decode-and-dispatch with the full middleware
// chain (recover, failure counting, retry, dead-letter, metrics), each
// without and with the contract check, in the same run. Run: go test -run '^$' -bench Router -benchmem ./platform/consumer
func BenchmarkRouter(b *testing.B) {
	reg, err := registry.New(registry.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()
	client, err := schema.NewClient(srv.URL, "", "")
	if err != nil {
		b.Fatal(err)
	}
	codec, err := schema.NewCodec(client)
	if err != nil {
		b.Fatal(err)
	}
	const topic = "herald.orders.v1"
	eur := &moneyv1.Money{CurrencyCode: "EUR", Units: 3}
	ev := &ordersv1.OrderCreated{OrderId: "o-1", CustomerId: "c", Total: eur, CreateTime: timestamppb.Now(),
		Lines: []*ordersv1.OrderLine{{Sku: "A", Quantity: 2, UnitPrice: eur}}}
	if _, err := codec.Register(topic, ev.ProtoReflect().Descriptor()); err != nil {
		b.Fatal(err)
	}
	value, err := codec.Encode(topic, ev)
	if err != nil {
		b.Fatal(err)
	}
	msg := &bus.Message{Topic: topic, Key: []byte("o-1"), Value: value}
	msg.SetHeader(event.HeaderID, "e-1")
	msg.SetHeader(event.HeaderType, "herald.orders.v1.OrderCreated")
	msg.SetHeader(event.HeaderTime, "2026-01-01T00:00:00Z")
	msg.SetHeader(event.HeaderTraceParent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")

	rules, err := contract.New()
	if err != nil {
		b.Fatal(err)
	}
	handled := 0
	router := func(rules *contract.Validator) *Router {
		r, err := NewRouter(Config{Group: "bench", Decoder: codec, DeadLetter: nopPublisher{},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: observe.New(), Contract: rules})
		if err != nil {
			b.Fatal(err)
		}
		if err := Handle(r, func(context.Context, *Event, *ordersv1.OrderCreated) ([]proto.Message, error) {
			handled++
			return nil, nil
		}); err != nil {
			b.Fatal(err)
		}
		return r
	}
	// Without and with the contract check (the schema's rules and the
	// topic the type is declared for), in the same run.
	r, checked := router(nil), router(rules)
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		h    bus.Handler
	}{{"bare", r.dispatch}, {"middleware", r.Handler()}, {"bare+contract", checked.dispatch}, {"middleware+contract", checked.Handler()}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.h(ctx, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	if handled == 0 {
		b.Fatal("handler never ran")
	}
}
