// Package adapters persists stock levels and reservations in SQL (SQLite by
// default) through sqldb, next to the service's outbox and inbox tables.
package adapters

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/services/inventory/app"
	"github.com/herald-events/herald/services/inventory/domain"
)

// Store is the SQL implementation of app.Store.
type Store struct {
	db *sqldb.DB
}

var _ app.Store = (*Store)(nil)

// Migrations creates the inventory tables.
func Migrations(sqldb.Dialect) []sqldb.Migration {
	return []sqldb.Migration{{ID: "0001_inventory", SQL: []string{
		`CREATE TABLE IF NOT EXISTS stock (
			sku TEXT PRIMARY KEY,
			quantity BIGINT NOT NULL CHECK (quantity >= 0)
		)`,
		`CREATE TABLE IF NOT EXISTS reservations (
			order_id TEXT NOT NULL,
			sku TEXT NOT NULL,
			quantity BIGINT NOT NULL,
			released INTEGER NOT NULL DEFAULT 0,
			PRIMARY KEY (order_id, sku)
		)`,
	}}, {ID: "0002_inventory_reservations_by_sku", SQL: []string{
		// What open orders hold of a SKU, summed by SetStock.
		`CREATE INDEX IF NOT EXISTS reservations_sku ON reservations (sku, released)`,
	}}}
}

// New returns the store over db, migrated with [Migrations]. Its methods
// run in the transaction the context carries (the platform's unit of work),
// or on their own outside one.
func New(db *sqldb.DB) *Store { return &Store{db: db} }

// SetStock upserts a stock level if check accepts what open orders hold
// of the SKU. On PostgreSQL the SKU's row stays locked from the sum to the
// write, as a deduction locks it, so no order takes stock in between.
func (s *Store) SetStock(ctx context.Context, sku string, quantity int64, check func(held int64) error) error {
	return s.db.InTxContext(ctx, func(ctx context.Context) error {
		if s.db.Dialect() == sqldb.Postgres {
			if _, err := s.db.Conn(ctx).ExecContext(ctx, `SELECT 1 FROM stock WHERE sku = ? FOR UPDATE`, sku); err != nil {
				return fmt.Errorf("set stock %s: %w", sku, err)
			}
		}
		var held int64
		if err := s.db.Conn(ctx).QueryRowContext(ctx, `SELECT COALESCE(SUM(quantity), 0) FROM reservations WHERE sku = ? AND released = 0`,
			sku).Scan(&held); err != nil {
			return fmt.Errorf("set stock %s: held by orders: %w", sku, err)
		}
		if err := check(held); err != nil {
			return err
		}
		if _, err := s.db.Conn(ctx).ExecContext(ctx, `INSERT INTO stock (sku, quantity) VALUES (?, ?)
			ON CONFLICT (sku) DO UPDATE SET quantity = excluded.quantity`, sku, quantity); err != nil {
			return fmt.Errorf("set stock %s: %w", sku, err)
		}
		return nil
	})
}

// Stock reads the levels of skus; unknown SKUs are absent from the map.
func (s *Store) Stock(ctx context.Context, skus []string) (map[string]int64, error) {
	out := make(map[string]int64, len(skus))
	if len(skus) == 0 {
		return out, nil
	}
	args := make([]any, len(skus))
	for i, sku := range skus {
		args[i] = sku
	}
	q := `SELECT sku, quantity FROM stock WHERE sku IN (?` + strings.Repeat(", ?", len(skus)-1) + `) ORDER BY sku`
	if s.db.Dialect() == sqldb.Postgres {
		// Rows are locked in the order they are read: by SKU, as
		// Release updates them, so two orders of the same SKUs never
		// wait for each other in a cycle (a deadlock, 40P01).
		q += ` FOR UPDATE`
	}
	rows, err := s.db.Conn(ctx).QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read stock: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			sku string
			n   int64
		)
		if err := rows.Scan(&sku, &n); err != nil {
			return nil, fmt.Errorf("read stock: %w", err)
		}
		out[sku] = n
	}
	return out, rows.Err()
}

// Take subtracts quantity when available.
func (s *Store) Take(ctx context.Context, sku string, quantity int64) error {
	res, err := s.db.Conn(ctx).ExecContext(ctx, `UPDATE stock SET quantity = quantity - ? WHERE sku = ? AND quantity >= ?`, quantity, sku, quantity)
	if err != nil {
		return fmt.Errorf("take %d of %s: %w", quantity, sku, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("take %d of %s: %w", quantity, sku, app.ErrConflict)
	}
	return nil
}

// Give adds quantity back, unless the level would pass domain.MaxStock:
// the bound is in the statement, so SQLite never turns the column to REAL
// and PostgreSQL never raises out of range.
func (s *Store) Give(ctx context.Context, sku string, quantity int64) error {
	if quantity < 0 {
		return fmt.Errorf("give %d of %s: negative quantity", quantity, sku)
	}
	res, err := s.db.Conn(ctx).ExecContext(ctx, `UPDATE stock SET quantity = quantity + ? WHERE sku = ? AND quantity <= ?`,
		quantity, sku, domain.MaxStock-quantity)
	if err != nil {
		return fmt.Errorf("give %d of %s: %w", quantity, sku, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("give %d of %s: %w", quantity, sku, err)
	} else if n == 1 {
		return nil
	}
	// No row changed: the SKU is gone (nothing to give back to, as
	// before) or the level is too high.
	var have int64
	switch err := s.db.Conn(ctx).QueryRowContext(ctx, `SELECT quantity FROM stock WHERE sku = ?`, sku).Scan(&have); {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("give %d of %s: %w", quantity, sku, err)
	}
	return fmt.Errorf("give %d of %s to a level of %d: %w", quantity, sku, have, app.ErrOverflow)
}

// Reserve records an order's deducted lines.
func (s *Store) Reserve(ctx context.Context, orderID string, lines []domain.Line) error {
	for _, l := range lines {
		if _, err := s.db.Conn(ctx).ExecContext(ctx, `INSERT INTO reservations (order_id, sku, quantity) VALUES (?, ?, ?)`,
			orderID, l.SKU, l.Quantity); err != nil {
			return fmt.Errorf("reserve %s for %s: %w", l.SKU, orderID, err)
		}
	}
	return nil
}

// Reserved returns the lines an order still holds and whether it ever
// reserved anything.
func (s *Store) Reserved(ctx context.Context, orderID string) ([]domain.Line, bool, error) {
	rows, err := s.db.Conn(ctx).QueryContext(ctx, `SELECT sku, quantity, released FROM reservations WHERE order_id = ? ORDER BY sku`, orderID)
	if err != nil {
		return nil, false, fmt.Errorf("reservations of %s: %w", orderID, err)
	}
	defer rows.Close()
	var (
		held []domain.Line
		seen bool
	)
	for rows.Next() {
		var (
			l        domain.Line
			released int
		)
		if err := rows.Scan(&l.SKU, &l.Quantity, &released); err != nil {
			return nil, false, fmt.Errorf("reservations of %s: %w", orderID, err)
		}
		seen = true
		if released == 0 {
			held = append(held, l)
		}
	}
	return held, seen, rows.Err()
}

// Release marks an order's reservations returned.
func (s *Store) Release(ctx context.Context, orderID string) error {
	if _, err := s.db.Conn(ctx).ExecContext(ctx, `UPDATE reservations SET released = 1 WHERE order_id = ?`, orderID); err != nil {
		return fmt.Errorf("release %s: %w", orderID, err)
	}
	return nil
}
