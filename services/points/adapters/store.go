// Package adapters persists the points ledger in SQL (SQLite by default)
// through sqldb. Its methods join the transaction the context carries (the
// event's unit of work, see sqldb.DB.WithTx) and open their own otherwise.
package adapters

import (
	"context"
	"fmt"
	"time"

	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/services/points/app"
	"github.com/herald-events/herald/services/points/domain"
)

// Store is the SQL implementation of app.Store.
type Store struct {
	db *sqldb.DB
}

var _ app.Store = (*Store)(nil)

// Migrations creates the ledger table. The unique (order_id, kind) index is
// what makes a replayed award or reversal impossible even past the inbox.
func Migrations(d sqldb.Dialect) []sqldb.Migration {
	seq := "INTEGER PRIMARY KEY AUTOINCREMENT"
	if d == sqldb.Postgres {
		seq = "BIGSERIAL PRIMARY KEY"
	}
	return []sqldb.Migration{{ID: "0001_points", SQL: []string{
		`CREATE TABLE IF NOT EXISTS points_ledger (
			seq ` + seq + `,
			order_id TEXT NOT NULL,
			customer_id TEXT NOT NULL,
			kind INTEGER NOT NULL,
			points BIGINT NOT NULL,
			created_at TEXT NOT NULL,
			UNIQUE (order_id, kind)
		)`,
		`CREATE INDEX IF NOT EXISTS points_ledger_customer ON points_ledger (customer_id, seq)`,
	}}}
}

// New returns the store over db, which [Migrations] has migrated.
func New(db *sqldb.DB) *Store { return &Store{db: db} }

// Update decides, in one transaction, what to add to the entries of an
// order: fn gets the order's entries (locked where the database can) and
// returns the entry to add, or nil for none.
func (s *Store) Update(ctx context.Context, orderID string, fn func(existing []domain.Entry) (*domain.Entry, error)) error {
	return s.db.InTxContext(ctx, func(ctx context.Context) error {
		existing, err := s.Entries(ctx, orderID)
		if err != nil {
			return err
		}
		e, err := fn(existing)
		if err != nil || e == nil {
			return err
		}
		_, err = s.Insert(ctx, *e)
		return err
	})
}

const timeLayout = time.RFC3339Nano

type scanner interface{ Scan(...any) error }

// scanEntry reads an entry's columns and, given seq, its position after
// them.
func scanEntry(row scanner, seq ...any) (domain.Entry, error) {
	var (
		e       domain.Entry
		kind    int
		created string
	)
	if err := row.Scan(append([]any{&e.OrderID, &e.CustomerID, &kind, &e.Points, &created}, seq...)...); err != nil {
		return e, err
	}
	e.Kind = domain.Kind(kind)
	e.Created, _ = time.Parse(timeLayout, created)
	return e, nil
}

// Entries returns an order's entries; on PostgreSQL, inside a transaction,
// they stay locked until it ends, so an award and a reversal of one order
// are decided one after the other.
func (s *Store) Entries(ctx context.Context, orderID string) ([]domain.Entry, error) {
	q := `SELECT order_id, customer_id, kind, points, created_at FROM points_ledger WHERE order_id = ? ORDER BY seq`
	if s.db.Dialect() == sqldb.Postgres {
		q += ` FOR UPDATE`
	}
	rows, err := s.db.Conn(ctx).QueryContext(ctx, q, orderID)
	if err != nil {
		return nil, fmt.Errorf("entries of order %s: %w", orderID, err)
	}
	defer rows.Close()
	var out []domain.Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, fmt.Errorf("entries of order %s: %w", orderID, err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Insert adds an entry unless the order has one of that kind.
func (s *Store) Insert(ctx context.Context, e domain.Entry) (bool, error) {
	res, err := s.db.Conn(ctx).ExecContext(ctx, `INSERT INTO points_ledger (order_id, customer_id, kind, points, created_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (order_id, kind) DO NOTHING`,
		e.OrderID, e.CustomerID, int(e.Kind), e.Points, e.Created.UTC().Format(timeLayout))
	if err != nil {
		return false, fmt.Errorf("insert %s entry of order %s: %w", e.Kind, e.OrderID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("insert %s entry of order %s: %w", e.Kind, e.OrderID, err)
	}
	return n == 1, nil
}

// Ledger returns up to limit of a customer's entries after the cursor
// (0: from the first), oldest first, and the cursor of the last one.
func (s *Store) Ledger(ctx context.Context, customerID string, after int64, limit int) ([]domain.Entry, int64, error) {
	rows, err := s.db.Conn(ctx).QueryContext(ctx, `SELECT order_id, customer_id, kind, points, created_at, seq
		FROM points_ledger WHERE customer_id = ? AND seq > ? ORDER BY seq LIMIT ?`, customerID, after, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("ledger of %s: %w", customerID, err)
	}
	defer rows.Close()
	var (
		out  []domain.Entry
		last int64
	)
	for rows.Next() {
		e, err := scanEntry(rows, &last)
		if err != nil {
			return nil, 0, fmt.Errorf("ledger of %s: %w", customerID, err)
		}
		out = append(out, e)
	}
	return out, last, rows.Err()
}

// Balance sums all of a customer's entries.
func (s *Store) Balance(ctx context.Context, customerID string) (int64, error) {
	var sum int64
	if err := s.db.Conn(ctx).QueryRowContext(ctx, `SELECT COALESCE(SUM(points), 0) FROM points_ledger WHERE customer_id = ?`,
		customerID).Scan(&sum); err != nil {
		return 0, fmt.Errorf("balance of %s: %w", customerID, err)
	}
	return sum, nil
}
