package consumer

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/contract"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/registry"
	"github.com/herald-events/herald/platform/schema"
)

// FuzzContractDoor delivers an arbitrary value, on the orders or the
// inventory topic, with or without CloudEvents headers, to a Router with
// the contract check on that handles OrderCreated and InventoryDeducted,
// decoding with the schema codec on the embedded registry: the validating
// decoder. Dispatch must never panic and fails only with a Permanent
// error; a handler only ever sees an event that keeps its rules and
// arrived on its declared topic, under the same id on every delivery of
// the same record; the middleware chain acknowledges every message, with
// one dead letter exactly when dispatch failed, classed contract (with at
// least one violation header), routing (the type belongs elsewhere) or
// permanent.
//
//	go test -run '^$' -fuzz FuzzContractDoor -fuzztime 20s ./platform/consumer
func FuzzContractDoor(f *testing.F) {
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
	rules, err := contract.New()
	if err != nil {
		f.Fatal(err)
	}
	const orders, inventory = "herald.orders.v1", "herald.inventory.v1"
	for topic, msg := range map[string]proto.Message{orders: &ordersv1.OrderCreated{}, inventory: &inventoryv1.InventoryDeducted{}} {
		if _, err := codec.Register(topic, msg.ProtoReflect().Descriptor()); err != nil {
			f.Fatal(err)
		}
	}
	eur := func(u int64) *moneyv1.Money { return &moneyv1.Money{CurrencyCode: "EUR", Units: u} }
	created := &ordersv1.OrderCreated{OrderId: "o-1", CustomerId: "c-1", Total: eur(6), CreateTime: timestamppb.New(time.Unix(1e9, 0)),
		Lines: []*ordersv1.OrderLine{{Sku: "A", Quantity: 2, UnitPrice: eur(3)}}}
	negative := proto.Clone(created).(*ordersv1.OrderCreated)
	negative.Lines[0].Quantity = -50
	mixed := proto.Clone(created).(*ordersv1.OrderCreated)
	mixed.Lines[0].UnitPrice.CurrencyCode = "usd"
	deducted := &inventoryv1.InventoryDeducted{OrderId: "o-1", Lines: []*inventoryv1.StockChange{{Sku: "A", Quantity: 2}}}
	encode := func(topic string, m proto.Message) []byte {
		b, err := codec.Encode(topic, m)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}

	dlq := &dlqRecorder{}
	r, err := NewRouter(Config{Group: "fuzz", Decoder: codec, DeadLetter: dlq, Logger: quiet, Contract: rules,
		MaxAttempts: 2, Backoff: time.Microsecond, MaxBackoff: time.Microsecond})
	if err != nil {
		f.Fatal(err)
	}
	var (
		seen []string // ids the handlers saw, in order
		bad  []string // what they should never have seen
	)
	check := func(ev *Event, msg proto.Message) ([]proto.Message, error) {
		if err := rules.Validate(msg); err != nil {
			bad = append(bad, "an event that breaks its contract: "+err.Error())
		}
		if route, _ := event.RouteOf(msg.ProtoReflect().Descriptor()); route.Topic != ev.Raw.Topic {
			bad = append(bad, ev.Type+" on "+ev.Raw.Topic)
		}
		seen = append(seen, ev.ID)
		return nil, nil
	}
	if err := Handle(r, func(_ context.Context, ev *Event, msg *ordersv1.OrderCreated) ([]proto.Message, error) {
		return check(ev, msg)
	}); err != nil {
		f.Fatal(err)
	}
	if err := Handle(r, func(_ context.Context, ev *Event, msg *inventoryv1.InventoryDeducted) ([]proto.Message, error) {
		return check(ev, msg)
	}); err != nil {
		f.Fatal(err)
	}
	full := r.Handler()

	f.Add(encode(orders, created), false, true)     // valid, with headers
	f.Add(encode(orders, created), false, false)    // valid, header-less
	f.Add(encode(orders, negative), false, true)    // contract: quantity
	f.Add(encode(orders, mixed), false, false)      // contract: currency pattern and one currency
	f.Add(encode(inventory, deducted), false, true) // routing: inventory's event on the orders topic
	f.Add(encode(inventory, deducted), true, false) // valid on its topic, header-less
	f.Add([]byte{0, 0, 0, 0, 1, 0, 0x08, 0x96}, true, false)
	f.Add([]byte("plain text"), false, false)

	ctx := context.Background()
	f.Fuzz(func(t *testing.T, value []byte, onInventory, headers bool) {
		topic := orders
		if onInventory {
			topic = inventory
		}
		msg := func() *bus.Message {
			m := &bus.Message{Topic: topic, Key: []byte("k"), Value: value, Partition: 1, Offset: 7}
			if headers {
				m.SetHeader(event.HeaderID, "e-1")
			}
			return m
		}
		seen, bad = nil, nil
		derr := r.dispatch(ctx, msg())
		if derr != nil && !IsPermanent(derr) {
			t.Fatalf("dispatch failed with an error that is not permanent: %v", derr)
		}
		if derr != nil && len(seen) != 0 {
			t.Fatalf("a handler ran, yet dispatch failed: %v", derr)
		}
		if err := full(ctx, msg()); err != nil {
			t.Fatalf("the middleware chain did not acknowledge the message: %v", err)
		}
		if len(bad) > 0 {
			t.Fatalf("a handler got %v", bad)
		}
		if derr == nil && len(seen) == 2 && seen[0] != seen[1] {
			t.Fatalf("one record handled under two ids: %q and %q", seen[0], seen[1])
		}
		dead := dlq.take()
		switch {
		case derr == nil && len(dead) != 0:
			t.Fatalf("dispatch succeeded, yet %d dead letters", len(dead))
		case derr != nil && len(dead) != 1:
			t.Fatalf("dispatch failed (%v), yet %d dead letters", derr, len(dead))
		case derr != nil:
			class, _ := dead[0].Header(HeaderDLQClass)
			var violations int
			for _, h := range dead[0].Headers {
				if h.Key == HeaderDLQViolation {
					violations++
				}
			}
			switch class {
			case contract.ClassContract:
				if violations == 0 {
					t.Fatalf("contract dead letter without violations: %v", derr)
				}
			case contract.ClassRouting:
				if !strings.Contains(derr.Error(), ErrWrongTopic.Error()) {
					t.Fatalf("routing dead letter for %v", derr)
				}
			case ClassPermanent:
			default:
				t.Fatalf("dead letter class %q (dispatch: %v)", class, derr)
			}
			if class != contract.ClassContract && violations != 0 {
				t.Fatalf("%d violation headers on a %s dead letter", violations, class)
			}
		}
	})
}
