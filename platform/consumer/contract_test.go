package consumer_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/contract"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/observe"
)

func validOrderCreated(qty int32) *ordersv1.OrderCreated {
	eur := func(u int64) *moneyv1.Money { return &moneyv1.Money{CurrencyCode: "EUR", Units: u} }
	return &ordersv1.OrderCreated{OrderId: "o-1", CustomerId: "c-1", Total: eur(int64(qty) * 3), CreateTime: timestamppb.Now(),
		Lines: []*ordersv1.OrderLine{{Sku: "A", Quantity: qty, UnitPrice: eur(3)}}}
}

// TestContractDoor: with Config.Contract, an event that breaks its
// schema's rules, or arrives on a topic its type is not declared for, never
// reaches its handler; it is dead-lettered with class contract (one
// violation header per broken rule) or routing, and counted under that
// class. A valid event on its own topic is handled.
func TestContractDoor(t *testing.T) {
	rules, err := contract.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		topic      string
		msg        proto.Message
		class      string // "" = handled
		violations []string
	}{
		{"valid", "ns.herald.orders.v1", validOrderCreated(2), "", nil},
		{"negative quantity", "ns.herald.orders.v1", func() proto.Message { m := validOrderCreated(2); m.Lines[0].Quantity = -50; return m }(),
			contract.ClassContract, []string{"lines[0].quantity"}},
		{"two currencies, no time", "ns.herald.orders.v1", func() proto.Message {
			m := validOrderCreated(2)
			m.Lines[0].UnitPrice.CurrencyCode = "USD"
			m.CreateTime = nil
			return m
		}(), contract.ClassContract, []string{"order_created.one_currency", "create_time"}},
		{"wrong topic", "ns.herald.orders.v1", &inventoryv1.InventoryDeducted{OrderId: "o-1",
			Lines: []*inventoryv1.StockChange{{Sku: "A", Quantity: 1}}}, contract.ClassRouting, nil},
		{"declared topic without namespace", "herald.inventory.v1", &inventoryv1.InventoryDeducted{OrderId: "o-1",
			Lines: []*inventoryv1.StockChange{{Sku: "A", Quantity: 1}}}, contract.ClassRouting, nil},
		{"valid on its topic", "ns.herald.inventory.v1", &inventoryv1.InventoryDeducted{OrderId: "o-1",
			Lines: []*inventoryv1.StockChange{{Sku: "A", Quantity: 1}}}, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, metrics := &recorder{}, observe.New()
			r, err := consumer.NewRouter(consumer.Config{Group: "g", Namespace: "ns", Decoder: typedDecoder{}, DeadLetter: rec,
				Logger: nopLogger(), Metrics: metrics, Contract: rules})
			if err != nil {
				t.Fatal(err)
			}
			handled := 0
			count := func(context.Context, *consumer.Event, proto.Message) ([]proto.Message, error) {
				handled++
				return nil, nil
			}
			if err := consumer.Handle(r, func(ctx context.Context, ev *consumer.Event, m *ordersv1.OrderCreated) ([]proto.Message, error) {
				return count(ctx, ev, m)
			}); err != nil {
				t.Fatal(err)
			}
			if err := consumer.Handle(r, func(ctx context.Context, ev *consumer.Event, m *inventoryv1.InventoryDeducted) ([]proto.Message, error) {
				return count(ctx, ev, m)
			}); err != nil {
				t.Fatal(err)
			}
			a, err := anypb.New(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			value, err := proto.Marshal(a)
			if err != nil {
				t.Fatal(err)
			}
			m := &bus.Message{Topic: tc.topic, Key: []byte("o-1"), Value: value}
			m.SetHeader(event.HeaderID, "e-1")
			m.SetHeader(event.HeaderType, string(tc.msg.ProtoReflect().Descriptor().FullName()))
			if err := r.Handler()(context.Background(), m); err != nil {
				t.Fatal(err)
			}
			if tc.class == "" {
				if handled != 1 || len(rec.msgs) != 0 {
					t.Fatalf("handled %d, %d dead letters; want 1 and 0", handled, len(rec.msgs))
				}
				return
			}
			if handled != 0 || len(rec.msgs) != 1 {
				t.Fatalf("handled %d, %d dead letters; want 0 and 1", handled, len(rec.msgs))
			}
			dl := rec.msgs[0]
			if class, _ := dl.Header(consumer.HeaderDLQClass); class != tc.class {
				t.Fatalf("class %q, want %q", class, tc.class)
			}
			var got []string
			for _, h := range dl.Headers {
				if h.Key == consumer.HeaderDLQViolation {
					got = append(got, string(h.Value))
				}
			}
			if len(got) != len(tc.violations) {
				t.Fatalf("violation headers %q, want %d naming %v", got, len(tc.violations), tc.violations)
			}
			for _, want := range tc.violations {
				if !strings.Contains(strings.Join(got, "\n"), want) {
					t.Fatalf("violation headers %q, want one naming %s", got, want)
				}
			}
			typ := string(tc.msg.ProtoReflect().Descriptor().FullName())
			if line := deadLetteredMetric(t, metrics, tc.class, typ); !strings.HasSuffix(line, " 1") {
				t.Fatalf("dead letters of %s counted under class %s: %q, want 1", typ, tc.class, line)
			}
			other := "herald.orders.v1.OrderCreated"
			if typ == other {
				other = "herald.inventory.v1.InventoryDeducted"
			}
			if line := deadLetteredMetric(t, metrics, tc.class, other); !strings.HasSuffix(line, " 0") {
				t.Fatalf("dead letters of %s under class %s: %q, want the series at 0", other, tc.class, line)
			}
		})
	}
}

// typedDecoder reads values written as google.protobuf.Any, so a test can
// put an event of any type on any topic.
type typedDecoder struct{}

func (typedDecoder) Decode(_ string, b []byte) (proto.Message, error) {
	var a anypb.Any
	if err := proto.Unmarshal(b, &a); err != nil {
		return nil, err
	}
	return a.UnmarshalNew()
}

// deadLetteredMetric returns the exposition line of
// herald_events_dead_lettered_total for class and event type.
func deadLetteredMetric(t *testing.T, m *observe.Metrics, class, typ string) string {
	t.Helper()
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	for line := range strings.Lines(w.Body.String()) {
		if strings.HasPrefix(line, "herald_events_dead_lettered_total{") && strings.Contains(line, `class="`+class+`"`) &&
			strings.Contains(line, `type="`+typ+`"`) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}
