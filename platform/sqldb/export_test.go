package sqldb

import "database/sql"

// Wrap adopts an open *sql.DB, for tests that need their own connection
// settings.
func Wrap(db *sql.DB, d Dialect) *DB { return newDB(db, d) }
