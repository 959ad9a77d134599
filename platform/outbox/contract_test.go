package outbox_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/contract"
	"github.com/herald-events/herald/platform/outbox"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
)

// TestAddRefusesInvalidEvent: with Config.Contract, Add refuses an event
// that breaks its schema's rules with the violations, before writing; the
// business transaction fails, so neither its own write nor any outbox row
// is stored, and nothing is ever published. A valid event goes through.
func TestAddRefusesInvalidEvent(t *testing.T) {
	rules, err := contract.New()
	if err != nil {
		t.Fatal(err)
	}
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		if err := db.Migrate(ctx, "test", append(outbox.Migrations(db.Dialect()), sqldb.Migration{ID: "biz", SQL: []string{
			`CREATE TABLE biz (id TEXT PRIMARY KEY)`}})); err != nil {
			t.Fatal(err)
		}
		rec := &recorder{atomic: true}
		ob, err := outbox.New(outbox.Config{DB: db, Service: "test", Source: "test", Publisher: rec, Encoder: plainEncoder{},
			PollInterval: 20 * time.Millisecond, Contract: rules})
		if err != nil {
			t.Fatal(err)
		}
		eur := &moneyv1.Money{CurrencyCode: "EUR", Units: 3}
		order := func(id string, qty int32) *ordersv1.OrderCreated {
			return &ordersv1.OrderCreated{OrderId: id, CustomerId: "c", Total: eur, CreateTime: timestamppb.Now(),
				Lines: []*ordersv1.OrderLine{{Sku: "A", Quantity: qty, UnitPrice: eur}}}
		}
		business := func(ev *ordersv1.OrderCreated) error {
			return db.InTx(ctx, func(tx *sqldb.Tx) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO biz (id) VALUES (?)`, ev.GetOrderId()); err != nil {
					return err
				}
				_, err := ob.Add(ctx, tx, ev)
				return err
			})
		}
		err = business(order("bad", -50))
		ce, ok := contract.As(err)
		if !ok || len(ce.Violations) != 1 || ce.Violations[0].Field != "lines[0].quantity" {
			t.Fatalf("Add of quantity -50 = %v, want a contract error on lines[0].quantity", err)
		}
		var rows int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM biz`).Scan(&rows); err != nil || rows != 0 {
			t.Fatalf("%d business rows after the refused event (%v), want 0", rows, err)
		}
		if n, _ := ob.Pending(ctx); n != 0 {
			t.Fatalf("%d pending outbox rows after the refused event", n)
		}
		if err := business(order("good", 2)); err != nil {
			t.Fatal(err)
		}
		runRelay(t, ob)
		waitFor(t, func() bool { return len(rec.got()) >= 1 }, "the good event")
		time.Sleep(100 * time.Millisecond) // several poll rounds
		if got := rec.got(); len(got) != 1 || string(got[0].Key) != "good" {
			t.Fatalf("published %d messages, want only the valid one", len(got))
		}
	})
}
