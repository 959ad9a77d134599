package outbox_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/outbox"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
)

// addOne stores one event through ob in a transaction of db.
func addOne(t *testing.T, db *sqldb.DB, ob *outbox.Outbox, customer string) {
	t.Helper()
	ctx := context.Background()
	if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
		_, err := ob.Add(ctx, tx, &ordersv1.OrderConfirmed{OrderId: "o-1", CustomerId: customer})
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestOneRelayPerOutbox runs two instances of a service on one PostgreSQL
// outbox: one relay publishes, rows the other instance writes reach it by
// NOTIFY (both poll only hourly), and when the leader stops, the other
// takes over.
func TestOneRelayPerOutbox(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		if db.Dialect() != sqldb.Postgres {
			if !setup(t, db, &recorder{}, time.Hour).Leading() {
				t.Fatal("a SQLite outbox's relay must always lead")
			}
			return
		}
		url := os.Getenv(sqldbtest.EnvURL)
		if !strings.HasPrefix(url, "postgres") {
			t.Skip("no PostgreSQL URL")
		}
		ctx := context.Background()
		db2, err := sqldb.OpenPostgres(ctx, url, db.Schema())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db2.Close() })
		recA, recB := &recorder{atomic: true}, &recorder{atomic: true}
		a := setup(t, db, recA, time.Hour)
		b := setup(t, db2, recB, time.Hour)

		actx, stopA := context.WithCancel(ctx)
		aDone := make(chan error, 1)
		go func() { aDone <- a.Run(actx) }()
		t.Cleanup(stopA)
		waitFor(t, a.Leading, "the first relay to lead")
		runRelay(t, b)

		for i := range 3 {
			addOne(t, db2, b, string(rune('a'+i)))
		}
		waitFor(t, func() bool { return len(recA.got()) == 3 }, "the leader to publish the standby's rows, woken by NOTIFY")
		addOne(t, db, a, "d")
		waitFor(t, func() bool { return len(recA.got()) == 4 }, "the leader to publish its own row")
		if b.Leading() || len(recB.got()) != 0 {
			t.Fatalf("standby leads=%v and published %d events; one relay per outbox", b.Leading(), len(recB.got()))
		}

		stopA()
		if err := <-aDone; err != nil {
			t.Fatal(err)
		}
		waitFor(t, b.Leading, "the standby to take over")
		addOne(t, db2, b, "e")
		waitFor(t, func() bool { return len(recB.got()) == 1 }, "the new leader to publish")
		if n := len(recA.got()); n != 4 {
			t.Fatalf("the stopped relay published %d events, want 4", n)
		}
		waitFor(t, func() bool { n, _ := b.Pending(ctx); return n == 0 }, "rows marked sent")
	})
}
