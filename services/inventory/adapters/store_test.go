package adapters_test

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/herald-events/herald/platform/apperr"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
	"github.com/herald-events/herald/services/inventory/adapters"
	"github.com/herald-events/herald/services/inventory/app"
	"github.com/herald-events/herald/services/inventory/domain"
)

// anyLevel accepts every level.
func anyLevel(int64) error { return nil }

// TestStoreContract is run against every database.
func TestStoreContract(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		if err := db.Migrate(ctx, "inventory", adapters.Migrations(db.Dialect())); err != nil {
			t.Fatal(err)
		}
		s := adapters.New(db)
		// Each step in a transaction of its own, carried by the context,
		// as the platform's unit of work runs them.
		in := func(fn func(ctx context.Context) error) error {
			return db.InTxContext(ctx, fn)
		}
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(in(func(ctx context.Context) error { return s.SetStock(ctx, "A", 5, anyLevel) }))
		must(in(func(ctx context.Context) error { return s.SetStock(ctx, "B", 1, anyLevel) }))
		must(in(func(ctx context.Context) error { return s.SetStock(ctx, "A", 7, anyLevel) })) // upsert

		var stock map[string]int64
		must(in(func(ctx context.Context) (err error) { stock, err = s.Stock(ctx, []string{"A", "B", "Z"}); return err }))
		if len(stock) != 2 || stock["A"] != 7 || stock["B"] != 1 {
			t.Fatalf("Stock = %v, want A:7 B:1 and no Z", stock)
		}

		must(in(func(ctx context.Context) error { return s.Take(ctx, "A", 3) }))
		err := in(func(ctx context.Context) error { return s.Take(ctx, "B", 2) })
		if !errors.Is(err, app.ErrConflict) {
			t.Fatalf("Take more than available = %v, want ErrConflict", err)
		}
		// The failed transaction left B alone; a rolled-back take changes nothing.
		_ = in(func(ctx context.Context) error {
			if err := s.Take(ctx, "A", 1); err != nil {
				return err
			}
			return errors.New("abort")
		})
		must(in(func(ctx context.Context) (err error) { stock, err = s.Stock(ctx, []string{"A", "B"}); return err }))
		if stock["A"] != 4 || stock["B"] != 1 {
			t.Fatalf("after takes: %v, want A:4 B:1", stock)
		}

		held, seen, err := func() (h []domain.Line, sn bool, err error) {
			err = in(func(ctx context.Context) error { h, sn, err = s.Reserved(ctx, "o-1"); return err })
			return
		}()
		if err != nil || seen || len(held) != 0 {
			t.Fatalf("Reserved before reserving = %v, %v, %v", held, seen, err)
		}
		must(in(func(ctx context.Context) error {
			return s.Reserve(ctx, "o-1", []domain.Line{{SKU: "A", Quantity: 3}, {SKU: "B", Quantity: 1}})
		}))
		must(in(func(ctx context.Context) (err error) { held, seen, err = s.Reserved(ctx, "o-1"); return err }))
		if !seen || len(held) != 2 || held[0] != (domain.Line{SKU: "A", Quantity: 3}) {
			t.Fatalf("Reserved = %v, %v", held, seen)
		}
		must(in(func(ctx context.Context) error { return s.Release(ctx, "o-1") }))
		must(in(func(ctx context.Context) (err error) { held, seen, err = s.Reserved(ctx, "o-1"); return err }))
		if !seen || len(held) != 0 {
			t.Fatalf("Reserved after release = %v, %v; want seen and nothing held", held, seen)
		}
		must(in(func(ctx context.Context) error { return s.Give(ctx, "A", 3) }))
		must(in(func(ctx context.Context) (err error) { stock, err = s.Stock(ctx, []string{"A"}); return err }))
		if stock["A"] != 7 {
			t.Fatalf("after Give: %v, want A:7", stock)
		}
	})
}

// TestStockOverflow: the sequence that once stored a SQLite REAL. SetStock
// refuses a level that what open orders hold would overflow when they come
// back; a Give that would overflow a level set before that rule changes
// nothing and says so; the level stays an integer and the SKU keeps
// working.
func TestStockOverflow(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		if err := db.Migrate(ctx, "inventory", adapters.Migrations(db.Dialect())); err != nil {
			t.Fatal(err)
		}
		s := adapters.New(db)
		a := app.New(s)
		in := func(fn func(ctx context.Context) error) error { return db.InTxContext(ctx, fn) }
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		level := func() int64 {
			t.Helper()
			q, err := a.GetStock(ctx, "OVF")
			must(err)
			return q
		}
		must(a.SetStock(ctx, "OVF", 100))
		must(in(func(ctx context.Context) error {
			_, err := a.Deduct(ctx, "o-1", []domain.Line{{SKU: "OVF", Quantity: 5}})
			return err
		}))
		err := a.SetStock(ctx, "OVF", math.MaxInt64)
		if ae, ok := apperr.As(err); !ok || ae.Kind != apperr.KindFailedPrecondition {
			t.Fatalf("SetStock(MaxInt64) with 5 held = %v, want FailedPrecondition", err)
		}
		if q := level(); q != 95 {
			t.Fatalf("level after the refused SetStock = %d, want 95", q)
		}
		must(a.SetStock(ctx, "OVF", math.MaxInt64-5)) // the most that leaves room
		must(in(func(ctx context.Context) error { _, err := a.Release(ctx, "o-1"); return err }))
		if q := level(); q != math.MaxInt64 {
			t.Fatalf("level after release = %d, want MaxInt64", q)
		}

		// A level set before the rule: straight in the store, no check.
		must(a.SetStock(ctx, "OVF", 100))
		must(in(func(ctx context.Context) error {
			_, err := a.Deduct(ctx, "o-2", []domain.Line{{SKU: "OVF", Quantity: 5}})
			return err
		}))
		must(s.SetStock(ctx, "OVF", math.MaxInt64, anyLevel))
		err = in(func(ctx context.Context) error { _, err := a.Release(ctx, "o-2"); return err })
		if !errors.Is(err, app.ErrOverflow) {
			t.Fatalf("release past MaxInt64 = %v, want ErrOverflow", err)
		}
		if q := level(); q != math.MaxInt64 {
			t.Fatalf("level after the refused release = %d, want MaxInt64 unchanged", q)
		}
		if db.Dialect() == sqldb.SQLite {
			var typ string
			must(db.Conn(ctx).QueryRowContext(ctx, `SELECT typeof(quantity) FROM stock WHERE sku = 'OVF'`).Scan(&typ))
			if typ != "integer" {
				t.Fatalf("stored level is a %s", typ)
			}
		}
		// The SKU keeps working: the operator lowers the level, the order
		// still holds its 5, and the release goes through.
		must(a.SetStock(ctx, "OVF", 10))
		must(in(func(ctx context.Context) error { _, err := a.Release(ctx, "o-2"); return err }))
		if q := level(); q != 15 {
			t.Fatalf("level after lowering and releasing = %d, want 15", q)
		}
	})
}
