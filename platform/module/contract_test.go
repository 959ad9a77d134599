package module_test

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	riskv1 "github.com/herald-events/herald/gen/go/herald/risk/v1"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/contract"
	"github.com/herald-events/herald/platform/module"
	"github.com/herald-events/herald/platform/module/moduletest"
	"github.com/herald-events/herald/platform/sqldb"
)

// TestProducingDoor: with the platform's Contract, a use case whose event
// breaks its schema's rules fails with the violations and leaves nothing
// behind (neither its write nor an outbox row); a valid one commits both.
func TestProducingDoor(t *testing.T) {
	rules, err := contract.New()
	if err != nil {
		t.Fatal(err)
	}
	codec := moduletest.Codec(t)
	var (
		db   *sqldb.DB
		work *module.Work
	)
	m := ledger(&db)
	build := m.Build
	m.Build = func(ctx context.Context, d module.Deps) (*module.Parts, error) {
		work = d.Work
		return build(ctx, d)
	}
	p, _, _ := platform(t, codec)
	p.Contract = rules
	if _, err := m.Start(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	write := func(ev *ordersv1.OrderConfirmed) error {
		return work.Do(context.Background(), func(ctx context.Context) ([]proto.Message, error) {
			if _, err := db.Conn(ctx).ExecContext(ctx, `INSERT INTO seen (order_id) VALUES (?)`, ev.GetOrderId()); err != nil {
				return nil, err
			}
			return []proto.Message{ev}, nil
		})
	}
	err = write(&ordersv1.OrderConfirmed{OrderId: "o-1", CustomerId: ""})
	ce, ok := contract.As(err)
	if !ok || len(ce.Violations) != 2 || ce.Violations[0].Field != "customer_id" || ce.Violations[1].Field != "total" {
		t.Fatalf("Do with an invalid OrderConfirmed = %v, want violations of customer_id and total", err)
	}
	if s, o := count(t, db, `SELECT COUNT(*) FROM seen`), count(t, db, `SELECT COUNT(*) FROM herald_outbox`); s != 0 || o != 0 {
		t.Fatalf("%d writes and %d outbox rows after the refused event, want none", s, o)
	}
	valid := &ordersv1.OrderConfirmed{OrderId: "o-2", CustomerId: "c", Total: eurMoney(3)}
	if err := write(valid); err != nil {
		t.Fatal(err)
	}
	if s, o := count(t, db, `SELECT COUNT(*) FROM seen`), count(t, db, `SELECT COUNT(*) FROM herald_outbox`); s != 1 || o != 1 {
		t.Fatalf("%d writes and %d outbox rows after a valid event, want 1 and 1", s, o)
	}
}

// TestProducingDoorBusUnit: a module without a database publishes nothing
// in the consumer transaction when its handler returns an invalid event;
// the consumed event is dead-lettered (a permanent failure) instead.
func TestProducingDoorBusUnit(t *testing.T) {
	rules, err := contract.New()
	if err != nil {
		t.Fatal(err)
	}
	codec := moduletest.Codec(t)
	p, _, _ := platform(t, codec)
	p.BusTransactions, p.Contract = true, rules
	sc := scorer()
	sc.Build = func(context.Context, module.Deps) (*module.Parts, error) {
		on := func(_ context.Context, _ *consumer.Event, msg *ordersv1.OrderCreated) ([]proto.Message, error) {
			// Score 200 is over the contract's bound of 100.
			return []proto.Message{&riskv1.RiskAssessed{OrderId: msg.GetOrderId(), CustomerId: msg.GetCustomerId(), Score: 200,
				Level: riskv1.RiskLevel_RISK_LEVEL_HIGH}}, nil
		}
		return &module.Parts{Handlers: []module.Handler{module.On(on)}}, nil
	}
	in, err := sc.Start(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	txn := &moduletest.Recorder{Atomic: true}
	f := moduletest.NewFeed(txn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = in.Run(ctx, f) }()
	f.Topics()
	f.Deliver(t, frame(t, codec, "e-1", validOrderCreated()))
	// The dead letter goes through the delivery's publisher, in the
	// consumer transaction, instead of the RiskAssessed.
	out := txn.Messages()
	if len(out) != 1 || out[0].Topic != "ns.herald.orders.v1.dlq" {
		t.Fatalf("consumer transaction holds %v, want only the consumed event's dead letter", out)
	}
	if c, _ := out[0].Header(consumer.HeaderDLQClass); c != consumer.ClassPermanent {
		t.Fatalf("dead letter class %q, want permanent", c)
	}
}

func eurMoney(units int64) *moneyv1.Money { return &moneyv1.Money{CurrencyCode: "EUR", Units: units} }

func validOrderCreated() *ordersv1.OrderCreated {
	return &ordersv1.OrderCreated{OrderId: "o1", CustomerId: "mallory", Total: eurMoney(3), CreateTime: timestamppb.Now(),
		Lines: []*ordersv1.OrderLine{{Sku: "A", Quantity: 1, UnitPrice: eurMoney(3)}}}
}
