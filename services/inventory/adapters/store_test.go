package adapters_test

import (
	"context"
	"errors"
	"testing"

	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
	"github.com/herald-events/herald/services/inventory/adapters"
	"github.com/herald-events/herald/services/inventory/app"
	"github.com/herald-events/herald/services/inventory/domain"
)

// TestStoreContract is run against every database.
func TestStoreContract(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s, err := adapters.Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		in := func(fn func(tx *sqldb.Tx) error) error { return s.InTx(ctx, fn) }
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(in(func(tx *sqldb.Tx) error { return s.SetStock(ctx, tx, "A", 5) }))
		must(in(func(tx *sqldb.Tx) error { return s.SetStock(ctx, tx, "B", 1) }))
		must(in(func(tx *sqldb.Tx) error { return s.SetStock(ctx, tx, "A", 7) })) // upsert

		var stock map[string]int64
		must(in(func(tx *sqldb.Tx) (err error) { stock, err = s.Stock(ctx, tx, []string{"A", "B", "Z"}); return err }))
		if len(stock) != 2 || stock["A"] != 7 || stock["B"] != 1 {
			t.Fatalf("Stock = %v, want A:7 B:1 and no Z", stock)
		}

		must(in(func(tx *sqldb.Tx) error { return s.Take(ctx, tx, "A", 3) }))
		err = in(func(tx *sqldb.Tx) error { return s.Take(ctx, tx, "B", 2) })
		if !errors.Is(err, app.ErrConflict) {
			t.Fatalf("Take more than available = %v, want ErrConflict", err)
		}
		// The failed transaction left B alone; a rolled-back take changes nothing.
		_ = in(func(tx *sqldb.Tx) error {
			if err := s.Take(ctx, tx, "A", 1); err != nil {
				return err
			}
			return errors.New("abort")
		})
		must(in(func(tx *sqldb.Tx) (err error) { stock, err = s.Stock(ctx, tx, []string{"A", "B"}); return err }))
		if stock["A"] != 4 || stock["B"] != 1 {
			t.Fatalf("after takes: %v, want A:4 B:1", stock)
		}

		held, seen, err := func() (h []domain.Line, sn bool, err error) {
			err = in(func(tx *sqldb.Tx) error { h, sn, err = s.Reserved(ctx, tx, "o-1"); return err })
			return
		}()
		if err != nil || seen || len(held) != 0 {
			t.Fatalf("Reserved before reserving = %v, %v, %v", held, seen, err)
		}
		must(in(func(tx *sqldb.Tx) error {
			return s.Reserve(ctx, tx, "o-1", []domain.Line{{SKU: "A", Quantity: 3}, {SKU: "B", Quantity: 1}})
		}))
		must(in(func(tx *sqldb.Tx) (err error) { held, seen, err = s.Reserved(ctx, tx, "o-1"); return err }))
		if !seen || len(held) != 2 || held[0] != (domain.Line{SKU: "A", Quantity: 3}) {
			t.Fatalf("Reserved = %v, %v", held, seen)
		}
		must(in(func(tx *sqldb.Tx) error { return s.Release(ctx, tx, "o-1") }))
		must(in(func(tx *sqldb.Tx) (err error) { held, seen, err = s.Reserved(ctx, tx, "o-1"); return err }))
		if !seen || len(held) != 0 {
			t.Fatalf("Reserved after release = %v, %v; want seen and nothing held", held, seen)
		}
		must(in(func(tx *sqldb.Tx) error { return s.Give(ctx, tx, "A", 3) }))
		must(in(func(tx *sqldb.Tx) (err error) { stock, err = s.Stock(ctx, tx, []string{"A"}); return err }))
		if stock["A"] != 7 {
			t.Fatalf("after Give: %v, want A:7", stock)
		}
	})
}
