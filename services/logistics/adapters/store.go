// Package adapters persists shipments in SQL (SQLite by default) through
// sqldb. Its methods join the transaction the context carries (the event's
// unit of work, see sqldb.DB.WithTx) and open their own otherwise.
package adapters

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/services/logistics/app"
	"github.com/herald-events/herald/services/logistics/domain"
)

// Store is the SQL implementation of app.Store.
type Store struct {
	db *sqldb.DB
}

var _ app.Store = (*Store)(nil)

// Migrations creates the shipments table.
func Migrations(sqldb.Dialect) []sqldb.Migration {
	return []sqldb.Migration{{ID: "0001_logistics", SQL: []string{
		`CREATE TABLE IF NOT EXISTS shipments (
			order_id TEXT PRIMARY KEY,
			status INTEGER NOT NULL,
			lines TEXT NOT NULL,
			created_at TEXT NOT NULL,
			updated_at TEXT NOT NULL
		)`,
	}}}
}

// New returns the store over db, which [Migrations] has migrated.
func New(db *sqldb.DB) *Store { return &Store{db: db} }

// Update changes the shipment of an order in one transaction: fn gets the
// shipment (nil when the order has none; locked where the database can)
// and returns the one to store, or nil to change nothing. A new shipment
// is inserted, an existing one saved.
func (s *Store) Update(ctx context.Context, orderID string, fn func(cur *domain.Shipment) (*domain.Shipment, error)) error {
	return s.db.InTxContext(ctx, func(ctx context.Context) error {
		cur, err := s.Get(ctx, orderID)
		if err != nil {
			return err
		}
		next, err := fn(cur)
		switch {
		case err != nil || next == nil:
			return err
		case cur == nil:
			return s.Insert(ctx, next)
		}
		return s.Save(ctx, next)
	})
}

const timeLayout = time.RFC3339Nano

type line struct {
	SKU      string `json:"sku"`
	Quantity int32  `json:"quantity"`
}

// Get returns an order's shipment or nil. It runs in a transaction (its
// own, or the one ctx carries) so that an outage is reported as such; on
// PostgreSQL the row stays locked until that transaction ends. Two
// handlers that both find no row race on the primary key in Insert, and
// the loser is retried.
func (s *Store) Get(ctx context.Context, orderID string) (*domain.Shipment, error) {
	q := `SELECT order_id, status, lines, created_at, updated_at FROM shipments WHERE order_id = ?`
	if s.db.Dialect() == sqldb.Postgres {
		q += ` FOR UPDATE`
	}
	var (
		sh               domain.Shipment
		status           int
		raw              string
		created, updated string
	)
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		return tx.QueryRowContext(ctx, q, orderID).Scan(&sh.OrderID, &status, &raw, &created, &updated)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get shipment %s: %w", orderID, err)
	}
	var ls []line
	if err := json.Unmarshal([]byte(raw), &ls); err != nil {
		return nil, fmt.Errorf("shipment %s lines: %w", orderID, err)
	}
	for _, l := range ls {
		sh.Lines = append(sh.Lines, domain.Line{SKU: l.SKU, Quantity: l.Quantity})
	}
	sh.Status = domain.Status(status)
	sh.Created, _ = time.Parse(timeLayout, created)
	sh.Updated, _ = time.Parse(timeLayout, updated)
	return &sh, nil
}

// Insert stores a new shipment; it fails when the order has one.
func (s *Store) Insert(ctx context.Context, sh *domain.Shipment) error {
	ls := make([]line, 0, len(sh.Lines))
	for _, l := range sh.Lines {
		ls = append(ls, line{SKU: l.SKU, Quantity: l.Quantity})
	}
	raw, err := json.Marshal(ls)
	if err != nil {
		return fmt.Errorf("insert shipment %s: %w", sh.OrderID, err)
	}
	_, err = s.db.Conn(ctx).ExecContext(ctx, `INSERT INTO shipments (order_id, status, lines, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`,
		sh.OrderID, int(sh.Status), string(raw), sh.Created.UTC().Format(timeLayout), sh.Updated.UTC().Format(timeLayout))
	if err != nil {
		return fmt.Errorf("insert shipment %s: %w", sh.OrderID, err)
	}
	return nil
}

// Save stores the status of an existing shipment; it fails when the order
// has none.
func (s *Store) Save(ctx context.Context, sh *domain.Shipment) error {
	res, err := s.db.Conn(ctx).ExecContext(ctx, `UPDATE shipments SET status = ?, updated_at = ? WHERE order_id = ?`,
		int(sh.Status), sh.Updated.UTC().Format(timeLayout), sh.OrderID)
	if err != nil {
		return fmt.Errorf("update shipment %s: %w", sh.OrderID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("update shipment %s: %d rows, %v", sh.OrderID, n, err)
	}
	return nil
}
