package adapters_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herald-events/herald/platform/apperr"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
	"github.com/herald-events/herald/services/orders/adapters"
	"github.com/herald-events/herald/services/orders/app"
	"github.com/herald-events/herald/services/orders/domain"
)

// txWork runs a use case in a transaction of db and drops its events.
type txWork struct{ db *sqldb.DB }

func (w txWork) Do(ctx context.Context, fn func(ctx context.Context) ([]proto.Message, error)) error {
	return w.db.InTxContext(ctx, func(ctx context.Context) error { _, err := fn(ctx); return err })
}

func (w txWork) DoLocking(ctx context.Context, _ []string, fn func(ctx context.Context) ([]proto.Message, error)) error {
	return w.Do(ctx, fn)
}

// TestAdmissionHoldsTheDoor: with three orders waiting for the saga and a
// limit of three, CreateOrder refuses the fourth with ResourceExhausted
// and stores nothing; once one is confirmed, the same request is taken.
func TestAdmissionHoldsTheDoor(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		if err := db.Migrate(ctx, "orders", adapters.Migrations(db.Dialect())); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		s := adapters.New(db)
		a := app.New(s, txWork{db}).WithAdmission(app.Admission{Counter: s, MaxPending: 3})
		order := func(req string) app.CreateOrder {
			return app.CreateOrder{RequestID: req, CustomerID: "alice", Lines: []domain.Line{
				{SKU: "A", Quantity: 1, UnitPrice: domain.Money{Currency: "EUR", Units: 1}}}}
		}
		var first *domain.Order
		for i, req := range []string{"r1", "r2", "r3"} {
			o, err := a.CreateOrder(ctx, order(req))
			if err != nil {
				t.Fatalf("order %d under the limit: %v", i+1, err)
			}
			if first == nil {
				first = o
			}
		}
		_, err := a.CreateOrder(ctx, order("r4"))
		if ae, ok := apperr.As(err); !ok || ae.Kind != apperr.KindResourceExhausted || !strings.Contains(ae.Message, "limit is 3") {
			t.Fatalf("fourth order = %v, want ResourceExhausted naming the limit", err)
		}
		if prev, _, err := s.GetByRequestID(ctx, "alice", "r4"); err != nil || prev != nil {
			t.Fatalf("a refused order was stored: %v, %v", prev, err)
		}
		if n, err := s.Pending(ctx, 2); err != nil || n != 2 {
			t.Fatalf("Pending(limit 2) = %d, %v; want 2: the count stops at the limit", n, err)
		}
		if err := db.InTxContext(ctx, func(ctx context.Context) error {
			_, err := s.Update(ctx, first.ID, func(o *domain.Order) error { o.Confirm(time.Now()); return nil })
			return err
		}); err != nil {
			t.Fatalf("confirm: %v", err)
		}
		if _, err := a.CreateOrder(ctx, order("r4")); err != nil {
			t.Fatalf("the same request after one order was confirmed: %v", err)
		}
		if n, err := s.Pending(ctx, 100); err != nil || n != 3 {
			t.Fatalf("Pending = %d, %v; want 3", n, err)
		}
		if db.Dialect() == sqldb.SQLite {
			// The count reads the partial index, not the table.
			var plan strings.Builder
			rows, err := db.QueryContext(ctx, `EXPLAIN QUERY PLAN SELECT COUNT(*) FROM (SELECT 1 FROM orders WHERE status = 1 LIMIT 10) p`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			for rows.Next() {
				var id, parent, unused int
				var detail string
				if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
					t.Fatal(err)
				}
				plan.WriteString(detail + "\n")
			}
			if !strings.Contains(plan.String(), "orders_pending") {
				t.Errorf("the pending count does not use orders_pending:\n%s", plan.String())
			}
		}
	})
}

// TestAdmissionSamples: with Every set, one count serves the calls within
// it, so a burst of orders costs one count (and may pass the limit by what
// arrives within Every).
func TestAdmissionSamples(t *testing.T) {
	db, err := sqldb.OpenSQLite(filepath.Join(t.TempDir(), "orders.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := db.Migrate(ctx, "orders", adapters.Migrations(db.Dialect())); err != nil {
		t.Fatal(err)
	}
	s := adapters.New(db)
	c := &countingCounter{s: s}
	a := app.New(s, txWork{db}).WithAdmission(app.Admission{Counter: c, MaxPending: 1, Every: time.Hour})
	for i := range 3 {
		if _, err := a.CreateOrder(ctx, app.CreateOrder{CustomerID: "alice", Lines: []domain.Line{
			{SKU: "A", Quantity: 1, UnitPrice: domain.Money{Currency: "EUR", Units: 1}}}}); err != nil {
			t.Fatalf("order %d within one sample (count 0): %v", i+1, err)
		}
	}
	if c.calls != 1 {
		t.Fatalf("%d counts for three orders within one sample; want 1", c.calls)
	}
}

type countingCounter struct {
	s     *adapters.Store
	calls int
}

func (c *countingCounter) Pending(ctx context.Context, limit int) (int, error) {
	c.calls++
	return c.s.Pending(ctx, limit)
}
