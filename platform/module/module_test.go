package module_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	riskv1 "github.com/herald-events/herald/gen/go/herald/risk/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/module"
	"github.com/herald-events/herald/platform/module/moduletest"
	"github.com/herald-events/herald/platform/schema"
	"github.com/herald-events/herald/platform/sqldb"
)

const ns = "ns"

// platform is moduletest's, in namespace ns.
func platform(t *testing.T, codec *schema.Codec) (module.Platform, *moduletest.Recorder, *moduletest.Recorder) {
	p, relay, dead := moduletest.Platform(t, codec)
	p.Namespace, p.Instance = ns, "i1"
	return p, relay, dead
}

func frame(t *testing.T, codec *schema.Codec, id string, msg proto.Message) *bus.Message {
	return moduletest.Frame(t, codec, ns, id, "herald/test", msg)
}

// ledger is a module with a database: it records every order it hears of
// and confirms it; customer "fail" makes the handler fail after its write,
// "stray" makes it return an event its module does not declare,
// "flaky" fails its first attempt after its write with an error worth
// retrying, and "slow" holds its transaction for 300 ms.
func ledger(db **sqldb.DB) module.Module {
	var (
		mu       sync.Mutex
		attempts = map[string]int{}
	)
	return module.Module{
		Name:     "ledger",
		Consumes: []proto.Message{&ordersv1.OrderCreated{}},
		Produces: []proto.Message{&ordersv1.OrderConfirmed{}},
		Database: true,
		Migrations: func(sqldb.Dialect) []sqldb.Migration {
			return []sqldb.Migration{{ID: "0001_seen", SQL: []string{`CREATE TABLE seen (order_id TEXT NOT NULL)`}}}
		},
		Build: func(_ context.Context, d module.Deps) (*module.Parts, error) {
			*db = d.DB
			on := func(ctx context.Context, _ *consumer.Event, msg *ordersv1.OrderCreated) ([]proto.Message, error) {
				if _, err := d.DB.Conn(ctx).ExecContext(ctx, `INSERT INTO seen (order_id) VALUES (?)`, msg.GetOrderId()); err != nil {
					return nil, err
				}
				switch msg.GetCustomerId() {
				case "slow":
					time.Sleep(300 * time.Millisecond)
				case "flaky":
					mu.Lock()
					attempts[msg.GetOrderId()]++
					first := attempts[msg.GetOrderId()] == 1
					mu.Unlock()
					if first {
						return nil, errors.New("write conflict, try again")
					}
				case "fail":
					return nil, consumer.Permanent(errors.New("refused after writing"))
				case "stray":
					return []proto.Message{&inventoryv1.InventoryDeducted{OrderId: msg.GetOrderId()}}, nil
				}
				return []proto.Message{&ordersv1.OrderConfirmed{OrderId: msg.GetOrderId(), CustomerId: msg.GetCustomerId()}}, nil
			}
			return &module.Parts{Handlers: []module.Handler{module.On(on)}}, nil
		},
	}
}

func count(t *testing.T, db *sqldb.DB, q string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// stored counts the events the module's transactions stored in its outbox
// while its relay runs: the rows still there and those the relay has
// published (and may have deleted), each once. The table is read first: a
// row gone by then was published before.
func stored(t *testing.T, db *sqldb.DB, relay *moduletest.Recorder) int {
	t.Helper()
	ids := map[string]bool{}
	rows, err := db.QueryContext(context.Background(), `SELECT event_id FROM herald_outbox`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		t.Fatal(err)
	}
	for _, m := range relay.Messages() {
		id, _ := m.Header(event.HeaderID)
		ids[id] = true
	}
	return len(ids)
}

// TestDatabaseUnitOfWork: the inbox claim, the handler's write and the
// outbox rows of the events it returns commit together; a redelivery has
// no second effect; a failing handler, or one returning an event its
// module does not declare, leaves nothing behind.
func TestDatabaseUnitOfWork(t *testing.T) {
	codec := moduletest.Codec(t)
	p, relay, dead := platform(t, codec)
	var db *sqldb.DB
	in, err := ledger(&db).Start(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if group, topics := in.Subscription(); group != "ns.herald-ledger" || len(topics) != 1 || topics[0] != "ns.herald.orders.v1" {
		t.Fatalf("Subscription = %s %v, want ns.herald-ledger [ns.herald.orders.v1]", group, topics)
	}
	f := moduletest.Run(t, in)

	first := frame(t, codec, "e-1", &ordersv1.OrderCreated{OrderId: "o-1", CustomerId: "alice"})
	f.Deliver(t, first)
	f.Deliver(t, first) // redelivered
	if n := count(t, db, `SELECT COUNT(*) FROM seen`); n != 1 {
		t.Fatalf("%d effects of one event delivered twice, want 1", n)
	}
	if n := stored(t, db, relay); n != 1 {
		t.Fatalf("%d events stored, want the one OrderConfirmed", n)
	}
	for _, customer := range []string{"fail", "stray"} {
		f.Deliver(t, frame(t, codec, "e-"+customer, &ordersv1.OrderCreated{OrderId: "o-" + customer, CustomerId: customer}))
	}
	if n := count(t, db, `SELECT COUNT(*) FROM seen`); n != 1 {
		t.Fatalf("%d effects after two failing events, want 1: their writes must roll back", n)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM herald_inbox`); n != 1 {
		t.Fatalf("%d inbox claims, want 1: a failed event must stay unclaimed", n)
	}
	if got := dead.Messages(); len(got) != 2 {
		t.Fatalf("%d dead letters, want the 2 failing events", len(got))
	} else if reason, _ := got[1].Header(consumer.HeaderDLQError); !strings.Contains(reason, "does not list in Produces") {
		t.Errorf("dead letter of the stray event says %q, want the undeclared type named", reason)
	}

	// The relay publishes the event with the service's names.
	got := relay.WaitFor(1, 10*time.Second)
	if len(got) != 1 {
		t.Fatalf("relay published %d messages, want 1", len(got))
	}
	m := got[0]
	if src, _ := m.Header(event.HeaderSource); m.Topic != "ns.herald.orders.v1" || string(m.Key) != "o-1" || src != "herald/ledger" {
		t.Fatalf("relayed %s key %s source %s, want ns.herald.orders.v1 key o-1 source herald/ledger", m.Topic, m.Key, src)
	}
	if typ, _ := m.Header(event.HeaderType); typ != "herald.orders.v1.OrderConfirmed" {
		t.Fatalf("relayed %s, want OrderConfirmed", typ)
	}
}

// TestInboxRetention: a running module purges the inbox claims older than
// the platform's retention, and a redelivery after that is applied again,
// which is why the retention must outlast every redelivery the bus may
// make. (That a purge keeps the claims within the retention is
// inbox.TestPurge's, without timing; a redelivery with the claim in place
// is TestDatabaseUnitOfWork's.)
func TestInboxRetention(t *testing.T) {
	codec := moduletest.Codec(t)
	p, _, _ := platform(t, codec)
	p.InboxRetention = 200 * time.Millisecond
	var db *sqldb.DB
	in, err := ledger(&db).Start(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	f := moduletest.Run(t, in)

	ev := frame(t, codec, "e-1", &ordersv1.OrderCreated{OrderId: "o-1", CustomerId: "alice"})
	f.Deliver(t, ev)
	if n := count(t, db, `SELECT COUNT(*) FROM seen`); n != 1 {
		t.Fatalf("%d effects of one event, want 1", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for count(t, db, `SELECT COUNT(*) FROM herald_inbox`) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the claim is still in the inbox 10 s after its retention of 200 ms")
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.Deliver(t, ev)
	if n := count(t, db, `SELECT COUNT(*) FROM seen`); n != 2 {
		t.Fatalf("%d effects after a redelivery past the retention, want 2", n)
	}
}

// TestMixedPoll: the events of one poll are handled at once and share
// database transactions, each in a savepoint: the good ones commit once,
// a poison event rolls back alone and is dead-lettered, and an event
// failing with an error worth retrying rolls back alone and commits on
// its next attempt.
func TestMixedPoll(t *testing.T) {
	codec := moduletest.Codec(t)
	p, relay, dead := platform(t, codec)
	var db *sqldb.DB
	in, err := ledger(&db).Start(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	f := moduletest.Run(t, in)

	// The first event holds its transaction long enough for the others
	// to arrive: they wait, and share the next one.
	const good = 40
	poll := []*bus.Message{frame(t, codec, "e-slow", &ordersv1.OrderCreated{OrderId: "o-slow", CustomerId: "slow"})}
	for i := range good - 1 {
		id := fmt.Sprintf("o-%d", i)
		poll = append(poll, frame(t, codec, "e-"+id, &ordersv1.OrderCreated{OrderId: id, CustomerId: "alice"}))
	}
	poll = append(poll,
		frame(t, codec, "e-poison", &ordersv1.OrderCreated{OrderId: "o-poison", CustomerId: "fail"}),
		frame(t, codec, "e-flaky", &ordersv1.OrderCreated{OrderId: "o-flaky", CustomerId: "flaky"}))
	before := db.GroupStats()
	f.DeliverPoll(t, poll...)
	stats := db.GroupStats()
	txns, calls := stats.Transactions-before.Transactions, stats.Calls-before.Calls

	if n := count(t, db, `SELECT COUNT(*) FROM seen`); n != good+1 {
		t.Fatalf("%d effects, want %d: every good event and the retried one once, the poison event's rolled back", n, good+1)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM seen WHERE order_id IN ('o-poison')`); n != 0 {
		t.Fatal("the poison event's write survived its rollback")
	}
	if n := stored(t, db, relay); n != good+1 {
		t.Fatalf("%d events stored, want %d", n, good+1)
	}
	if got := dead.Messages(); len(got) != 1 || string(got[0].Key) != "o-poison" {
		t.Fatalf("dead letters %v, want the poison event alone", got)
	}
	// 43 calls (the flaky event twice): far fewer transactions, since the
	// calls that wait while one transaction runs share the next.
	if calls != good+3 || txns*4 > calls {
		t.Fatalf("%d calls in %d transactions; want %d calls sharing transactions (at most a quarter as many)", calls, txns, good+3)
	}
	t.Logf("%d calls in %d transactions", calls, txns)
	if got := relay.WaitFor(good+1, 10*time.Second); len(got) != good+1 {
		t.Fatalf("relay published %d events, want %d", len(got), good+1)
	}
}

// TestWorkDo: a use case's write and its events commit together, and an
// error rolls both back.
func TestWorkDo(t *testing.T) {
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
	if _, err := m.Start(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	write := func(id string, fail bool) error {
		return work.Do(ctx, func(ctx context.Context) ([]proto.Message, error) {
			if _, err := db.Conn(ctx).ExecContext(ctx, `INSERT INTO seen (order_id) VALUES (?)`, id); err != nil {
				return nil, err
			}
			if fail {
				return nil, errors.New("use case refused")
			}
			return []proto.Message{&ordersv1.OrderConfirmed{OrderId: id}}, nil
		})
	}
	if err := write("o-1", false); err != nil {
		t.Fatal(err)
	}
	if err := write("o-2", true); err == nil || err.Error() != "use case refused" {
		t.Fatalf("Do = %v, want the use case's error as is", err)
	}
	if s, o := count(t, db, `SELECT COUNT(*) FROM seen`), count(t, db, `SELECT COUNT(*) FROM herald_outbox`); s != 1 || o != 1 {
		t.Fatalf("%d writes and %d outbox rows, want 1 and 1", s, o)
	}
}

// scorer is a module without a database that answers every OrderCreated
// with a RiskAssessed.
func scorer() module.Module {
	return module.Module{
		Name:     "scorer",
		Consumes: []proto.Message{&ordersv1.OrderCreated{}},
		Produces: []proto.Message{&riskv1.RiskAssessed{}},
		Build: func(context.Context, module.Deps) (*module.Parts, error) {
			on := func(_ context.Context, _ *consumer.Event, msg *ordersv1.OrderCreated) ([]proto.Message, error) {
				return []proto.Message{&riskv1.RiskAssessed{OrderId: msg.GetOrderId(), CustomerId: msg.GetCustomerId(), Score: 20}}, nil
			}
			return &module.Parts{Handlers: []module.Handler{module.On(on)}}, nil
		},
	}
}

// TestBusTransactionUnit: a module without a database publishes what its
// handler returns through the delivery's publisher (the consumer's
// transaction), framed with new CloudEvents attributes that continue the
// consumed event's trace; it refuses to start on a bus without consumer
// transactions.
func TestBusTransactionUnit(t *testing.T) {
	codec := moduletest.Codec(t)
	p, _, _ := platform(t, codec)
	if _, err := scorer().Start(context.Background(), p); err == nil || !strings.Contains(err.Error(), "consumer transactions") {
		t.Fatalf("Start without consumer transactions = %v, want a refusal", err)
	}
	p.BusTransactions = true
	in, err := scorer().Start(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	txn := &moduletest.Recorder{Atomic: true}
	f := moduletest.NewFeed(txn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = in.Run(ctx, f) }()
	f.Topics()
	f.Deliver(t, frame(t, codec, "e-1", &ordersv1.OrderCreated{OrderId: "o1", CustomerId: "mallory"}))

	out := txn.Messages()
	if len(out) != 1 {
		t.Fatalf("%d messages in the consumer transaction, want 1", len(out))
	}
	m := out[0]
	if m.Topic != "ns.herald.risk.v1" || string(m.Key) != "o1" {
		t.Fatalf("output on %s keyed %s, want ns.herald.risk.v1 keyed o1", m.Topic, m.Key)
	}
	dec, err := codec.Decode(m.Topic, m.Value)
	if err != nil {
		t.Fatal(err)
	}
	if ra, ok := dec.(*riskv1.RiskAssessed); !ok || ra.GetScore() != 20 || ra.GetCustomerId() != "mallory" {
		t.Fatalf("value decodes as %v, want the handler's RiskAssessed", dec)
	}
	for h, want := range map[string]string{
		event.HeaderType: "herald.risk.v1.RiskAssessed", event.HeaderSource: "herald/scorer", event.HeaderSubject: "o1",
		event.HeaderSpecVersion: "1.0", event.HeaderContentType: event.ContentType,
	} {
		if got, _ := m.Header(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if id, _ := m.Header(event.HeaderID); id == "" || id == "e-1" {
		t.Errorf("ce_id = %q, want a new one", id)
	}
	if _, err := time.Parse(event.TimeLayout, func() string { v, _ := m.Header(event.HeaderTime); return v }()); err != nil {
		t.Errorf("ce_time: %v", err)
	}
	if tp, _ := m.Header(event.HeaderTraceParent); len(tp) != 55 || tp[3:35] != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("traceparent %q does not continue trace 0af7651916cd43dd8448eb211c80319c", tp)
	}
}

// TestDeclarationMustMatchHandlers: Start refuses a module whose handlers
// and Consumes disagree, or that declares a message that is not an event.
func TestDeclarationMustMatchHandlers(t *testing.T) {
	codec := moduletest.Codec(t)
	cases := map[string]func(*module.Module){
		"handler without a declaration": func(m *module.Module) { m.Consumes = []proto.Message{&ordersv1.OrderCancelled{}} },
		"declaration without a handler": func(m *module.Module) {
			m.Consumes = append(m.Consumes, &ordersv1.OrderCancelled{})
		},
		"not an event": func(m *module.Module) { m.Produces = append(m.Produces, &ordersv1.LineItem{}) },
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			m := scorer()
			change(&m)
			p, _, _ := platform(t, codec)
			p.BusTransactions = true
			if _, err := m.Start(context.Background(), p); err == nil {
				t.Fatal("Start accepted the module")
			} else {
				t.Log(err)
			}
		})
	}
}
