package inbox_test

import (
	"context"
	"errors"
	"testing"

	"github.com/herald-events/herald/platform/inbox"
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
