package adapters_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
	"github.com/herald-events/herald/services/logistics/adapters"
	"github.com/herald-events/herald/services/logistics/app"
	"github.com/herald-events/herald/services/logistics/domain"
)

// open migrates db, as the platform does for the module, and returns the
// store.
func open(t *testing.T, db *sqldb.DB) *adapters.Store {
	t.Helper()
	if err := db.Migrate(context.Background(), "logistics", adapters.Migrations(db.Dialect())); err != nil {
		t.Fatal(err)
	}
	return adapters.New(db)
}

// TestStoreContract is run against every database.
func TestStoreContract(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := open(t, db)
		get := func(id string) *domain.Shipment {
			t.Helper()
			sh, err := s.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			return sh
		}
		if sh := get("o-1"); sh != nil {
			t.Fatalf("Get before insert = %+v, want nil", sh)
		}
		t0 := time.Date(2025, 5, 6, 7, 8, 9, 10, time.UTC)
		want := &domain.Shipment{OrderID: "o-1", Status: domain.StatusReserved, Lines: []domain.Line{{SKU: "A", Quantity: 2}}, Created: t0, Updated: t0}
		if err := s.Insert(ctx, want); err != nil {
			t.Fatal(err)
		}
		if got := get("o-1"); !reflect.DeepEqual(got, want) {
			t.Fatalf("Get = %+v, want %+v", got, want)
		}
		// A second insert of the same order fails, so a racing handler is
		// retried instead of overwriting.
		dup := &domain.Shipment{OrderID: "o-1", Status: domain.StatusReleased, Created: t0, Updated: t0}
		if err := s.Insert(ctx, dup); err == nil {
			t.Fatal("second Insert of o-1 succeeded")
		}
		t1 := t0.Add(time.Hour)
		rel := *want
		rel.Status, rel.Updated = domain.StatusReleased, t1
		if err := s.Save(ctx, &rel); err != nil {
			t.Fatal(err)
		}
		if got := get("o-1"); got.Status != domain.StatusReleased || !got.Updated.Equal(t1) || len(got.Lines) != 1 {
			t.Fatalf("after Save: %+v", got)
		}
		missing := &domain.Shipment{OrderID: "o-404", Status: domain.StatusReleased, Updated: t1}
		if err := s.Save(ctx, missing); err == nil {
			t.Fatal("Save of a missing shipment succeeded")
		}
	})
}

// TestUseCases drives reserve and release through the SQL store, in both
// arrival orders.
func TestUseCases(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		a := app.New(open(t, db))
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		lines := []domain.Line{{SKU: "APPLE", Quantity: 3}}

		must(a.Reserve(ctx, "o-1", lines))
		must(a.Reserve(ctx, "o-1", lines))
		sh, err := a.Shipment(ctx, "o-1")
		if err != nil || sh.Status != domain.StatusReserved || !reflect.DeepEqual(sh.Lines, lines) {
			t.Fatalf("after reserve: %+v, %v", sh, err)
		}
		must(a.Release(ctx, "o-1"))
		must(a.Release(ctx, "o-1"))
		if sh, err = a.Shipment(ctx, "o-1"); err != nil || sh.Status != domain.StatusReleased || !reflect.DeepEqual(sh.Lines, lines) {
			t.Fatalf("after release: %+v, %v", sh, err)
		}

		// The cancel arrives first: recorded, and the deduction after it
		// reserves nothing.
		must(a.Release(ctx, "o-2"))
		must(a.Reserve(ctx, "o-2", lines))
		if sh, err = a.Shipment(ctx, "o-2"); err != nil || sh.Status != domain.StatusReleased || len(sh.Lines) != 0 {
			t.Fatalf("cancel before reserve: %+v, %v; want RELEASED without lines", sh, err)
		}

		// In a unit of work (a transaction ctx carries) a use case joins it
		// and is undone with it.
		_ = db.InTx(ctx, func(tx *sqldb.Tx) error {
			must(a.Reserve(db.WithTx(ctx, tx), "o-3", lines))
			return errors.New("abort")
		})
		if sh, err := a.Shipment(ctx, "o-3"); err == nil {
			t.Fatalf("a rolled-back reserve left %+v", sh)
		}
		if _, err := a.Shipment(ctx, "o-unknown"); err == nil {
			t.Fatal("Shipment of an unknown order succeeded")
		}
		if _, err := a.Shipment(ctx, ""); err == nil {
			t.Fatal("Shipment of an empty order id succeeded")
		}
	})
}
