package sqldb_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
)

// TestMigrateTogether: instances of a service that start at the same
// moment on one fresh database, each with its own connections, all start,
// and each migration is applied once. On PostgreSQL they used to create
// the same tables at once, and all but one failed.
func TestMigrateTogether(t *testing.T) {
	const instances = 8
	ms := []sqldb.Migration{
		{ID: "0001", SQL: []string{`CREATE TABLE IF NOT EXISTS applied (id TEXT NOT NULL)`, `INSERT INTO applied (id) VALUES ('0001')`}},
		{ID: "0002", SQL: []string{`CREATE TABLE IF NOT EXISTS more (id TEXT NOT NULL)`, `INSERT INTO applied (id) VALUES ('0002')`}},
	}
	// run opens the instances' databases (at the same moment if
	// together) and migrates them at the same moment.
	run := func(t *testing.T, together bool, open func() (*sqldb.DB, error)) {
		dbs := make([]*sqldb.DB, instances)
		errs := make([]error, instances)
		if !together {
			for i := range dbs {
				if dbs[i], errs[i] = open(); errs[i] != nil {
					t.Fatal(errs[i])
				}
			}
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range instances {
			wg.Go(func() {
				<-start
				if together {
					if dbs[i], errs[i] = open(); errs[i] != nil {
						return
					}
				}
				errs[i] = dbs[i].Migrate(context.Background(), "svc", ms)
			})
		}
		close(start)
		wg.Wait()
		for i, db := range dbs {
			if db != nil {
				t.Cleanup(func() { db.Close() })
			}
			if errs[i] != nil {
				t.Errorf("instance %d: %v", i, errs[i])
			}
		}
		if t.Failed() {
			return
		}
		var n int
		if err := dbs[0].QueryRowContext(context.Background(), `SELECT COUNT(*) FROM applied`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != len(ms) {
			t.Errorf("%d migrations applied by %d instances, want each once (%d)", n, instances, len(ms))
		}
	}
	t.Run("sqlite", func(t *testing.T) {
		// One process per SQLite file is the embedded default; several
		// may still migrate one file, one after the other.
		path := filepath.Join(t.TempDir(), "test.db")
		run(t, false, func() (*sqldb.DB, error) { return sqldb.OpenSQLite(path) })
	})
	t.Run("postgres", func(t *testing.T) {
		url, schema, ok := sqldbtest.FreshPostgres(t)
		if !ok {
			t.Skip(sqldbtest.EnvURL + " does not name a PostgreSQL database")
		}
		run(t, true, func() (*sqldb.DB, error) { return sqldb.OpenPostgres(context.Background(), url, schema) })
	})
}
