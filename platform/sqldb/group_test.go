package sqldb_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
)

// TestInTxSharedGroupsCommits: calls that arrive while a transaction runs
// share the next one; each keeps its own outcome (a failing call rolls
// back alone, its after-commit hooks never run), and a call alone runs at
// once in a transaction of its own. A statement error (a unique
// violation, which aborts a PostgreSQL transaction) fails its call only.
func TestInTxSharedGroupsCommits(t *testing.T) {
	sqldbtest.Each(t, testGroupCommit)
}

func testGroupCommit(t *testing.T, db *sqldb.DB) {
	ctx := context.Background()
	db.SetSharedTransactions(1) // all wait behind the first
	kvTable(t, db)
	var runsMu sync.Mutex
	runs := map[string]int{} // how often each key's fn ran
	insert := func(k string, fail bool, hooks *atomic.Int32) error {
		return db.InTxShared(ctx, func(tx *sqldb.Tx) error {
			runsMu.Lock()
			runs[k]++
			runsMu.Unlock()
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

	const n = 40
	errs := make([]error, n)
	queued := func(first func(*sqldb.Tx) error, call func(i int) error) {
		t.Helper()
		queue(t, db, first, errs, call)
	}

	hooks.Store(0)
	queued(func(tx *sqldb.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO kv (k) VALUES ('first')`)
		return err
	}, func(i int) error {
		key := fmt.Sprintf("k%02d", i)
		if i == 5 {
			key = "alone" // a unique violation: on PostgreSQL an error that aborts the transaction but for the savepoint
		}
		return insert(key, i%10 == 3, &hooks)
	})
	for i, err := range errs {
		if want := i%10 == 3 || i == 5; (err != nil) != want {
			t.Errorf("call %d: err %v, want failure %v", i, err, want)
		}
	}
	var rows int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM kv WHERE k LIKE 'k%'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != n-5 || hooks.Load() != n-5 {
		t.Fatalf("%d rows and %d after-commit hooks, want %d each: the 5 failing calls must leave nothing", rows, hooks.Load(), n-5)
	}
	if s := db.SharedTransactions(); s != 1 {
		t.Fatalf("%d shared transactions for %d calls queued together, want 1", s, n)
	}
	// The first failure rolled back the optimistic transaction; the calls
	// ran again once, with savepoints. A failing call never ran again.
	if s := db.GroupStats().Rerun; s != 1 {
		t.Fatalf("%d transactions with savepoints, want 1 after the optimistic one failed", s)
	}
	for i := range n {
		key := fmt.Sprintf("k%02d", i)
		if i == 5 {
			continue // "alone" ran before too
		}
		if r, failing := runs[key], i%10 == 3; r < 1 || r > 2 || failing && r != 1 {
			t.Errorf("%s ran %d times (failing %v): want once if failing, else once or twice", key, r, failing)
		}
	}

	// Calls that all succeed share one transaction without savepoints.
	hooks.Store(0)
	queued(func(*sqldb.Tx) error { return nil }, func(i int) error {
		return insert(fmt.Sprintf("ok%02d", i), false, &hooks)
	})
	for i, err := range errs {
		if err != nil || runs[fmt.Sprintf("ok%02d", i)] != 1 {
			t.Errorf("ok%02d: err %v, ran %d times; want nil, once", i, err, runs[fmt.Sprintf("ok%02d", i)])
		}
	}
	if hooks.Load() != n || db.SharedTransactions() != 2 || db.GroupStats().Rerun != 1 {
		t.Fatalf("%d hooks, %d shared and %d savepointed transactions; want %d, 2, 1", hooks.Load(), db.SharedTransactions(), db.GroupStats().Rerun, n)
	}
}

// queue runs call(i) for each i of errs, keeping its error there, while a
// first call (first) holds the writer, and lets it go once all of them
// wait behind it.
func queue(t *testing.T, db *sqldb.DB, first func(*sqldb.Tx) error, errs []error, call func(i int) error) {
	t.Helper()
	ctx := context.Background()
	hold := make(chan struct{})
	firstErr := make(chan error, 1)
	go func() {
		firstErr <- db.InTxShared(ctx, func(tx *sqldb.Tx) error { <-hold; return first(tx) })
	}()
	time.Sleep(50 * time.Millisecond)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { errs[i] = call(i) })
	}
	for deadline := time.Now().Add(10 * time.Second); db.QueuedCalls() < len(errs) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // until all wait behind the first
	}
	close(hold)
	wg.Wait()
	if err := <-firstErr; err != nil {
		t.Fatal(err)
	}
}

// kvTable creates the table kv (k TEXT PRIMARY KEY) the tests write to and
// returns how many of its rows match a LIKE pattern.
func kvTable(t *testing.T, db *sqldb.DB) func(like string) int {
	t.Helper()
	ctx := context.Background()
	if err := db.Migrate(ctx, "test", []sqldb.Migration{{ID: "1", SQL: []string{`CREATE TABLE kv (k TEXT PRIMARY KEY)`}}}); err != nil {
		t.Fatal(err)
	}
	return func(like string) int {
		t.Helper()
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM kv WHERE k LIKE ?`, like).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
}

// keys is deferred work: it inserts the keys gathered from the calls of a
// transaction, one statement each, when the transaction is about to commit.
type keys struct {
	list    []string
	flushes *atomic.Int32
}

func (k *keys) Flush(ctx context.Context, tx *sqldb.Tx) error {
	k.flushes.Add(1)
	for _, key := range k.list {
		if _, err := tx.ExecContext(ctx, `INSERT INTO kv (k) VALUES (?)`, key); err != nil {
			return fmt.Errorf("insert %s: %w", key, err)
		}
	}
	return nil
}

// TestDeferredWork: work queued with Tx.Defer runs once per transaction,
// just before it commits, with what every call queued under one key; a
// failing flush rolls the transaction back. In a shared transaction, a
// flush that fails is found out by savepoints: the call whose work failed
// gets the error, and the others commit.
func TestDeferredWork(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		db.SetSharedTransactions(1)
		rows := kvTable(t, db)
		var flushes, hooks atomic.Int32
		batch := func(tx *sqldb.Tx) *keys {
			return tx.Defer("kv", func() sqldb.Deferred { return &keys{flushes: &flushes} }).(*keys)
		}

		err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			batch(tx).list = append(batch(tx).list, "a")
			batch(tx).list = append(batch(tx).list, "b")
			if n := rows("%"); n != 0 {
				t.Errorf("%d rows before the commit, want the work held back", n)
			}
			return nil
		})
		if err != nil || flushes.Load() != 1 || rows("%") != 2 {
			t.Fatalf("InTx: err %v, %d flushes, %d rows; want nil, 1, 2", err, flushes.Load(), rows("%"))
		}
		err = db.InTx(ctx, func(tx *sqldb.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO kv (k) VALUES ('c')`); err != nil {
				return err
			}
			tx.OnCommit(func() { hooks.Add(1) })
			batch(tx).list = append(batch(tx).list, "a") // already there
			return nil
		})
		if err == nil || rows("c") != 0 || hooks.Load() != 0 {
			t.Fatalf("a failing flush: err %v, row c %d, %d hooks; want an error and nothing committed", err, rows("c"), hooks.Load())
		}

		const n = 20
		errs := make([]error, n)
		flushes.Store(0)
		queue(t, db, func(*sqldb.Tx) error { return nil }, errs, func(i int) error {
			return db.InTxShared(ctx, func(tx *sqldb.Tx) error {
				b := batch(tx)
				b.list = append(b.list, fmt.Sprintf("s%02d", i))
				return nil
			})
		})
		if err := errors.Join(errs...); err != nil || rows("s%") != n || flushes.Load() != 1 {
			t.Fatalf("shared: err %v, %d rows, %d flushes; want nil, %d, 1", err, rows("s%"), flushes.Load(), n)
		}

		flushes.Store(0)
		rerun := db.GroupStats().Rerun
		queue(t, db, func(*sqldb.Tx) error { return nil }, errs, func(i int) error {
			return db.InTxShared(ctx, func(tx *sqldb.Tx) error {
				key := fmt.Sprintf("f%02d", i)
				if i == 7 {
					key = "b" // a unique violation, only when flushed
				}
				tx.OnCommit(func() { hooks.Add(1) })
				b := batch(tx)
				b.list = append(b.list, key)
				return nil
			})
		})
		for i, err := range errs {
			if (err != nil) != (i == 7) {
				t.Errorf("call %d: err %v, want failure %v", i, err, i == 7)
			}
		}
		if rows("f%") != n-1 || hooks.Load() != n-1 || db.GroupStats().Rerun != rerun+1 {
			t.Fatalf("a failing flush in a shared transaction: %d rows, %d hooks, %d reruns; want %d, %d, 1",
				rows("f%"), hooks.Load(), db.GroupStats().Rerun-rerun, n-1, n-1)
		}
	})
}

// TestInTxSharedPanicReachesTheCaller: a fn that panics inside a shared
// transaction panics again in its caller's goroutine (where the consumer's
// recover turns it into a dead letter), rolls back alone, and leaves the
// committer working.
func TestInTxSharedPanicReachesTheCaller(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		db.SetSharedTransactions(1) // all wait behind the first
		kvTable(t, db)
		put := func(k string, boom bool) (recovered any, err error) {
			defer func() { recovered = recover() }()
			return nil, db.InTxShared(ctx, func(tx *sqldb.Tx) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO kv (k) VALUES (?)`, k); err != nil {
					return err
				}
				if boom {
					panic("handler bug")
				}
				return nil
			})
		}
		hold := make(chan struct{})
		go func() { _ = db.InTxShared(ctx, func(*sqldb.Tx) error { <-hold; return nil }) }()
		time.Sleep(20 * time.Millisecond)
		var wg sync.WaitGroup
		results := make([]any, 3)
		for i := range 3 {
			wg.Go(func() { results[i], _ = put(fmt.Sprintf("p%d", i), i == 1) })
		}
		for deadline := time.Now().Add(10 * time.Second); db.QueuedCalls() < 3 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		close(hold)
		wg.Wait()
		if results[0] != nil || results[1] != "handler bug" || results[2] != nil {
			t.Fatalf("recovered %v, want the panic in the second caller only", results)
		}
		if _, err := put("after", false); err != nil {
			t.Fatalf("a call after the panic: %v", err)
		}
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM kv`).Scan(&n); err != nil || n != 3 {
			t.Fatalf("%d rows (%v), want p0, p2 and after", n, err)
		}
	})
}

// TestSharedTransactionsSideBySide: on PostgreSQL, shared transactions run
// side by side up to the database's setting, so a unit waiting for another
// unit that arrived after it completes; with one at a time they never
// overlap. SQLite runs one at a time whatever the setting.
func TestSharedTransactionsSideBySide(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		// The first call waits until the second one runs; the second
		// starts only after the first.
		overlap := func() bool {
			started := make(chan struct{})
			second := make(chan struct{})
			first, last := make(chan error, 1), make(chan error, 1)
			go func() {
				first <- db.InTxShared(ctx, func(*sqldb.Tx) error {
					close(started)
					select {
					case <-second:
						return nil
					case <-time.After(time.Second):
						return errors.New("the second call did not run beside the first")
					}
				})
			}()
			<-started
			go func() { last <- db.InTxShared(ctx, func(*sqldb.Tx) error { close(second); return nil }) }()
			if err := <-last; err != nil {
				t.Fatal(err)
			}
			return <-first == nil
		}
		sideBySide := db.Dialect() == sqldb.Postgres
		if got := overlap(); got != sideBySide {
			t.Fatalf("%s by default: calls overlapped %v, want %v", db.Dialect(), got, sideBySide)
		}
		db.SetSharedTransactions(1)
		if overlap() {
			t.Fatalf("%s with one shared transaction at a time: calls overlapped", db.Dialect())
		}
	})
}

// TestStatementsCounted: every statement counts once, a transaction's
// BEGIN and COMMIT included.
func TestStatementsCounted(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		kvTable(t, db)
		before := db.Statements()
		if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO kv (k) VALUES ('a')`); err != nil {
				return err
			}
			var n int
			return tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM kv`).Scan(&n)
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `DELETE FROM kv WHERE k = 'none'`); err != nil {
			t.Fatal(err)
		}
		if got := db.Statements() - before; got != 5 {
			t.Fatalf("%d statements counted, want 5: BEGIN, INSERT, SELECT, COMMIT, DELETE", got)
		}
	})
}

// TestPreludes: the preludes of a shared transaction's calls are done by
// one Run, before the first call runs, and each call gets its own result;
// a call alone does its own. A prelude commits or rolls back with its
// call: a failing call, a prelude that fails for one call's item, and a
// caller that leaves after its prelude was done leave no row of that
// call's prelude, and the other calls commit.
func TestPreludes(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		db.SetSharedTransactions(1)
		rows := kvTable(t, db)
		var (
			mu    sync.Mutex
			runs  []int // items per Run
			onRun func(items []any)
		)
		// The prelude inserts each item's key and answers it upper-cased.
		pre := func(key string) sqldb.Prelude {
			return sqldb.Prelude{Key: "kv", Item: key, Run: func(ctx context.Context, tx *sqldb.Tx, items []any) ([]any, error) {
				mu.Lock()
				runs = append(runs, len(items))
				hook := onRun
				mu.Unlock()
				if hook != nil {
					hook(items)
				}
				out := make([]any, len(items))
				for i, it := range items {
					if _, err := tx.ExecContext(ctx, `INSERT INTO kv (k) VALUES (?)`, it); err != nil {
						return nil, fmt.Errorf("insert %s: %w", it, err)
					}
					out[i] = strings.ToUpper(it.(string))
				}
				return out, nil
			}}
		}
		reset := func() []int {
			mu.Lock()
			defer mu.Unlock()
			r := runs
			runs, onRun = nil, nil
			return r
		}

		var got any
		err := db.InTxSharedAfter(ctx, pre("alone"), func(tx *sqldb.Tx, res any) error { got = res; return nil })
		if r := reset(); err != nil || got != "ALONE" || rows("alone") != 1 || len(r) != 1 {
			t.Fatalf("alone: err %v, result %v, %d rows, runs %v; want nil, ALONE, 1, one run", err, got, rows("alone"), r)
		}

		const n = 20
		errs := make([]error, n)
		results := make([]any, n)
		queue(t, db, func(*sqldb.Tx) error { return nil }, errs, func(i int) error {
			key := fmt.Sprintf("s%02d", i)
			return db.InTxSharedAfter(ctx, pre(key), func(tx *sqldb.Tx, res any) error {
				results[i] = res
				// Every prelude of the transaction is done already.
				var have int
				if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM kv WHERE k LIKE 's%'`).Scan(&have); err != nil {
					return err
				}
				if have != n {
					return fmt.Errorf("call %d ran with %d preludes done, want %d", i, have, n)
				}
				return nil
			})
		})
		if r := reset(); errors.Join(errs...) != nil || rows("s%") != n || len(r) != 1 || r[0] != n {
			t.Fatalf("shared: err %v, %d rows, runs %v; want nil, %d, one run of %d", errors.Join(errs...), rows("s%"), r, n, n)
		}
		for i, res := range results {
			if want := fmt.Sprintf("S%02d", i); res != want {
				t.Errorf("call %d got %v, want %s", i, res, want)
			}
		}

		// A caller leaving once its prelude is done (during the Run of
		// all), a failing call, a prelude failing for one item ("alone"
		// is there).
		for k, c := range []struct {
			name string
			bad  map[int]bool
		}{{"a caller leaves", map[int]bool{3: true}}, {"a call fails", map[int]bool{7: true}}, {"a prelude fails", map[int]bool{5: true}}} {
			leave := make([]context.CancelFunc, n)
			if c.bad[3] {
				mu.Lock()
				onRun = func(items []any) {
					if len(items) > 1 {
						leave[3]()
					}
				}
				mu.Unlock()
			}
			prefix := fmt.Sprintf("f%d", k)
			queue(t, db, func(*sqldb.Tx) error { return nil }, errs, func(i int) error {
				cctx, cancel := context.WithCancel(ctx)
				defer cancel()
				leave[i] = cancel
				key := fmt.Sprintf("%s-%02d", prefix, i)
				if c.bad[5] && i == 5 {
					key = "alone"
				}
				return db.InTxSharedAfter(cctx, pre(key), func(tx *sqldb.Tx, res any) error {
					if c.bad[7] && i == 7 {
						return errors.New("call 7 fails")
					}
					return nil
				})
			})
			for i, err := range errs {
				if (err != nil) != c.bad[i] {
					t.Errorf("%s: call %d: err %v, want failure %v", c.name, i, err, c.bad[i])
				}
			}
			r := reset()
			if rows(prefix+"-%") != n-len(c.bad) || rows("alone") != 1 {
				t.Errorf("%s: %d rows, runs %v; want %d", c.name, rows(prefix+"-%"), r, n-len(c.bad))
			}
			for i := range c.bad {
				if k := fmt.Sprintf("%s-%02d", prefix, i); rows(k) != 0 {
					t.Errorf("%s: the prelude of call %d committed without it", c.name, i)
				}
			}
		}
	})
}
