package inbox_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/inbox"
	"github.com/herald-events/herald/platform/observe"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
)

func TestClaimOnce(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		if err := db.Migrate(ctx, "test", append(inbox.Migrations(db.Dialect()),
			sqldb.Migration{ID: "effects", SQL: []string{`CREATE TABLE effects (n INTEGER NOT NULL)`}})); err != nil {
			t.Fatal(err)
		}
		apply := func(id string, fail bool) (bool, error) {
			var fresh bool
			err := db.InTx(ctx, func(tx *sqldb.Tx) error {
				var err error
				if fresh, err = inbox.Claim(ctx, tx, id, "t.Event"); err != nil || !fresh {
					return err
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO effects (n) VALUES (1)`); err != nil {
					return err
				}
				if fail {
					return errors.New("effect failed")
				}
				return nil
			})
			return fresh, err
		}
		count := func() int {
			var n int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM effects`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		// A failed first attempt rolls the claim back with the effect...
		if _, err := apply("e-1", true); err == nil {
			t.Fatal("failing handler committed")
		}
		if seen, _ := inbox.Seen(ctx, db, "e-1"); seen || count() != 0 {
			t.Fatalf("after a failed attempt: seen=%v effects=%d; want neither", seen, count())
		}
		// ...so the redelivery applies it, and later ones do not.
		for i, want := range []bool{true, false, false} {
			fresh, err := apply("e-1", false)
			if err != nil || fresh != want {
				t.Fatalf("delivery %d: fresh=%v err=%v; want fresh=%v", i+1, fresh, err, want)
			}
		}
		if count() != 1 {
			t.Fatalf("%d effects for one event, want 1", count())
		}
		if fresh, _ := apply("e-2", false); !fresh || count() != 2 {
			t.Fatal("a different event was treated as a duplicate")
		}
	})
}

// TestPurge: claims made before the cutoff go, in batches, and those after
// it stay; rows of earlier versions, whose processed_at is RFC 3339 with
// the fraction's trailing zeros cut, are purged by the same rule; an event
// whose claim is gone is fresh again.
func TestPurge(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		if err := db.Migrate(ctx, "test", inbox.Migrations(db.Dialect())); err != nil {
			t.Fatal(err)
		}
		cutoff := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
		old := []string{
			"2026-10-01T00:00:00Z", // earlier versions' layout
			"2026-11-01T11:59:59.5Z",
			"2026-11-01T11:59:59.999999999Z",
			"2026-11-01T11:00:00.000000000Z", // this version's
			"2026-10-31T23:59:59.100000000Z",
		}
		recent := []string{"2026-11-01T12:00:00.000000001Z", "2026-11-01T12:00:01Z", "2026-11-02T00:00:00.000000000Z"}
		for i, at := range append(append([]string{}, old...), recent...) {
			if _, err := db.ExecContext(ctx, `INSERT INTO herald_inbox (event_id, event_type, processed_at) VALUES (?, 't.Event', ?)`,
				fmt.Sprintf("e-%d", i), at); err != nil {
				t.Fatal(err)
			}
		}
		n, err := inbox.Purge(ctx, db, cutoff, 2)
		if err != nil || n != int64(len(old)) {
			t.Fatalf("Purge = %d, %v; want the %d claims older than %s", n, err, len(old), cutoff)
		}
		rows, err := db.QueryContext(ctx, `SELECT processed_at FROM herald_inbox ORDER BY processed_at`)
		if err != nil {
			t.Fatal(err)
		}
		var kept []string
		for rows.Next() {
			var at string
			if err := rows.Scan(&at); err != nil {
				t.Fatal(err)
			}
			kept = append(kept, at)
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(kept, recent) {
			t.Fatalf("kept %v, want %v", kept, recent)
		}
		if n, err := inbox.Purge(ctx, db, cutoff, 2); err != nil || n != 0 {
			t.Fatalf("second Purge = %d, %v; want nothing left to purge", n, err)
		}
		err = db.InTx(ctx, func(tx *sqldb.Tx) error {
			for id, want := range map[string]bool{"e-0": true, "e-5": false} {
				fresh, err := inbox.Claim(ctx, tx, id, "t.Event")
				if err != nil {
					return err
				}
				if fresh != want {
					t.Errorf("claim of %s after the purge: fresh=%v, want %v", id, fresh, want)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestExpire: the loop purges claims once they are older than the
// retention, counts them, and returns when its context ends.
func TestExpire(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		if err := db.Migrate(ctx, "test", inbox.Migrations(db.Dialect())); err != nil {
			t.Fatal(err)
		}
		if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			for _, id := range []string{"a", "b", "c"} {
				if _, err := inbox.Claim(ctx, tx, id, "t.Event"); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		metrics := observe.New()
		ectx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- inbox.Expire(ectx, inbox.ExpireConfig{DB: db, Service: "svc", Retention: 100 * time.Millisecond, Metrics: metrics})
		}()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var n int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM herald_inbox`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d claims left 10 s after they expired", n)
			}
			time.Sleep(20 * time.Millisecond)
		}
		stop()
		if err := <-done; err != nil {
			t.Fatalf("Expire: %v", err)
		}
		if got := purgedMetric(t, metrics, "svc"); got != 3 {
			t.Errorf("herald_inbox_purged_total{service=svc} = %v, want 3", got)
		}
		if err := inbox.Expire(ctx, inbox.ExpireConfig{DB: db, Service: "svc"}); err == nil {
			t.Error("Expire without a retention: no error")
		}
	})
}

func purgedMetric(t *testing.T, m *observe.Metrics, service string) float64 {
	t.Helper()
	families, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "herald_inbox_purged_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "service" && l.GetValue() == service {
					return s.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// TestClaimFirst: the prelude claims a shared transaction's events in one
// Run: an event claimed before is not first, of two items of one event only
// the first is, and the claims roll back with the transaction.
func TestClaimFirst(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		if err := db.Migrate(ctx, "test", inbox.Migrations(db.Dialect())); err != nil {
			t.Fatal(err)
		}
		run := func(ids ...string) ([]any, error) {
			var res []any
			err := db.InTx(ctx, func(tx *sqldb.Tx) error {
				items := make([]any, len(ids))
				for i, id := range ids {
					items[i] = inbox.ClaimFirst(id, "t.Event").Item
				}
				var err error
				res, err = inbox.ClaimFirst(ids[0], "t.Event").Run(ctx, tx, items)
				return err
			})
			return res, err
		}
		if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			_, err := inbox.Claim(ctx, tx, "old", "t.Event")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		got, err := run("new-1", "old", "new-2", "new-1", "new-3")
		if want := []any{true, false, true, false, true}; err != nil || !slices.Equal(got, want) {
			t.Fatalf("claims %v, %v; want %v", got, err, want)
		}
		for _, id := range []string{"old", "new-1", "new-2", "new-3"} {
			if seen, err := inbox.Seen(ctx, db, id); !seen || err != nil {
				t.Errorf("%s: seen %v, %v; want claimed", id, seen, err)
			}
		}
		if got, err := run("new-2"); err != nil || !slices.Equal(got, []any{false}) {
			t.Errorf("one item claimed before: %v, %v; want [false]", got, err)
		}
		err = db.InTx(ctx, func(tx *sqldb.Tx) error {
			if _, err := inbox.ClaimFirst("a", "t.Event").Run(ctx, tx, []any{inbox.ClaimFirst("a", "t.Event").Item, inbox.ClaimFirst("b", "t.Event").Item}); err != nil {
				return err
			}
			return errors.New("rolled back")
		})
		if seen, _ := inbox.Seen(ctx, db, "a"); err == nil || seen {
			t.Errorf("claims of a transaction rolled back: err %v, a seen %v; want an error and no claim", err, seen)
		}
	})
}
