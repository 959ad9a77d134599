// Package adapters holds the notification service's adapters: the SQL store
// (SQLite by default, through sqldb; its methods join the transaction the
// context carries, see sqldb.DB.WithTx) and the delivery channels, [Log]
// and [Webhook].
package adapters

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/services/notification/app"
	"github.com/herald-events/herald/services/notification/domain"
)

// Store is the SQL implementation of app.Store.
type Store struct {
	db *sqldb.DB
}

var _ app.Store = (*Store)(nil)

// Migrations creates the notifications table. next_attempt_ms is a Unix
// time in milliseconds, so the dispatcher compares numbers.
func Migrations(d sqldb.Dialect) []sqldb.Migration {
	seq := "INTEGER PRIMARY KEY AUTOINCREMENT"
	if d == sqldb.Postgres {
		seq = "BIGSERIAL PRIMARY KEY"
	}
	return []sqldb.Migration{{ID: "0001_notification", SQL: []string{
		`CREATE TABLE IF NOT EXISTS notifications (
			seq ` + seq + `,
			notification_id TEXT NOT NULL UNIQUE,
			order_id TEXT NOT NULL,
			customer_id TEXT NOT NULL,
			kind INTEGER NOT NULL,
			text TEXT NOT NULL,
			created_at TEXT NOT NULL,
			status INTEGER NOT NULL,
			attempts INTEGER NOT NULL DEFAULT 0,
			last_error TEXT NOT NULL DEFAULT '',
			next_attempt_ms BIGINT NOT NULL,
			delivered_at TEXT NOT NULL DEFAULT '',
			UNIQUE (order_id, kind)
		)`,
		`CREATE INDEX IF NOT EXISTS notifications_due ON notifications (status, next_attempt_ms)`,
		`CREATE INDEX IF NOT EXISTS notifications_customer ON notifications (customer_id, seq)`,
	}}}
}

// New returns the store over db, which [Migrations] has migrated.
func New(db *sqldb.DB) *Store { return &Store{db: db} }

// AfterCommit runs fn once the transaction ctx carries commits (never if
// it rolls back), or at once when ctx carries none.
func (s *Store) AfterCommit(ctx context.Context, fn func()) {
	if tx, ok := s.db.TxFrom(ctx); ok {
		tx.OnCommit(fn)
		return
	}
	fn()
}

const timeLayout = time.RFC3339Nano

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeLayout)
}

func parseTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, _ := time.Parse(timeLayout, s)
	return t
}

// Insert stores a new notification unless the order has one of its kind.
func (s *Store) Insert(ctx context.Context, n *domain.Notification) (bool, error) {
	res, err := s.db.Conn(ctx).ExecContext(ctx, `INSERT INTO notifications (notification_id, order_id, customer_id, kind, text,
		created_at, status, attempts, last_error, next_attempt_ms, delivered_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (order_id, kind) DO NOTHING`,
		n.ID, n.OrderID, n.CustomerID, int(n.Kind), n.Text, formatTime(n.Created), int(n.Status), n.Attempts,
		n.LastError, n.NextAttempt.UnixMilli(), formatTime(n.Delivered))
	if err != nil {
		return false, fmt.Errorf("insert notification %s: %w", n.ID, err)
	}
	c, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("insert notification %s: %w", n.ID, err)
	}
	return c == 1, nil
}

const columns = `seq, notification_id, order_id, customer_id, kind, text, created_at, status, attempts, last_error,
	next_attempt_ms, delivered_at`

type scanner interface{ Scan(...any) error }

func scan(row scanner) (*domain.Notification, int64, error) {
	var (
		n                  domain.Notification
		seq, next          int64
		kind, status       int
		created, delivered string
	)
	if err := row.Scan(&seq, &n.ID, &n.OrderID, &n.CustomerID, &kind, &n.Text, &created, &status, &n.Attempts,
		&n.LastError, &next, &delivered); err != nil {
		return nil, 0, err
	}
	n.Kind, n.Status = domain.Kind(kind), domain.Status(status)
	n.Created, n.Delivered = parseTime(created), parseTime(delivered)
	n.NextAttempt = time.UnixMilli(next).UTC()
	return &n, seq, nil
}

func collect(rows *sql.Rows) ([]*domain.Notification, []int64, error) {
	defer rows.Close()
	var (
		out  []*domain.Notification
		seqs []int64
	)
	for rows.Next() {
		n, seq, err := scan(rows)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, n)
		seqs = append(seqs, seq)
	}
	return out, seqs, rows.Err()
}

// Claim takes up to limit due notifications, oldest first, and postpones
// them by lease. On PostgreSQL, rows another dispatcher is claiming are
// skipped; SQLite serialises writers.
func (s *Store) Claim(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*domain.Notification, error) {
	var out []*domain.Notification
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		q := `SELECT ` + columns + ` FROM notifications WHERE status = ? AND next_attempt_ms <= ? ORDER BY seq LIMIT ?`
		if tx.Dialect() == sqldb.Postgres {
			q += ` FOR UPDATE SKIP LOCKED`
		}
		rows, err := tx.QueryContext(ctx, q, int(domain.StatusPending), now.UnixMilli(), limit)
		if err != nil {
			return err
		}
		ns, seqs, err := collect(rows)
		if err != nil || len(ns) == 0 {
			return err
		}
		until := now.Add(lease)
		args := []any{until.UnixMilli()}
		for _, seq := range seqs {
			args = append(args, seq)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE notifications SET next_attempt_ms = ? WHERE seq IN (?`+
			strings.Repeat(", ?", len(seqs)-1)+`)`, args...); err != nil {
			return err
		}
		for _, n := range ns {
			n.NextAttempt = until.UTC().Truncate(time.Millisecond)
		}
		out = ns
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim due notifications: %w", err)
	}
	return out, nil
}

// Save stores the delivery state of a notification.
func (s *Store) Save(ctx context.Context, n *domain.Notification) error {
	_, err := s.db.Conn(ctx).ExecContext(ctx, `UPDATE notifications SET status = ?, attempts = ?, last_error = ?,
		next_attempt_ms = ?, delivered_at = ? WHERE notification_id = ?`,
		int(n.Status), n.Attempts, n.LastError, n.NextAttempt.UnixMilli(), formatTime(n.Delivered), n.ID)
	if err != nil {
		return fmt.Errorf("save notification %s: %w", n.ID, err)
	}
	return nil
}

// List pages through notifications, newest first.
func (s *Store) List(ctx context.Context, f app.Filter, cursor int64, limit int) ([]*domain.Notification, int64, error) {
	rows, err := s.db.Conn(ctx).QueryContext(ctx, `SELECT `+columns+` FROM notifications
		WHERE (? = 0 OR seq < ?) AND (? = '' OR customer_id = ?) AND (? = '' OR order_id = ?)
		ORDER BY seq DESC LIMIT ?`,
		cursor, cursor, f.CustomerID, f.CustomerID, f.OrderID, f.OrderID, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("list notifications: %w", err)
	}
	ns, seqs, err := collect(rows)
	if err != nil {
		return nil, 0, fmt.Errorf("list notifications: %w", err)
	}
	var last int64
	if len(seqs) > 0 {
		last = seqs[len(seqs)-1]
	}
	return ns, last, nil
}
