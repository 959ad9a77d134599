package sqldb_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/fault"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
)

// openPostgresPair opens the real PostgreSQL twice on one fresh schema: once
// through a proxy the test can cut, once directly.
func openPostgresPair(t *testing.T) (*sqldbtest.Proxy, *sqldb.DB, *sqldb.DB) {
	t.Helper()
	raw, schema, ok := sqldbtest.FreshPostgres(t)
	if !ok {
		t.Skip(sqldbtest.EnvURL + " does not name a PostgreSQL database")
	}
	ctx := context.Background()
	direct, err := sqldb.OpenPostgres(ctx, raw, schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = direct.Close() })
	proxy, proxied := sqldbtest.NewProxy(t, raw)
	db, err := sqldb.OpenPostgres(ctx, proxied, schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.ExecContext(ctx, `CREATE TABLE items (id INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	return proxy, db, direct
}

func wantTransient(t *testing.T, op string, err error, want bool) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", op)
	}
	if got := fault.IsTransient(err); got != want {
		t.Fatalf("%s: IsTransient(%v) = %v, want %v", op, err, got, want)
	}
	if want && fault.DependencyOf(err) != sqldb.Dependency {
		t.Fatalf("%s: dependency %q, want %q", op, fault.DependencyOf(err), sqldb.Dependency)
	}
}

// TestPostgresOutageIsTransient cuts the network between the pool and a
// real PostgreSQL: every operation fails with a transient error naming the
// database, and works again once the network is back. Errors of the
// statement itself stay permanent.
func TestPostgresOutageIsTransient(t *testing.T) {
	proxy, db, _ := openPostgresPair(t)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `INSERT INTO items (id) VALUES (1)`); err != nil {
		t.Fatal(err)
	}

	t.Run("statement errors are not transient", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			run  func() error
		}{
			{"unique violation", func() error {
				_, err := db.ExecContext(ctx, `INSERT INTO items (id) VALUES (1)`)
				return err
			}},
			{"unique violation in a transaction", func() error {
				return db.InTx(ctx, func(tx *sqldb.Tx) error {
					_, err := tx.ExecContext(ctx, `INSERT INTO items (id) VALUES (1)`)
					return err
				})
			}},
			{"syntax error", func() error {
				_, err := db.QueryContext(ctx, `SELEC id FROM items`)
				return err
			}},
			{"cancelled", func() error {
				cctx, cancel := context.WithCancel(ctx)
				cancel()
				return db.Ping(cctx)
			}},
		} {
			t.Run(tc.name, func(t *testing.T) { wantTransient(t, tc.name, tc.run(), false) })
		}
	})

	t.Run("cut", func(t *testing.T) {
		proxy.Cut()
		defer proxy.Restore()
		for _, tc := range []struct {
			name string
			run  func(context.Context) error
		}{
			{"ping", db.Ping},
			{"exec", func(ctx context.Context) error {
				_, err := db.ExecContext(ctx, `INSERT INTO items (id) VALUES (2)`)
				return err
			}},
			{"query", func(ctx context.Context) error {
				rows, err := db.QueryContext(ctx, `SELECT id FROM items`)
				if err == nil {
					_ = rows.Close()
				}
				return err
			}},
			{"transaction", func(ctx context.Context) error {
				return db.InTx(ctx, func(tx *sqldb.Tx) error {
					var n int
					return tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM items`).Scan(&n)
				})
			}},
			{"migrate", func(ctx context.Context) error {
				return db.Migrate(ctx, "test", []sqldb.Migration{{ID: "0001", SQL: []string{`CREATE TABLE more (id INTEGER)`}}})
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				wantTransient(t, tc.name, tc.run(cctx), true)
			})
		}
	})

	t.Run("restored", func(t *testing.T) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := db.Ping(ctx)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("database still unreachable after the proxy was restored: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO items (id) VALUES (3)`); err != nil {
			t.Fatalf("insert after recovery: %v", err)
		}
		var n int
		if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			return tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM items`).Scan(&n)
		}); err != nil || n != 2 {
			t.Fatalf("count after recovery = %d, %v; want 2", n, err)
		}
	})
}

// TestPostgresTerminatedBackendIsTransient: a session ended by
// pg_terminate_backend (SQLSTATE 57P01, what a fast shutdown sends) fails
// its transaction with a transient error.
func TestPostgresTerminatedBackendIsTransient(t *testing.T) {
	_, db, direct := openPostgresPair(t)
	ctx := context.Background()
	err := db.InTx(ctx, func(tx *sqldb.Tx) error {
		var pid int
		if err := tx.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			return err
		}
		var ok bool
		if err := direct.InTx(ctx, func(dtx *sqldb.Tx) error {
			return dtx.QueryRowContext(ctx, `SELECT pg_terminate_backend(?)`, pid).Scan(&ok)
		}); err != nil || !ok {
			return errors.Join(errors.New("terminate failed"), err)
		}
		// The server closes the session as it terminates it; give it the
		// moment it needs.
		time.Sleep(100 * time.Millisecond)
		_, err := tx.ExecContext(ctx, `INSERT INTO items (id) VALUES (7)`)
		return err
	})
	wantTransient(t, "statement on a terminated session", err, true)
	t.Logf("terminated session: %v", err)
	// The pool drops the dead connection; the next call works.
	if err := db.Ping(ctx); err != nil {
		t.Fatalf("ping after the terminated session: %v", err)
	}
}
