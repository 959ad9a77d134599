package sqldb_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/herald-events/herald/platform/sqldb"
)

// TestSQLiteBusyIsTransient: a write that finds the file locked by another
// connection, once SQLite stops waiting (here at once), fails with a
// transient error, while a constraint violation does not.
func TestSQLiteBusyIsTransient(t *testing.T) {
	path := filepath.Join(t.TempDir(), "busy.db")
	open := func() *sql.DB {
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(0)&_pragma=journal_mode(WAL)&_txlock=immediate")
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
	ctx := context.Background()
	holder := open()
	if _, err := holder.ExecContext(ctx, `CREATE TABLE items (id INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	db := sqldb.Wrap(open(), sqldb.SQLite)
	if _, err := db.ExecContext(ctx, `INSERT INTO items (id) VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	wantTransient(t, "unique violation", func() error {
		_, err := db.ExecContext(ctx, `INSERT INTO items (id) VALUES (1)`)
		return err
	}(), false)

	lock, err := holder.BeginTx(ctx, nil) // BEGIN IMMEDIATE: takes the write lock
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Rollback() }()
	wantTransient(t, "transaction on a locked file", db.InTx(ctx, func(tx *sqldb.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO items (id) VALUES (2)`)
		return err
	}), true)
	wantTransient(t, "write on a locked file", func() error {
		_, err := db.ExecContext(ctx, `INSERT INTO items (id) VALUES (3)`)
		return err
	}(), true)
}
