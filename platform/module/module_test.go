package module_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
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
	"github.com/herald-events/herald/platform/names"
	"github.com/herald-events/herald/platform/registry"
	"github.com/herald-events/herald/platform/schema"
	"github.com/herald-events/herald/platform/sqldb"
)

const ns = "ns"

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newCodec is a codec on an embedded registry with the orders, inventory
// and risk schemas registered under the namespace's topics.
func newCodec(t *testing.T) *schema.Codec {
	t.Helper()
	reg, err := registry.New(registry.Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	cl, err := schema.NewClient(srv.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	codec, err := schema.NewCodec(cl)
	if err != nil {
		t.Fatal(err)
	}
	for topic, msg := range map[string]proto.Message{
		"herald.orders.v1": &ordersv1.OrderCreated{}, "herald.inventory.v1": &inventoryv1.InventoryDeducted{}, "herald.risk.v1": &riskv1.RiskAssessed{},
	} {
		if _, err := codec.Register(event.Namespaced(ns, topic), msg.ProtoReflect().Descriptor()); err != nil {
			t.Fatal(err)
		}
	}
	return codec
}

// recorder is a publisher that keeps what it is given.
type recorder struct {
	mu     sync.Mutex
	msgs   []*bus.Message
	atomic bool
}

func (r *recorder) Publish(_ context.Context, msgs ...*bus.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msgs...)
	return nil
}
func (r *recorder) Capabilities() bus.Capabilities { return bus.Capabilities{AtomicBatches: r.atomic} }
func (r *recorder) Close() error                   { return nil }
func (r *recorder) all() []*bus.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*bus.Message(nil), r.msgs...)
}

// feed is a subscriber that hands the messages sent to it to the handler,
// one at a time, with an optional delivery publisher (a consumer
// transaction's).
type feed struct {
	in       chan *bus.Message
	out      chan error
	delivery bus.Publisher
	topics   chan []string
}

func newFeed(delivery bus.Publisher) *feed {
	return &feed{in: make(chan *bus.Message), out: make(chan error), delivery: delivery, topics: make(chan []string, 1)}
}

func (f *feed) Run(ctx context.Context, _ string, topics []string, h bus.Handler) error {
	f.topics <- topics
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-f.in:
			hctx := ctx
			if f.delivery != nil {
				hctx = bus.WithDeliveryPublisher(ctx, f.delivery)
			}
			f.out <- h(hctx, m)
		}
	}
}

func (f *feed) Capabilities() bus.Capabilities { return bus.Capabilities{} }

func (f *feed) deliver(t *testing.T, m *bus.Message) {
	t.Helper()
	f.in <- m
	if err := <-f.out; err != nil {
		t.Fatalf("deliver %s: %v", m, err)
	}
}

// framed is an event as a producer puts it on the bus.
func framed(t *testing.T, codec *schema.Codec, id string, msg proto.Message) *bus.Message {
	t.Helper()
	route, err := event.RouteOf(msg.ProtoReflect().Descriptor())
	if err != nil {
		t.Fatal(err)
	}
	topic := event.Namespaced(ns, route.Topic)
	value, err := codec.Encode(topic, msg)
	if err != nil {
		t.Fatal(err)
	}
	typ := string(msg.ProtoReflect().Descriptor().FullName())
	return &bus.Message{Topic: topic, Key: []byte(route.Key(msg)), Value: value,
		Headers: event.Headers(id, typ, "herald/test", time.Now().UTC().Format(event.TimeLayout), route.Key(msg),
			"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")}
}

// ledger is a module with a database: it records every order it hears of
// and confirms it; customer "fail" makes the handler fail after its write,
// "stray" makes it return an event its module does not declare.
func ledger(db **sqldb.DB) module.Module {
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

func platform(t *testing.T, codec *schema.Codec, relay, dead *recorder) module.Platform {
	path := filepath.Join(t.TempDir(), "svc.db")
	db, err := sqldb.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return module.Platform{
		Namespace: ns, Instance: "i1", Codec: codec, DeadLetter: dead, Logger: quiet(),
		DB:    func(string) (*sqldb.DB, error) { return db, nil },
		Relay: func(names.Service) (bus.Publisher, error) { return relay, nil },
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

// TestDatabaseUnitOfWork: the inbox claim, the handler's write and the
// outbox rows of the events it returns commit together; a redelivery has
// no second effect; a failing handler, or one returning an event its
// module does not declare, leaves nothing behind.
func TestDatabaseUnitOfWork(t *testing.T) {
	codec := newCodec(t)
	relay, dead := &recorder{atomic: true}, &recorder{}
	var db *sqldb.DB
	in, err := ledger(&db).Start(context.Background(), platform(t, codec, relay, dead))
	if err != nil {
		t.Fatal(err)
	}
	if group, topics := in.Subscription(); group != "ns.herald-ledger" || len(topics) != 1 || topics[0] != "ns.herald.orders.v1" {
		t.Fatalf("Subscription = %s %v, want ns.herald-ledger [ns.herald.orders.v1]", group, topics)
	}
	f := newFeed(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, f) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	<-f.topics

	first := framed(t, codec, "e-1", &ordersv1.OrderCreated{OrderId: "o-1", CustomerId: "alice"})
	f.deliver(t, first)
	f.deliver(t, first) // redelivered
	if n := count(t, db, `SELECT COUNT(*) FROM seen`); n != 1 {
		t.Fatalf("%d effects of one event delivered twice, want 1", n)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM herald_outbox`); n != 1 {
		t.Fatalf("%d outbox rows, want the one OrderConfirmed", n)
	}
	for _, customer := range []string{"fail", "stray"} {
		f.deliver(t, framed(t, codec, "e-"+customer, &ordersv1.OrderCreated{OrderId: "o-" + customer, CustomerId: customer}))
	}
	if n := count(t, db, `SELECT COUNT(*) FROM seen`); n != 1 {
		t.Fatalf("%d effects after two failing events, want 1: their writes must roll back", n)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM herald_inbox`); n != 1 {
		t.Fatalf("%d inbox claims, want 1: a failed event must stay unclaimed", n)
	}
	if got := dead.all(); len(got) != 2 {
		t.Fatalf("%d dead letters, want the 2 failing events", len(got))
	} else if reason, _ := got[1].Header(consumer.HeaderDLQError); !strings.Contains(reason, "does not list in Produces") {
		t.Errorf("dead letter of the stray event says %q, want the undeclared type named", reason)
	}

	// The relay publishes the event with the service's names.
	deadline := time.Now().Add(10 * time.Second)
	for len(relay.all()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := relay.all()
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

// TestWorkDo: a use case's write and its events commit together, and an
// error rolls both back.
func TestWorkDo(t *testing.T) {
	codec := newCodec(t)
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
	if _, err := m.Start(context.Background(), platform(t, codec, &recorder{atomic: true}, &recorder{})); err != nil {
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
	codec := newCodec(t)
	p := platform(t, codec, &recorder{}, &recorder{})
	if _, err := scorer().Start(context.Background(), p); err == nil || !strings.Contains(err.Error(), "consumer transactions") {
		t.Fatalf("Start without consumer transactions = %v, want a refusal", err)
	}
	p.BusTransactions = true
	in, err := scorer().Start(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	txn := &recorder{atomic: true}
	f := newFeed(txn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = in.Run(ctx, f) }()
	<-f.topics
	f.deliver(t, framed(t, codec, "e-1", &ordersv1.OrderCreated{OrderId: "o1", CustomerId: "mallory"}))

	out := txn.all()
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
	codec := newCodec(t)
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
			p := platform(t, codec, &recorder{}, &recorder{})
			p.BusTransactions = true
			if _, err := m.Start(context.Background(), p); err == nil {
				t.Fatal("Start accepted the module")
			} else {
				t.Log(err)
			}
		})
	}
}
