package adapters_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
	"github.com/herald-events/herald/services/points/adapters"
	"github.com/herald-events/herald/services/points/app"
	"github.com/herald-events/herald/services/points/domain"
)

// migrate creates the store's tables, as the platform does for the module.
func migrate(db *sqldb.DB) error {
	return db.Migrate(context.Background(), "points", adapters.Migrations(db.Dialect()))
}

// TestStoreContract is run against every database.
func TestStoreContract(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		if err := migrate(db); err != nil {
			t.Fatal(err)
		}
		// Migrating again (a restart) migrates nothing twice.
		if err := migrate(db); err != nil {
			t.Fatalf("second migration: %v", err)
		}
		s := adapters.New(db)
		now := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)
		insert := func(e domain.Entry) bool {
			t.Helper()
			ok, err := s.Insert(ctx, e)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		award := domain.Entry{OrderID: "o-1", CustomerID: "alice", Kind: domain.KindAward, Points: 12, Created: now}
		if !insert(award) {
			t.Fatal("first award not inserted")
		}
		if insert(domain.Entry{OrderID: "o-1", CustomerID: "alice", Kind: domain.KindAward, Points: 99, Created: now}) {
			t.Fatal("second award of one order inserted; (order_id, kind) must be unique")
		}
		if !insert(domain.Entry{OrderID: "o-1", CustomerID: "alice", Kind: domain.KindReversal, Points: -12, Created: now}) {
			t.Fatal("reversal not inserted")
		}
		if !insert(domain.Entry{OrderID: "o-2", CustomerID: "bob", Kind: domain.KindAward, Points: 3, Created: now}) {
			t.Fatal("award of another order not inserted")
		}

		got, err := s.Entries(ctx, "o-1")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0] != award || got[1].Points != -12 || got[1].Kind != domain.KindReversal {
			t.Fatalf("Entries(o-1) = %+v, want the award (as stored) then the reversal", got)
		}
		ledger, _, err := s.Ledger(ctx, "alice", 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(ledger) != 2 || domain.Balance(ledger) != 0 {
			t.Fatalf("Ledger(alice) = %+v, want 2 entries summing to 0", ledger)
		}
		if b, err := s.Balance(ctx, "alice"); err != nil || b != 0 {
			t.Fatalf("Balance(alice) = %d, %v; want 0", b, err)
		}
		if ledger, _, err = s.Ledger(ctx, "nobody", 0, 10); err != nil || len(ledger) != 0 {
			t.Fatalf("Ledger(nobody) = %+v, %v; want empty", ledger, err)
		}
	})
}

// TestUseCasesOnce drives the use cases through the SQL store: a replayed
// confirmation awards once, a replayed cancellation takes back once.
func TestUseCasesOnce(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		if err := migrate(db); err != nil {
			t.Fatal(err)
		}
		a := app.New(adapters.New(db))
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		balance := func(customer string) (int64, int) {
			t.Helper()
			p, err := a.Balance(ctx, customer, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			return p.Balance, len(p.Entries)
		}
		total := domain.Money{Currency: "EUR", Units: 25, Nanos: 990_000_000}
		for range 2 {
			must(a.Confirmed(ctx, "o-1", "alice", total))
		}
		must(a.Confirmed(ctx, "o-2", "alice", domain.Money{Currency: "EUR", Units: 4}))
		if b, n := balance("alice"); b != 29 || n != 2 {
			t.Fatalf("alice after two orders (one replayed) = %d points in %d entries, want 29 in 2", b, n)
		}
		for range 2 {
			must(a.Cancelled(ctx, "o-1"))
		}
		if b, n := balance("alice"); b != 4 || n != 3 {
			t.Fatalf("alice after cancelling o-1 twice = %d points in %d entries, want 4 in 3", b, n)
		}
		// Cancelling an order that earned nothing writes nothing.
		must(a.Cancelled(ctx, "o-unknown"))
		must(a.Confirmed(ctx, "o-3", "carol", domain.Money{Currency: "EUR", Nanos: 500_000_000}))
		must(a.Cancelled(ctx, "o-3"))
		if b, n := balance("carol"); b != 0 || n != 0 {
			t.Fatalf("carol = %d points in %d entries, want none", b, n)
		}
		// Inside a unit of work (a transaction the context carries) a use
		// case joins it: rolled back, it leaves nothing.
		_ = db.InTx(ctx, func(tx *sqldb.Tx) error {
			must(a.Confirmed(db.WithTx(ctx, tx), "o-4", "dave", domain.Money{Currency: "EUR", Units: 7}))
			return errors.New("abort")
		})
		if b, n := balance("dave"); b != 0 || n != 0 {
			t.Fatalf("dave after a rolled-back unit = %d points in %d entries, want none", b, n)
		}
		if _, err := a.Balance(ctx, "", 0, 100); err == nil {
			t.Fatal("Balance of an empty customer id succeeded")
		}
	})
}

// TestBalancePages: the entries come in pages, oldest first, each once; the
// balance on every page sums them all.
func TestBalancePages(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		if err := migrate(db); err != nil {
			t.Fatal(err)
		}
		a := app.New(adapters.New(db))
		for i := range 5 {
			if err := a.Confirmed(ctx, fmt.Sprintf("o-%d", i), "erin", domain.Money{Currency: "EUR", Units: int64(i + 1)}); err != nil {
				t.Fatal(err)
			}
		}
		var (
			orders []string
			after  int64
		)
		for pages := 1; ; pages++ {
			p, err := a.Balance(ctx, "erin", after, 2)
			if err != nil {
				t.Fatal(err)
			}
			if p.Balance != 15 {
				t.Fatalf("page %d: balance %d, want 15", pages, p.Balance)
			}
			for _, e := range p.Entries {
				orders = append(orders, e.OrderID)
			}
			if p.Next == 0 {
				break
			}
			if pages > 5 {
				t.Fatal("pages never end")
			}
			after = p.Next
		}
		if fmt.Sprint(orders) != "[o-0 o-1 o-2 o-3 o-4]" {
			t.Fatalf("entries %v, want each once, oldest first", orders)
		}
	})
}
