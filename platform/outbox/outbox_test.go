package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/outbox"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
)

// recorder is an in-memory bus.Publisher that keeps what it was given.
type recorder struct {
	mu     sync.Mutex
	atomic bool
	msgs   []*bus.Message
	calls  int
}

func (r *recorder) Publish(_ context.Context, msgs ...*bus.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.msgs = append(r.msgs, msgs...)
	return nil
}
func (r *recorder) Capabilities() bus.Capabilities { return bus.Capabilities{AtomicBatches: r.atomic} }
func (r *recorder) Close() error                   { return nil }
func (r *recorder) got() []*bus.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*bus.Message(nil), r.msgs...)
}

// plainEncoder frames nothing: the value is the protobuf encoding.
type plainEncoder struct{}

func (plainEncoder) Encode(_ string, m proto.Message) ([]byte, error) { return proto.Marshal(m) }

func setup(t *testing.T, db *sqldb.DB, pub bus.Publisher, poll time.Duration) *outbox.Outbox {
	t.Helper()
	ctx := context.Background()
	ms := append(outbox.Migrations(db.Dialect()), sqldb.Migration{ID: "biz", SQL: []string{
		`CREATE TABLE biz (id TEXT PRIMARY KEY)`}})
	if err := db.Migrate(ctx, "test", ms); err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.New(outbox.Config{DB: db, Service: "test", Source: "test", Publisher: pub, Encoder: plainEncoder{}, PollInterval: poll})
	if err != nil {
		t.Fatal(err)
	}
	return ob
}

func runRelay(t *testing.T, ob *outbox.Outbox) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ob.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFailedBusinessWritePublishesNothing(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		rec := &recorder{atomic: true}
		ob := setup(t, db, rec, 20*time.Millisecond)
		ctx := context.Background()
		err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO biz (id) VALUES ('a')`); err != nil {
				return err
			}
			if _, err := ob.Add(ctx, tx, &ordersv1.OrderCreated{OrderId: "a"}); err != nil {
				return err
			}
			// The business write fails after the event was added: duplicate key.
			_, err := tx.ExecContext(ctx, `INSERT INTO biz (id) VALUES ('a')`)
			return err
		})
		if err == nil {
			t.Fatal("the failing transaction committed")
		}
		if n, _ := ob.Pending(ctx); n != 0 {
			t.Fatalf("%d pending outbox rows after a rolled-back transaction", n)
		}
		// A later good write proves the relay runs; only that event is published.
		if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			_, err := ob.Add(ctx, tx, &ordersv1.OrderCreated{OrderId: "b"})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		runRelay(t, ob)
		waitFor(t, func() bool { return len(rec.got()) >= 1 }, "the good event")
		time.Sleep(100 * time.Millisecond) // several poll rounds
		got := rec.got()
		if len(got) != 1 || string(got[0].Key) != "b" {
			t.Fatalf("published %d messages (first key %q), want only b", len(got), got[0].Key)
		}
	})
}

func TestRelayWakesOnCommitAndKeepsOrder(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		rec := &recorder{atomic: true}
		// An hour-long poll: only the commit notification can wake the relay.
		ob := setup(t, db, rec, time.Hour)
		runRelay(t, ob)
		ctx := context.Background()
		const n = 30
		var want []string
		for i := range n {
			var env *event.Envelope
			err := db.InTx(ctx, func(tx *sqldb.Tx) error {
				var err error
				env, err = ob.Add(ctx, tx, &ordersv1.OrderConfirmed{OrderId: "same-key", CustomerId: string(rune('a' + i%26))})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, env.ID)
		}
		waitFor(t, func() bool { return len(rec.got()) == n }, "all events relayed without polling")
		for i, m := range rec.got() {
			id, _ := m.Header(event.HeaderID)
			if id != want[i] {
				t.Fatalf("message %d has ce_id %s, want %s: a key's events must keep their order", i, id, want[i])
			}
			for _, h := range []string{event.HeaderType, event.HeaderSource, event.HeaderTime, event.HeaderSpecVersion,
				event.HeaderContentType, event.HeaderTraceParent} {
				if v, _ := m.Header(h); v == "" {
					t.Fatalf("message %d lacks %s", i, h)
				}
			}
			if m.Topic != "herald.orders.v1" || string(m.Key) != "same-key" {
				t.Fatalf("message %d routed to %s key %s", i, m.Topic, m.Key)
			}
		}
		waitFor(t, func() bool { n, _ := ob.Pending(ctx); return n == 0 }, "rows deleted")
	})
}

// TestRelayFramesStoredPayloads: with the schema codec, the relay frames the
// stored payloads without decoding them once it knows a type's framing, and
// what it publishes is byte for byte what encoding the event gives.
func TestRelayFramesStoredPayloads(t *testing.T) {
	db, err := sqldb.OpenSQLite(filepath.Join(t.TempDir(), "frames.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx := context.Background()
	if err := db.Migrate(ctx, "test", outbox.Migrations(db.Dialect())); err != nil {
		t.Fatal(err)
	}
	const topic = "herald.orders.v1"
	codec := relayCodec(t, topic)
	if _, err := codec.Register(topic, (&ordersv1.OrderConfirmed{}).ProtoReflect().Descriptor()); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{atomic: true}
	ob, err := outbox.New(outbox.Config{DB: db, Service: "test", Source: "test", Publisher: rec, Encoder: codec, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var sent []proto.Message
	for i := range 12 {
		var m proto.Message = relayOrder(i)
		if i%3 == 0 {
			m = &ordersv1.OrderConfirmed{OrderId: fmt.Sprintf("o-%d", i), CustomerId: "c-1",
				Total: &moneyv1.Money{CurrencyCode: "EUR", Units: int64(i + 1)}}
		}
		if err := db.InTx(ctx, func(tx *sqldb.Tx) error { _, err := ob.Add(ctx, tx, m); return err }); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, m)
	}
	runRelay(t, ob)
	waitFor(t, func() bool { return len(rec.got()) == len(sent) }, "all events relayed")
	for i, m := range rec.got() {
		want, err := codec.Encode(topic, sent[i])
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Value) != string(want) {
			t.Fatalf("event %d (%T): relayed % x, encoding gives % x", i, sent[i], m.Value, want)
		}
		got, err := codec.Decode(topic, m.Value)
		if err != nil || !proto.Equal(got, sent[i]) {
			t.Fatalf("event %d: decoded %v, %v; want %v", i, got, err, sent[i])
		}
	}
}

func TestRelayStopsAtHookAndRepublishes(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		rec := &recorder{atomic: true}
		setup(t, db, rec, 10*time.Millisecond)
		ctx := context.Background()
		crash := errors.New("crash")
		ob, err := outbox.New(outbox.Config{DB: db, Service: "test", Source: "test", Publisher: rec, Encoder: plainEncoder{},
			BeforeMark: func([]int64) error { return crash }})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			_, err := ob.Add(ctx, tx, &ordersv1.OrderCreated{OrderId: "x"})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if err := ob.Run(ctx); !errors.Is(err, crash) {
			t.Fatalf("Run = %v, want the hook's error", err)
		}
		if n, _ := ob.Pending(ctx); n != 1 {
			t.Fatalf("pending = %d after a crash before deleting, want 1", n)
		}
		ob2, _ := outbox.New(outbox.Config{DB: db, Service: "test", Source: "test", Publisher: rec, Encoder: plainEncoder{}})
		runRelay(t, ob2)
		waitFor(t, func() bool { return len(rec.got()) == 2 }, "republish after restart")
		a, _ := rec.got()[0].Header(event.HeaderID)
		b, _ := rec.got()[1].Header(event.HeaderID)
		if a != b {
			t.Fatalf("republished with a new ce_id: %s then %s", a, b)
		}
	})
}

// TestRelayDeletesWhatItPublished: the table keeps pending events only. A
// published row is deleted, and a row that a relay of an earlier version
// marked sent instead is purged, not published again.
func TestRelayDeletesWhatItPublished(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		rec := &recorder{atomic: true}
		ob := setup(t, db, rec, 20*time.Millisecond)
		ctx := context.Background()
		if _, err := db.ExecContext(ctx, `INSERT INTO herald_outbox
			(event_id, topic, msg_key, event_type, payload, source, event_time, traceparent, created_at, sent_at)
			VALUES ('old', 'herald.orders.v1', 'k', 'herald.orders.v1.OrderCreated', ?, 'test', 't', '', 't', 't')`,
			[]byte{}); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"a", "b", "c"} {
			if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
				_, err := ob.Add(ctx, tx, &ordersv1.OrderCreated{OrderId: id})
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		count := func() int {
			var n int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM herald_outbox`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		if n := count(); n != 4 {
			t.Fatalf("%d rows before the relay ran, want 4", n)
		}
		runRelay(t, ob)
		waitFor(t, func() bool { return count() == 0 }, "the table emptied")
		got := rec.got()
		if len(got) != 3 {
			t.Fatalf("published %d events, want the 3 pending ones", len(got))
		}
		for i, want := range []string{"a", "b", "c"} {
			if string(got[i].Key) != want {
				t.Fatalf("event %d has key %q, want %q", i, got[i].Key, want)
			}
		}
	})
}

func TestAddRejectsNonEvents(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ob := setup(t, db, &recorder{}, time.Second)
		ctx := context.Background()
		err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			_, err := ob.Add(ctx, tx, &ordersv1.OrderLine{Sku: "x"})
			return err
		})
		if !errors.Is(err, event.ErrNotAnEvent) {
			t.Fatalf("Add(OrderLine) = %v, want ErrNotAnEvent", err)
		}
	})
}

// TestAddsOfATransactionInOneStatement: the events a transaction adds are
// inserted together just before it commits, one statement on PostgreSQL
// (with one NOTIFY for a relay of another process) and one per 32 rows on
// SQLite, in the order they were added, and relayed in that order with
// their payloads intact.
func TestAddsOfATransactionInOneStatement(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		rec := &recorder{atomic: true}
		ob := setup(t, db, rec, time.Hour)
		ctx := context.Background()
		const n = 70
		var want []string
		before := db.Statements()
		err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			for i := range n {
				env, err := ob.Add(ctx, tx, &ordersv1.OrderConfirmed{OrderId: fmt.Sprintf("o-%d", i%3), CustomerId: fmt.Sprintf("c-%d", i)})
				if err != nil {
					return err
				}
				want = append(want, env.ID)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// PostgreSQL: the insert, and a NOTIFY for the relay, which does
		// not run in this process yet; SQLite: 32 + 32 + 6 rows.
		inserts := 3
		if db.Dialect() == sqldb.Postgres {
			inserts = 2
		}
		if got := db.Statements() - before; got != int64(2+inserts) {
			t.Errorf("%d statements for a transaction adding %d events, want BEGIN, COMMIT and %d", got, n, inserts)
		}
		runRelay(t, ob)
		waitFor(t, func() bool { return len(rec.got()) == n }, "the events relayed")
		for i, m := range rec.got() {
			id, _ := m.Header(event.HeaderID)
			var ev ordersv1.OrderConfirmed
			if err := proto.Unmarshal(m.Value, &ev); err != nil {
				t.Fatal(err)
			}
			if id != want[i] || ev.GetCustomerId() != fmt.Sprintf("c-%d", i) || string(m.Key) != fmt.Sprintf("o-%d", i%3) {
				t.Fatalf("message %d: ce_id %s, customer %s, key %s; want %s, c-%d, o-%d", i, id, ev.GetCustomerId(), m.Key, want[i], i, i%3)
			}
		}
	})
}
