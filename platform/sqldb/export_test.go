package sqldb

import "database/sql"

// Wrap adopts an open *sql.DB, for tests that need their own connection
// settings.
func Wrap(db *sql.DB, d Dialect) *DB { return newDB(db, d) }

// SharedTransactions counts the transactions InTxShared has begun for
// more than one call.
func (db *DB) SharedTransactions() int64 { return db.group.shared.Load() }

// QueuedCalls counts the calls of InTxShared waiting for a transaction.
func (db *DB) QueuedCalls() int {
	db.group.mu.Lock()
	defer db.group.mu.Unlock()
	return len(db.group.queue)
}
