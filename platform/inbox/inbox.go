// Package inbox makes event handling idempotent.
//
// The platform's unit of work (see the module package) calls [Claim] in the
// same [sqldb.Tx] as the effects of an event.
// The first claim of a ce_id inserts a row and reports true; a redelivered
// event finds the row and reports false, so its effects are skipped. Because
// the claim commits or rolls back with the effects, an event is applied
// exactly once however often the bus delivers it.
package inbox

import (
	"context"
	"fmt"
	"time"

	"github.com/herald-events/herald/platform/sqldb"
)

// Migrations creates the inbox table.
func Migrations(sqldb.Dialect) []sqldb.Migration {
	return []sqldb.Migration{{ID: "0001_inbox", SQL: []string{
		`CREATE TABLE IF NOT EXISTS herald_inbox (
			event_id TEXT PRIMARY KEY,
			event_type TEXT NOT NULL,
			processed_at TEXT NOT NULL
		)`,
	}}}
}

// Claim records eventID as processed in tx and reports whether this is the
// first time. When it returns false the caller must apply no effect.
func Claim(ctx context.Context, tx *sqldb.Tx, eventID, eventType string) (bool, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO herald_inbox (event_id, event_type, processed_at)
		VALUES (?, ?, ?) ON CONFLICT (event_id) DO NOTHING`,
		eventID, eventType, time.Now().UTC().Format(time.RFC3339Nano))
	if err != nil {
		return false, fmt.Errorf("inbox claim %s: %w", eventID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("inbox claim %s: %w", eventID, err)
	}
	return n == 1, nil
}

// Seen reports whether eventID was processed.
func Seen(ctx context.Context, db *sqldb.DB, eventID string) (bool, error) {
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM herald_inbox WHERE event_id = ?`, eventID).Scan(&n); err != nil {
		return false, fmt.Errorf("inbox seen %s: %w", eventID, err)
	}
	return n > 0, nil
}
