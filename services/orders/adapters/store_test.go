package adapters_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/apperr"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
	"github.com/herald-events/herald/services/orders/adapters"
	"github.com/herald-events/herald/services/orders/domain"
)

func newOrder(t *testing.T, id, customer, requestID string) *domain.Order {
	t.Helper()
	o, err := domain.NewOrder(id, customer, requestID, []domain.Line{
		{SKU: "A", Quantity: 2, UnitPrice: domain.Money{Currency: "EUR", Units: 1, Nanos: 250_000_000}},
	}, time.Now().UTC().Truncate(time.Microsecond))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestStoreContract is run against every database.
func TestStoreContract(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		for range 2 {
			if err := db.Migrate(ctx, "orders", adapters.Migrations(db.Dialect())); err != nil {
				t.Fatalf("migrate: %v", err)
			}
		}
		s := adapters.New(db)
		// Each step in a transaction of its own, carried by the context,
		// as the platform's unit of work runs them.
		in := func(fn func(ctx context.Context) error) error {
			return db.InTxContext(ctx, fn)
		}

		o := newOrder(t, "o-1", "alice", "req-1")
		inserted := func(o *domain.Order, hash string) bool {
			t.Helper()
			var ok bool
			if err := in(func(ctx context.Context) (err error) { ok, err = s.Insert(ctx, o, hash); return err }); err != nil {
				t.Fatalf("Insert %s: %v", o.ID, err)
			}
			return ok
		}
		if !inserted(o, "hash-1") {
			t.Fatal("Insert of a new order stored nothing")
		}
		var got *domain.Order
		if err := in(func(ctx context.Context) (err error) { got, err = s.Get(ctx, "o-1"); return err }); err != nil {
			t.Fatalf("Get: %v", err)
		}
		if got.CustomerID != "alice" || got.Status != domain.StatusPending || got.Total != o.Total ||
			len(got.Lines) != 1 || got.Lines[0] != o.Lines[0] || !got.Created.Equal(o.Created) {
			t.Fatalf("Get = %+v, want %+v", got, o)
		}

		err := in(func(ctx context.Context) error { _, err := s.Get(ctx, "nope"); return err })
		if ae, ok := apperr.As(err); !ok || ae.Kind != apperr.KindNotFound {
			t.Fatalf("Get unknown = %v, want NotFound", err)
		}

		var hash string
		if err := in(func(ctx context.Context) (err error) {
			got, hash, err = s.GetByRequestID(ctx, "alice", "req-1")
			return err
		}); err != nil || got == nil || hash != "hash-1" {
			t.Fatalf("GetByRequestID = %v, %q, %v", got, hash, err)
		}
		if err := in(func(ctx context.Context) (err error) {
			got, _, err = s.GetByRequestID(ctx, "alice", "req-x")
			return err
		}); err != nil || got != nil {
			t.Fatalf("GetByRequestID unknown = %v, %v; want nil, nil", got, err)
		}
		// Request ids are scoped per customer: bob may use alice's, and
		// looking it up for bob never finds alice's order.
		if err := in(func(ctx context.Context) (err error) { got, _, err = s.GetByRequestID(ctx, "bob", "req-1"); return err }); err != nil || got != nil {
			t.Fatalf("GetByRequestID of another customer's request id = %v, %v; want nil, nil", got, err)
		}
		if !inserted(newOrder(t, "o-bob", "bob", "req-1"), "h") {
			t.Fatal("bob reusing alice's request_id: not stored")
		}
		if inserted(newOrder(t, "o-dup", "alice", "req-1"), "h") {
			t.Fatal("a second order of one customer with the same request_id was stored")
		}
		if err := in(func(ctx context.Context) error { _, err := s.Get(ctx, "o-dup"); return err }); err == nil {
			t.Fatal("Insert reported the second order of a request_id not stored, but it is there")
		}

		if _, err := s.Update(ctx, "o-1", func(o *domain.Order) error {
			o.Reject("UNKNOWN_SKU: sku A", time.Now().UTC())
			return nil
		}); err != nil {
			t.Fatalf("Update: %v", err)
		}
		boom := errors.New("refused")
		if _, err := s.Update(ctx, "o-1", func(o *domain.Order) error {
			o.Reject("other", time.Now().UTC())
			o.RejectionReason = "other"
			return boom
		}); !errors.Is(err, boom) {
			t.Fatalf("Update whose fn fails = %v, want its error", err)
		}
		if err := in(func(ctx context.Context) (err error) { got, err = s.Get(ctx, "o-1"); return err }); err != nil ||
			got.Status != domain.StatusRejected || got.RejectionReason != "UNKNOWN_SKU: sku A" {
			t.Fatalf("after Update: %+v, %v", got, err)
		}

		// Orders without a request id do not collide on the empty key.
		for i := 2; i <= 6; i++ {
			cust := "alice"
			if i%2 == 0 {
				cust = "bob"
			}
			if !inserted(newOrder(t, fmt.Sprintf("o-%d", i), cust, ""), "h") {
				t.Fatalf("Insert o-%d without a request id: not stored", i)
			}
		}
		var ids []string
		cursor := int64(0)
		for {
			page, cursors, err := s.List(ctx, "", cursor, 4)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			for _, p := range page {
				ids = append(ids, p.ID)
			}
			if len(page) < 4 {
				break
			}
			cursor = cursors[len(cursors)-1]
		}
		if fmt.Sprint(ids) != "[o-6 o-5 o-4 o-3 o-2 o-bob o-1]" {
			t.Fatalf("List pages = %v, want newest first", ids)
		}
		bob, _, err := s.List(ctx, "bob", 0, 10)
		if err != nil || len(bob) != 4 {
			t.Fatalf("List(bob) = %d orders, %v; want 4", len(bob), err)
		}
	})
}
