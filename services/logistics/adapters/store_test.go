package adapters_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
	"github.com/herald-events/herald/services/logistics/adapters"
	"github.com/herald-events/herald/services/logistics/app"
	"github.com/herald-events/herald/services/logistics/domain"
)

// TestStoreContract is run against every database.
func TestStoreContract(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s, err := adapters.Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		get := func(id string) *domain.Shipment {
			t.Helper()
			var sh *domain.Shipment
			if err := s.InTx(ctx, func(tx *sqldb.Tx) (err error) { sh, err = s.Get(ctx, tx, id); return err }); err != nil {
				t.Fatal(err)
			}
			return sh
		}
		if sh := get("o-1"); sh != nil {
			t.Fatalf("Get before insert = %+v, want nil", sh)
		}
		t0 := time.Date(2025, 5, 6, 7, 8, 9, 10, time.UTC)
		want := &domain.Shipment{OrderID: "o-1", Status: domain.StatusReserved, Lines: []domain.Line{{SKU: "A", Quantity: 2}}, Created: t0, Updated: t0}
		if err := s.InTx(ctx, func(tx *sqldb.Tx) error { return s.Insert(ctx, tx, want) }); err != nil {
			t.Fatal(err)
		}
		if got := get("o-1"); !reflect.DeepEqual(got, want) {
			t.Fatalf("Get = %+v, want %+v", got, want)
		}
		// A second insert of the same order fails, so a racing handler is
		// retried instead of overwriting.
		dup := &domain.Shipment{OrderID: "o-1", Status: domain.StatusReleased, Created: t0, Updated: t0}
		if err := s.InTx(ctx, func(tx *sqldb.Tx) error { return s.Insert(ctx, tx, dup) }); err == nil {
			t.Fatal("second Insert of o-1 succeeded")
		}
		t1 := t0.Add(time.Hour)
		rel := *want
		rel.Status, rel.Updated = domain.StatusReleased, t1
		if err := s.InTx(ctx, func(tx *sqldb.Tx) error { return s.Update(ctx, tx, &rel) }); err != nil {
			t.Fatal(err)
		}
		if got := get("o-1"); got.Status != domain.StatusReleased || !got.Updated.Equal(t1) || len(got.Lines) != 1 {
			t.Fatalf("after Update: %+v", got)
		}
		missing := &domain.Shipment{OrderID: "o-404", Status: domain.StatusReleased, Updated: t1}
		if err := s.InTx(ctx, func(tx *sqldb.Tx) error { return s.Update(ctx, tx, missing) }); err == nil {
			t.Fatal("Update of a missing shipment succeeded")
		}
	})
}

// TestUseCases drives reserve and release through the SQL store, in both
// arrival orders.
func TestUseCases(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s, err := adapters.Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		a := app.New(s)
		in := func(fn func(tx *sqldb.Tx) error) {
			t.Helper()
			if err := s.InTx(ctx, fn); err != nil {
				t.Fatal(err)
			}
		}
		lines := []domain.Line{{SKU: "APPLE", Quantity: 3}}

		in(func(tx *sqldb.Tx) error { return a.Reserve(ctx, tx, "o-1", lines) })
		in(func(tx *sqldb.Tx) error { return a.Reserve(ctx, tx, "o-1", lines) })
		sh, err := a.Shipment(ctx, "o-1")
		if err != nil || sh.Status != domain.StatusReserved || !reflect.DeepEqual(sh.Lines, lines) {
			t.Fatalf("after reserve: %+v, %v", sh, err)
		}
		in(func(tx *sqldb.Tx) error { return a.Release(ctx, tx, "o-1") })
		in(func(tx *sqldb.Tx) error { return a.Release(ctx, tx, "o-1") })
		if sh, err = a.Shipment(ctx, "o-1"); err != nil || sh.Status != domain.StatusReleased || !reflect.DeepEqual(sh.Lines, lines) {
			t.Fatalf("after release: %+v, %v", sh, err)
		}

		// The cancel arrives first: recorded, and the deduction after it
		// reserves nothing.
		in(func(tx *sqldb.Tx) error { return a.Release(ctx, tx, "o-2") })
		in(func(tx *sqldb.Tx) error { return a.Reserve(ctx, tx, "o-2", lines) })
		if sh, err = a.Shipment(ctx, "o-2"); err != nil || sh.Status != domain.StatusReleased || len(sh.Lines) != 0 {
			t.Fatalf("cancel before reserve: %+v, %v; want RELEASED without lines", sh, err)
		}

		if _, err := a.Shipment(ctx, "o-unknown"); err == nil {
			t.Fatal("Shipment of an unknown order succeeded")
		}
		if _, err := a.Shipment(ctx, ""); err == nil {
			t.Fatal("Shipment of an empty order id succeeded")
		}
	})
}
