// Package sqldbtest runs a test against every database herald supports:
// SQLite always, and PostgreSQL when HERALD_DATABASE_URL names one. Each
// run gets an empty database (a temp file, or a fresh schema), so one
// contract suite proves that both stores behave the same.
package sqldbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-events/herald/platform/sqldb"
)

// EnvURL is the variable naming a PostgreSQL database for tests.
const EnvURL = "HERALD_DATABASE_URL"

// Each runs fn as a subtest per database: "sqlite", and "postgres" when
// HERALD_DATABASE_URL is set to a postgres:// URL.
func Each(t *testing.T, fn func(t *testing.T, db *sqldb.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		db, err := sqldb.OpenSQLite(filepath.Join(t.TempDir(), "test.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		fn(t, db)
	})
	if !strings.HasPrefix(os.Getenv(EnvURL), "postgres") {
		return
	}
	t.Run("postgres", func(t *testing.T) {
		url, schema, _ := FreshPostgres(t)
		db, err := sqldb.OpenPostgres(context.Background(), url, schema)
		if err != nil {
			t.Fatalf("postgres: %v", err)
		}
		t.Cleanup(func() { db.Close() })
		fn(t, db)
	})
}

// FreshPostgres returns the URL of the PostgreSQL database that
// HERALD_DATABASE_URL names and the name of a new schema for t, which is
// dropped when t ends; ok is false when the variable names none. For tests
// that open the schema more than once.
func FreshPostgres(t testing.TB) (url, schema string, ok bool) {
	t.Helper()
	url = os.Getenv(EnvURL)
	if !strings.HasPrefix(url, "postgres") {
		return "", "", false
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema = "test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		db, err := sqldb.OpenPostgres(context.Background(), url, schema)
		if err != nil {
			return
		}
		_, _ = db.ExecContext(context.Background(), `DROP SCHEMA `+schema+` CASCADE`)
		db.Close()
	})
	return url, schema, true
}

// Postgres opens a fresh schema (see FreshPostgres) for t, closed when t
// ends, and skips t when HERALD_DATABASE_URL names no PostgreSQL database.
func Postgres(t testing.TB) *sqldb.DB {
	t.Helper()
	url, schema, ok := FreshPostgres(t)
	if !ok {
		t.Skip(EnvURL + " does not name a PostgreSQL database")
	}
	db, err := sqldb.OpenPostgres(context.Background(), url, schema)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// HeldLocks returns which of names (of sqldb.Prelude.Locks, as the
// transaction took them) q's PostgreSQL session holds as advisory locks, in
// the order of names. q is the transaction to look from.
func HeldLocks(ctx context.Context, q sqldb.Querier, names ...string) ([]string, error) {
	keys := make([]int64, len(names))
	for i, n := range names {
		keys[i] = sqldb.LockKey(n)
	}
	rows, err := q.QueryContext(ctx, `SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks
		WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted AND objsubid = 1
		AND ((classid::bigint << 32) | objid::bigint) = ANY(?::bigint[])`, keys)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	held := map[int64]bool{}
	for rows.Next() {
		var k int64
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		held[k] = true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var out []string
	for i, n := range names {
		if held[keys[i]] {
			out = append(out, n)
		}
	}
	return out, nil
}
