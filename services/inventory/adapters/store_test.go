package adapters_test

import (
	"context"
	"errors"
	"math"
	"testing"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"

	"google.golang.org/protobuf/proto"

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

// TestDeduct: an order of one SKU and one of several take their stock, or
// none of it, with the answer event's figures; a second delivery of an
// order answers nothing and changes nothing.
func TestDeduct(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		if err := db.Migrate(ctx, "inventory", adapters.Migrations(db.Dialect())); err != nil {
			t.Fatal(err)
		}
		a := app.New(adapters.New(db))
		for sku, q := range map[string]int64{"A": 10, "B": 3} {
			if err := a.SetStock(ctx, sku, q); err != nil {
				t.Fatal(err)
			}
		}
		deduct := func(order string, lines ...domain.Line) proto.Message {
			t.Helper()
			var out []proto.Message
			if err := db.InTxContext(ctx, func(ctx context.Context) (err error) {
				out, err = a.Deduct(ctx, order, lines)
				return err
			}); err != nil {
				t.Fatalf("deduct %s: %v", order, err)
			}
			if len(out) == 0 {
				return nil
			}
			return out[0]
		}
		levels := func(want map[string]int64) {
			t.Helper()
			for sku, q := range want {
				if got, err := a.GetStock(ctx, sku); err != nil || got != q {
					t.Fatalf("stock of %s = %d, %v; want %d", sku, got, err, q)
				}
			}
		}
		// One SKU, given on two lines.
		ev := deduct("o-1", domain.Line{SKU: "A", Quantity: 2}, domain.Line{SKU: "A", Quantity: 3})
		if d, ok := ev.(*inventoryv1.InventoryDeducted); !ok || len(d.GetLines()) != 1 || d.GetLines()[0].GetQuantity() != 5 {
			t.Fatalf("o-1 answer %v, want InventoryDeducted of 5 A", ev)
		}
		levels(map[string]int64{"A": 5, "B": 3})
		if ev := deduct("o-1", domain.Line{SKU: "A", Quantity: 5}); ev != nil {
			t.Fatalf("second delivery of o-1 answered %v", ev)
		}
		levels(map[string]int64{"A": 5})
		// One SKU, too much: refused with what is there.
		ev = deduct("o-2", domain.Line{SKU: "A", Quantity: 6})
		if f, ok := ev.(*inventoryv1.InventoryDeductionFailed); !ok || f.GetReason() != inventoryv1.DeductionFailureReason(domain.InsufficientStock) ||
			f.GetRequested() != 6 || f.GetAvailable() != 5 {
			t.Fatalf("o-2 answer %v, want insufficient stock, requested 6, available 5", ev)
		}
		ev = deduct("o-3", domain.Line{SKU: "NOPE", Quantity: 1})
		if f, ok := ev.(*inventoryv1.InventoryDeductionFailed); !ok || f.GetReason() != inventoryv1.DeductionFailureReason(domain.UnknownSKU) {
			t.Fatalf("o-3 answer %v, want unknown SKU", ev)
		}
		// Several SKUs: all or none.
		ev = deduct("o-4", domain.Line{SKU: "A", Quantity: 1}, domain.Line{SKU: "B", Quantity: 4})
		if f, ok := ev.(*inventoryv1.InventoryDeductionFailed); !ok || f.GetSku() != "B" {
			t.Fatalf("o-4 answer %v, want B refused", ev)
		}
		levels(map[string]int64{"A": 5, "B": 3})
		if _, ok := deduct("o-5", domain.Line{SKU: "B", Quantity: 3}, domain.Line{SKU: "A", Quantity: 5}).(*inventoryv1.InventoryDeducted); !ok {
			t.Fatal("o-5 not deducted")
		}
		levels(map[string]int64{"A": 0, "B": 0})
		// What a refused order left: nothing to release.
		var out []proto.Message
		if err := db.InTxContext(ctx, func(ctx context.Context) (err error) { out, err = a.Release(ctx, "o-2"); return err }); err != nil || len(out) != 0 {
			t.Fatalf("release of refused o-2 = %v, %v; want nothing", out, err)
		}
	})
}
