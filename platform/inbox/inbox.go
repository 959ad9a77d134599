// Package inbox makes event handling idempotent.
//
// The platform's unit of work (see the module package) claims an event
// ([Claim], or [ClaimFirst] for a shared transaction) in the same
// [sqldb.Tx] as its effects.
// The first claim of a ce_id inserts a row and reports true; a redelivered
// event finds the row and reports false, so its effects are skipped. Because
// the claim commits or rolls back with the effects, an event is applied
// exactly once however often the bus delivers it.
//
// A claim is kept for a retention (see [Expire]): long enough that every
// redelivery the platform can cause (a Kafka transaction retried, an outbox
// batch published again after a crash) arrives while its claim is still
// there, and a replay of a topic from its earliest offset too when the
// retention is at least the topic's. A row per consumed event kept forever
// would grow the table, and its primary key, for as long as the service runs.
package inbox

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/herald-events/herald/platform/fault"
	"github.com/herald-events/herald/platform/observe"
	"github.com/herald-events/herald/platform/sqldb"
)

// timeLayout writes processed_at with a fixed width, so that the text
// sorts as the time does. Rows of earlier versions hold RFC 3339 with
// trailing zeros of the fraction cut, which sorts at most a second late
// against it: such a row is purged up to a second after its time.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

// Migrations creates the inbox table and the index the purge reads by.
func Migrations(sqldb.Dialect) []sqldb.Migration {
	return []sqldb.Migration{{ID: "0001_inbox", SQL: []string{
		`CREATE TABLE IF NOT EXISTS herald_inbox (
			event_id TEXT PRIMARY KEY,
			event_type TEXT NOT NULL,
			processed_at TEXT NOT NULL
		)`,
	}}, {ID: "0002_inbox_processed_at", SQL: []string{
		// Without it each purge would read the whole table. On an
		// existing large inbox the migration takes as long as building
		// the index, and holds claims back meanwhile.
		`CREATE INDEX IF NOT EXISTS herald_inbox_processed_at ON herald_inbox (processed_at)`,
	}}}
}

// Claim records eventID as processed in tx and reports whether this is the
// first time. When it returns false the caller must apply no effect.
func Claim(ctx context.Context, tx *sqldb.Tx, eventID, eventType string) (bool, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO herald_inbox (event_id, event_type, processed_at)
		VALUES (?, ?, ?) ON CONFLICT (event_id) DO NOTHING`,
		eventID, eventType, time.Now().UTC().Format(timeLayout))
	if err != nil {
		return false, fmt.Errorf("inbox claim %s: %w", eventID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("inbox claim %s: %w", eventID, err)
	}
	return n == 1, nil
}

// ClaimFirst is the [sqldb.Prelude] of a unit of work that applies an
// event once: its result is [Claim]'s, a bool. Passed to
// [sqldb.DB.InTxSharedAfter], the claims of a shared transaction's events
// are made before any of its calls runs, and on PostgreSQL in one
// statement for all of them, where each call's own claim was a round trip.
func ClaimFirst(eventID, eventType string) sqldb.Prelude {
	return sqldb.Prelude{Key: claimKey{}, Item: claim{eventID, eventType}, Run: claimAll}
}

type (
	claimKey struct{}
	claim    struct{ id, typ string }
)

// claimAll claims items (claims) in tx and reports, per item, whether it
// is the first claim of its event. Of two items with one event id, only the
// first can be.
func claimAll(ctx context.Context, tx *sqldb.Tx, items []any) ([]any, error) {
	out := make([]any, len(items))
	if len(items) == 1 || tx.Dialect() != sqldb.Postgres {
		// SQLite's statements cost no round trip: one each, as Claim.
		for i, it := range items {
			c := it.(claim)
			fresh, err := Claim(ctx, tx, c.id, c.typ)
			if err != nil {
				return nil, err
			}
			out[i] = fresh
		}
		return out, nil
	}
	ids, types := make([]string, len(items)), make([]string, len(items))
	for i, it := range items {
		c := it.(claim)
		ids[i], types[i] = c.id, c.typ
	}
	// In event id order: two transactions claiming the same events (a
	// redelivery handled twice at once) wait for each other in one order,
	// never in a cycle.
	rows, err := tx.QueryContext(ctx, `INSERT INTO herald_inbox (event_id, event_type, processed_at)
		SELECT e, t, ?::text FROM unnest(?::text[], ?::text[]) AS c(e, t) ORDER BY e
		ON CONFLICT (event_id) DO NOTHING RETURNING event_id`,
		time.Now().UTC().Format(timeLayout), ids, types)
	if err != nil {
		return nil, fmt.Errorf("inbox claim of %d events: %w", len(items), err)
	}
	defer rows.Close()
	fresh := make(map[string]bool, len(items))
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("inbox claim of %d events: %w", len(items), err)
		}
		fresh[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("inbox claim of %d events: %w", len(items), err)
	}
	for i, id := range ids {
		out[i] = fresh[id]
		fresh[id] = false // a second item of the same event is not first
	}
	return out, nil
}

// Seen reports whether eventID was processed.
func Seen(ctx context.Context, db *sqldb.DB, eventID string) (bool, error) {
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM herald_inbox WHERE event_id = ?`, eventID).Scan(&n); err != nil {
		return false, fmt.Errorf("inbox seen %s: %w", eventID, err)
	}
	return n > 0, nil
}

// Purge deletes the claims made before t, batch rows per statement (each
// its own short transaction, so that claims are never held back for long),
// and returns how many it deleted. After each full batch it waits as long
// as the batch took, so that a large backlog (the first purge after an
// upgrade) takes at most half of the database's time from the claims. An
// event whose claim is gone is applied again if it is delivered again.
func Purge(ctx context.Context, db *sqldb.DB, t time.Time, batch int) (int64, error) {
	if batch <= 0 {
		return 0, fmt.Errorf("inbox purge: batch %d, want at least 1", batch)
	}
	before := t.UTC().Format(timeLayout)
	// The rows are named by their physical address (SQLite's rowid,
	// PostgreSQL's ctid), found through the processed_at index. On
	// PostgreSQL "event_id IN (SELECT …)" is planned as a hash join over
	// the whole table: 200 ms a batch of 5,000 in a table of a million
	// rows, against 5 ms by ctid.
	q := `DELETE FROM herald_inbox WHERE rowid IN (
		SELECT rowid FROM herald_inbox WHERE processed_at < ? ORDER BY processed_at LIMIT ?)`
	if db.Dialect() == sqldb.Postgres {
		q = `DELETE FROM herald_inbox WHERE ctid = ANY(ARRAY(
			SELECT ctid FROM herald_inbox WHERE processed_at < ? ORDER BY processed_at LIMIT ?))`
	}
	var total int64
	for {
		start := time.Now()
		res, err := db.ExecContext(ctx, q, before, batch)
		if err != nil {
			return total, fmt.Errorf("inbox purge of claims before %s: %w", before, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("inbox purge of claims before %s: %w", before, err)
		}
		total += n
		if n < int64(batch) {
			return total, nil
		}
		pause := time.NewTimer(time.Since(start))
		select {
		case <-ctx.Done():
			pause.Stop()
			return total, fmt.Errorf("inbox purge of claims before %s: %w", before, ctx.Err())
		case <-pause.C:
		}
	}
}

// ExpireConfig configures [Expire].
type ExpireConfig struct {
	DB *sqldb.DB
	// Service names the inbox's service in logs and metrics.
	Service string
	// Retention is how long a claim is kept. Required.
	Retention time.Duration
	// Interval between purges; default a minute, or half the retention
	// when that is shorter.
	Interval time.Duration
	// Batch is the rows deleted per statement; default 5,000.
	Batch   int
	Logger  *slog.Logger
	Metrics *observe.Metrics
}

// Expire purges the claims older than cfg.Retention every cfg.Interval
// until ctx is done. A failing purge (the database down, say) is logged
// and tried again at the next interval; it never stops the caller.
func Expire(ctx context.Context, cfg ExpireConfig) error {
	if cfg.DB == nil || cfg.Retention <= 0 {
		return fmt.Errorf("inbox expiry of %s: a database and a positive retention are required", cfg.Service)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = min(time.Minute, cfg.Retention/2)
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 5000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var failing fault.Streak
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		n, err := Purge(ctx, cfg.DB, time.Now().Add(-cfg.Retention), cfg.Batch)
		cfg.Metrics.InboxPurged(cfg.Service, n)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			failing.Fail(ctx, cfg.Logger, "inbox purge failing; trying again each interval", "inbox purge still failing", err, "interval", cfg.Interval)
		default:
			failing.Recovered(cfg.Logger, "inbox purge recovered")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
