package sqldb_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/fault"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
)

// openPostgresTwice opens two databases on one fresh PostgreSQL schema, as
// two processes of a service would, each with one shared transaction at a
// time, and creates the table stock with the rows x and y at 0.
func openPostgresTwice(t *testing.T) (a, b *sqldb.DB) {
	t.Helper()
	url, schema, ok := sqldbtest.FreshPostgres(t)
	if !ok {
		t.Skip(sqldbtest.EnvURL + " does not name a PostgreSQL database")
	}
	ctx := context.Background()
	dbs := make([]*sqldb.DB, 2)
	for i := range dbs {
		db, err := sqldb.OpenPostgres(ctx, url, schema)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		db.SetSharedTransactions(1)
		dbs[i] = db
	}
	if _, err := dbs[0].ExecContext(ctx, `CREATE TABLE stock (sku TEXT PRIMARY KEY, n INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := dbs[0].ExecContext(ctx, `INSERT INTO stock (sku, n) VALUES ('x', 0), ('y', 0)`); err != nil {
		t.Fatal(err)
	}
	return dbs[0], dbs[1]
}

// advisoryLocks counts the advisory locks tx's session holds.
func advisoryLocks(ctx context.Context, tx *sqldb.Tx) (int, error) {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted`).Scan(&n)
	return n, err
}

// TestLocksTakenInOneOrder: two processes whose shared transactions change
// the same rows in opposite orders (x then y, and y then x, each row by
// another call) do not deadlock when the calls name the rows in Locks: each
// transaction takes the locks of all its calls before the first one runs,
// in one order, so the second waits for the first to commit. Before, the
// two reached each other's rows and PostgreSQL failed one of them (40P01).
func TestLocksTakenInOneOrder(t *testing.T) {
	a, b := openPostgresTwice(t)
	ctx := context.Background()
	// Each call changes one row. The first call of each transaction waits
	// (up to a bound) for the other transaction's first call to have
	// changed its row, so that without locks both hold one row and want
	// the other's.
	var firstDone [2]chan struct{}
	for i := range firstDone {
		firstDone[i] = make(chan struct{})
	}
	change := func(db *sqldb.DB, side int, sku string, first bool) error {
		pre := sqldb.Prelude{Locks: []string{"test/" + sku}}
		return db.InTxSharedAfter(ctx, pre, func(tx *sqldb.Tx, _ any) error {
			if n, err := advisoryLocks(ctx, tx); err != nil || n != 2 {
				return fmt.Errorf("call on %s ran holding %d advisory locks (err %v), want both of the transaction's", sku, n, err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE stock SET n = n + 1 WHERE sku = ?`, sku); err != nil {
				return err
			}
			if first {
				close(firstDone[side])
				select {
				case <-firstDone[1-side]:
				case <-time.After(300 * time.Millisecond):
				}
			}
			return nil
		})
	}
	// Each database gets its two calls queued, in order, behind a call
	// that holds its writer; then both writers go at once.
	release := make(chan struct{})
	errs := make([]error, 6)
	var wg sync.WaitGroup
	for side, db := range []*sqldb.DB{a, b} {
		order := []string{"x", "y"}
		if side == 1 {
			order = []string{"y", "x"}
		}
		wg.Go(func() { errs[3*side] = db.InTxShared(ctx, func(*sqldb.Tx) error { <-release; return nil }) })
		for db.QueuedCalls() != 0 {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond) // the holder has begun
		for k, sku := range order {
			wg.Go(func() { errs[3*side+1+k] = change(db, side, sku, k == 0) })
			for deadline := time.Now().Add(5 * time.Second); db.QueuedCalls() != k+1; {
				if time.Now().After(deadline) {
					t.Fatalf("call %d of side %d did not queue", k, side)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	close(release)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("calls failed: %v", err)
	}
	// A deadlock while taking the locks would have failed a transaction
	// and run its calls again.
	if s, r := a.SharedTransactions()+b.SharedTransactions(), a.GroupStats().Rerun+b.GroupStats().Rerun; s != 2 || r != 0 {
		t.Fatalf("%d shared transactions, %d run again; want one per side, none again", s, r)
	}
	rows, err := a.QueryContext(ctx, `SELECT sku, n FROM stock ORDER BY sku`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			sku string
			n   int
		)
		if err := rows.Scan(&sku, &n); err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Errorf("stock %s changed %d times, want 2", sku, n)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestLocksOnEveryPath: a call's locks are held when it runs alone, when it
// joins the transaction a context carries, and when its shared transaction
// runs again with a savepoint per call after one call failed (the locks of
// every call taken before the first savepoint); a name given twice is one
// lock.
func TestLocksOnEveryPath(t *testing.T) {
	a, _ := openPostgresTwice(t)
	ctx := context.Background()
	// held checks that the transaction holds the locks of names, and
	// count advisory locks in all.
	held := func(count int, names ...string) func(tx *sqldb.Tx, _ any) error {
		return func(tx *sqldb.Tx, _ any) error {
			mine, err := sqldbtest.HeldLocks(ctx, tx, names...)
			if err != nil {
				return err
			}
			n, err := advisoryLocks(ctx, tx)
			if err != nil || len(mine) != len(names) || (count > 0 && n != count) {
				return fmt.Errorf("ran holding %v of the locks of %v and %d advisory locks in all (err %v), want all of them and %d",
					mine, names, n, err, count)
			}
			return nil
		}
	}
	pre := func(names ...string) sqldb.Prelude { return sqldb.Prelude{Locks: names} }
	if err := a.InTxSharedAfter(ctx, pre("p/a", "p/b", "p/a"), held(2, "p/a", "p/b")); err != nil {
		t.Fatalf("alone: %v", err)
	}
	if err := a.InTx(ctx, func(tx *sqldb.Tx) error {
		return a.InTxSharedAfter(a.WithTx(ctx, tx), pre("p/c"), held(1, "p/c"))
	}); err != nil {
		t.Fatalf("in the context's transaction: %v", err)
	}
	// Three calls queued together, the second failing: each of the other
	// two runs holding the locks of both, once in the transaction of all
	// three and once again with savepoints.
	errs := make([]error, 3)
	queue(t, a, func(*sqldb.Tx) error { return nil }, errs, func(i int) error {
		if i == 1 {
			return a.InTxSharedAfter(ctx, pre("p/fail"), func(*sqldb.Tx, any) error { return errors.New("refused") })
		}
		return a.InTxSharedAfter(ctx, pre(fmt.Sprintf("p/%d", i)), held(0, "p/0", "p/2"))
	})
	if errs[0] != nil || errs[2] != nil || errs[1] == nil || a.GroupStats().Rerun != 1 {
		t.Fatalf("errors %v, %d rerun; want only the second call's, 1 rerun", errs, a.GroupStats().Rerun)
	}
}

// TestPostgresDeadlockIsConflict: two transactions that change two rows in
// opposite orders deadlock, and the one PostgreSQL fails gets a conflict:
// transient, of the database, to run again at once.
func TestPostgresDeadlockIsConflict(t *testing.T) {
	a, b := openPostgresTwice(t)
	ctx := context.Background()
	var both sync.WaitGroup
	both.Add(2)
	run := func(db *sqldb.DB, first, second string) error {
		return db.InTx(ctx, func(tx *sqldb.Tx) error {
			if _, err := tx.ExecContext(ctx, `UPDATE stock SET n = n + 1 WHERE sku = ?`, first); err != nil {
				return err
			}
			both.Done()
			both.Wait()
			_, err := tx.ExecContext(ctx, `UPDATE stock SET n = n + 1 WHERE sku = ?`, second)
			return err
		})
	}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	wg.Go(func() { errs[0] = run(a, "x", "y") })
	wg.Go(func() { errs[1] = run(b, "y", "x") })
	wg.Wait()
	failed := 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		failed++
		if !fault.IsConflict(err) || !fault.IsTransient(err) || fault.DependencyOf(err) != sqldb.Dependency {
			t.Errorf("deadlock: %v: conflict %v, transient %v, dependency %q; want a conflict of the database",
				err, fault.IsConflict(err), fault.IsTransient(err), fault.DependencyOf(err))
		}
	}
	if failed != 1 {
		t.Fatalf("%d of 2 transactions failed (%v), want 1", failed, errs)
	}
}
