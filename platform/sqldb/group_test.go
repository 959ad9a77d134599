package sqldb_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/sqldb"
)

// TestInTxSharedGroupsCommits: calls that arrive while a transaction runs
// share the next one; each keeps its own outcome (a failing call rolls
// back alone, its after-commit hooks never run), and a call alone runs at
// once in a transaction of its own.
func TestInTxSharedGroupsCommits(t *testing.T) {
	db, err := sqldb.OpenSQLite(filepath.Join(t.TempDir(), "group.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := db.Migrate(ctx, "test", []sqldb.Migration{{ID: "1", SQL: []string{`CREATE TABLE kv (k TEXT PRIMARY KEY)`}}}); err != nil {
		t.Fatal(err)
	}
	insert := func(k string, fail bool, hooks *atomic.Int32) error {
		return db.InTxShared(ctx, func(tx *sqldb.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO kv (k) VALUES (?)`, k); err != nil {
				return err
			}
			tx.OnCommit(func() { hooks.Add(1) })
			if fail {
				return errors.New("refused " + k)
			}
			return nil
		})
	}
	// One call alone: no shared transaction.
	var hooks atomic.Int32
	if err := insert("alone", false, &hooks); err != nil || hooks.Load() != 1 || db.SharedTransactions() != 0 {
		t.Fatalf("a call alone: err %v, %d hooks, %d shared transactions; want nil, 1, 0", err, hooks.Load(), db.SharedTransactions())
	}

	// The first call holds the writer while the others arrive.
	hold := make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- db.InTxShared(ctx, func(tx *sqldb.Tx) error {
			<-hold
			_, err := tx.ExecContext(ctx, `INSERT INTO kv (k) VALUES ('first')`)
			return err
		})
	}()
	time.Sleep(50 * time.Millisecond)
	const n = 40
	hooks.Store(0)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = insert(fmt.Sprintf("k%02d", i), i%10 == 3, &hooks) })
	}
	time.Sleep(100 * time.Millisecond) // all 40 queued behind the first
	close(hold)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if want := i%10 == 3; (err != nil) != want {
			t.Errorf("call %d: err %v, want failure %v", i, err, want)
		}
	}
	var rows int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM kv WHERE k LIKE 'k%'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != n-4 || hooks.Load() != n-4 {
		t.Fatalf("%d rows and %d after-commit hooks, want %d each: the 4 failing calls must leave nothing", rows, hooks.Load(), n-4)
	}
	if s := db.SharedTransactions(); s < 1 || s > 4 {
		t.Fatalf("%d shared transactions for %d queued calls, want a few", s, n)
	}
}
