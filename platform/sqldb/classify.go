package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"

	"github.com/herald-events/herald/platform/fault"
)

// Dependency is the name transient database errors carry (see
// [fault.DependencyOf]).
const Dependency = "database"

// SQLite primary result codes (the low byte of an extended code).
const (
	sqliteBusy   = 5
	sqliteLocked = 6
)

// classify marks err with [fault.Transient] when it means that the database
// cannot be reached now, with [fault.Conflict] when it asks for the work to
// be run again (a deadlock, a serialization failure), and returns it
// unchanged otherwise. A cancelled context, or the caller's own deadline,
// is never transient: the caller gave up.
func classify(err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// The caller's budget ran out, unless a dial or an I/O timed out
		// on the way (pgx wraps those in a ConnectError).
		var ce *pgconn.ConnectError
		if !errors.As(err, &ce) {
			return err
		}
	}
	if conflict(err) {
		return fault.Conflict(Dependency, err)
	}
	if transient(err) {
		return fault.Transient(Dependency, err)
	}
	return err
}

// conflict reports whether PostgreSQL refused err's transaction because
// concurrent ones raced it: a serialization failure or a deadlock, which
// the same work run again resolves.
func conflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

func transient(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// The server answered: only the codes that mean "lost connection",
		// "shutting down" or "too many connections" are transient ("run
		// the transaction again" is a conflict, see conflict).
		switch pgErr.Code {
		case "57P01", // admin_shutdown (pg_terminate_backend, a fast stop)
			"57P02", // crash_shutdown
			"57P03", // cannot_connect_now (starting up, shutting down)
			"53300": // too_many_connections
			return true
		}
		return len(pgErr.Code) == 5 && pgErr.Code[:2] == "08" // connection exception
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		code := se.Code() & 0xff
		return code == sqliteBusy || code == sqliteLocked
	}
	// A connection the driver closed under the caller (its socket went
	// away) or that database/sql already gave up.
	if errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) {
		return true
	}
	// Network errors: refused, reset, unexpected EOF, I/O timeouts.
	return fault.IsTransient(err)
}

// isUniqueViolation reports whether PostgreSQL refused err's statement
// for a duplicate key (SQLSTATE 23505).
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}
