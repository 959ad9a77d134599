package sqldb_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
)

func openSQLite(t *testing.T) *sqldb.DB {
	t.Helper()
	db, err := sqldb.OpenSQLite(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.ExecContext(context.Background(), `CREATE TABLE counter (n INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(context.Background(), `INSERT INTO counter (n) VALUES (0)`); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestSQLiteTransactionsQueue: many goroutines' read-modify-write
// transactions on one file all commit, none lost.
func TestSQLiteTransactionsQueue(t *testing.T) {
	db := openSQLite(t)
	ctx := context.Background()
	const workers, each = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Go(func() {
			for range each {
				errs <- db.InTx(ctx, func(tx *sqldb.Tx) error {
					var n int
					if err := tx.QueryRowContext(ctx, `SELECT n FROM counter`).Scan(&n); err != nil {
						return err
					}
					_, err := tx.ExecContext(ctx, `UPDATE counter SET n = ?`, n+1)
					return err
				})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("InTx: %v", err)
		}
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT n FROM counter`).Scan(&n); err != nil || n != workers*each {
		t.Fatalf("counter = %d, %v; want %d", n, err, workers*each)
	}
}

// TestSQLiteWaitingTransactionHonoursContext: a transaction waiting for
// the file's writer gives up when its context ends, long before SQLite's
// 10 s busy timeout, and the writer is free again afterwards.
func TestSQLiteWaitingTransactionHonoursContext(t *testing.T) {
	db := openSQLite(t)
	holding, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.InTx(context.Background(), func(tx *sqldb.Tx) error {
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := db.InTx(ctx, func(*sqldb.Tx) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting InTx = %v, want context.DeadlineExceeded", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("waiting InTx gave up after %s", waited)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("holding InTx: %v", err)
	}
	if err := db.InTx(context.Background(), func(*sqldb.Tx) error { return nil }); err != nil {
		t.Fatalf("InTx after the holder: %v", err)
	}
}

// TestSQLiteStatementsStayCorrect: statements are kept prepared by query
// text on SQLite. Results stay right inside and outside transactions,
// after a schema change, and for more distinct texts than are kept.
func TestSQLiteStatementsStayCorrect(t *testing.T) {
	db := openSQLite(t)
	ctx := context.Background()
	for i := range 3 {
		if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			_, err := tx.ExecContext(ctx, `UPDATE counter SET n = n + ?`, i+1)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.QueryRowContext(ctx, `SELECT n FROM counter`).Scan(&n); err != nil || n != (i+1)*(i+2)/2 {
			t.Fatalf("after update %d: n = %d, %v", i, n, err)
		}
	}
	// A statement kept before a schema change sees the new schema.
	if _, err := db.ExecContext(ctx, `ALTER TABLE counter ADD COLUMN label TEXT NOT NULL DEFAULT 'x'`); err != nil {
		t.Fatal(err)
	}
	rows, err := db.QueryContext(ctx, `SELECT * FROM counter`)
	if err != nil {
		t.Fatal(err)
	}
	cols, _ := rows.Columns()
	rows.Close()
	if len(cols) != 2 {
		t.Fatalf("SELECT * after ALTER TABLE: columns %v, want n and label", cols)
	}
	// More distinct texts (IN lists of every length) than the cache keeps:
	// each still answers right, in and out of a transaction.
	for k := 1; k <= 300; k++ {
		q := `SELECT COUNT(*) FROM counter WHERE n IN (?` + strings.Repeat(", ?", k-1) + `)`
		args := make([]any, k)
		for i := range args {
			args[i] = i + 1 // the counter holds 6
		}
		want := 0
		if k >= 6 {
			want = 1
		}
		var got int
		if err := db.QueryRowContext(ctx, q, args...).Scan(&got); err != nil || got != want {
			t.Fatalf("IN list of %d: %d, %v; want %d", k, got, err, want)
		}
		if err := db.InTx(ctx, func(tx *sqldb.Tx) error { return tx.QueryRowContext(ctx, q, args...).Scan(&got) }); err != nil || got != want {
			t.Fatalf("IN list of %d in a transaction: %d, %v; want %d", k, got, err, want)
		}
	}
}

// TestInTxJoinsTheContextsTransaction: a store method that opens a
// transaction with a context carrying one joins it, so its write commits
// or rolls back with the outer unit of work (and, on SQLite, does not wait
// for the writer slot the outer transaction holds).
func TestInTxJoinsTheContextsTransaction(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		kvTable(t, db)
		insert := func(ctx context.Context, k string) error { // as a store method would
			return db.InTx(ctx, func(tx *sqldb.Tx) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO kv (k) VALUES (?)`, k)
				return err
			})
		}
		count := func(ctx context.Context) int {
			var n int
			if err := db.Conn(ctx).QueryRowContext(ctx, `SELECT COUNT(*) FROM kv`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		boom := errors.New("outer unit fails")
		err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			inner := db.WithTx(ctx, tx)
			if err := insert(inner, "a"); err != nil {
				return err
			}
			if n := count(inner); n != 1 {
				t.Errorf("inside the unit: %d rows, want 1 (its own write)", n)
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("InTx = %v, want the outer error", err)
		}
		if n := count(ctx); n != 0 {
			t.Fatalf("after the outer rollback: %d rows, want 0 (the joined write rolled back too)", n)
		}
		if err := db.InTxContext(ctx, func(ctx context.Context) error { return insert(ctx, "b") }); err != nil {
			t.Fatal(err)
		}
		if n := count(ctx); n != 1 {
			t.Fatalf("after the outer commit: %d rows, want 1", n)
		}
	})
}

// TestSQLiteSyncLevel: a database waits for the disk at commit unless
// opened with NoSync, as herald dev's are.
func TestSQLiteSyncLevel(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []sqldb.SQLiteOption
		want int
	}{
		{"default", nil, 1}, // NORMAL
		{"nosync", []sqldb.SQLiteOption{sqldb.NoSync()}, 0}, // OFF
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := sqldb.OpenSQLite(filepath.Join(t.TempDir(), "s.db"), tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var got int
			if err := db.QueryRowContext(context.Background(), `PRAGMA synchronous`).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("PRAGMA synchronous = %d, want %d", got, tc.want)
			}
		})
	}
}
