package sqldb_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/sqldb"
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
