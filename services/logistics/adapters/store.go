// Package adapters persists shipments in SQL (SQLite by default) through
// sqldb, next to the service's inbox table.
package adapters

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/herald-events/herald/platform/inbox"
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

// Open migrates db (shipments and inbox tables) and returns the store. The
// service publishes nothing, so it has no outbox table.
func Open(ctx context.Context, db *sqldb.DB) (*Store, error) {
	var ms []sqldb.Migration
	ms = append(ms, Migrations(db.Dialect())...)
	ms = append(ms, inbox.Migrations(db.Dialect())...)
	if err := db.Migrate(ctx, "logistics", ms); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// InTx runs fn in a transaction.
func (s *Store) InTx(ctx context.Context, fn func(tx *sqldb.Tx) error) error {
	return s.db.InTx(ctx, fn)
}

const timeLayout = time.RFC3339Nano

type line struct {
	SKU      string `json:"sku"`
	Quantity int32  `json:"quantity"`
}

// Get returns an order's shipment or nil. On PostgreSQL the row stays
// locked until tx ends; two handlers that both find no row race on the
// primary key in Insert, and the loser is retried.
func (s *Store) Get(ctx context.Context, tx *sqldb.Tx, orderID string) (*domain.Shipment, error) {
	q := `SELECT order_id, status, lines, created_at, updated_at FROM shipments WHERE order_id = ?`
	if tx.Dialect() == sqldb.Postgres {
		q += ` FOR UPDATE`
	}
	var (
		sh               domain.Shipment
		status           int
		raw              string
		created, updated string
	)
	err := tx.QueryRowContext(ctx, q, orderID).Scan(&sh.OrderID, &status, &raw, &created, &updated)
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

// Insert stores a new shipment.
func (s *Store) Insert(ctx context.Context, tx *sqldb.Tx, sh *domain.Shipment) error {
	ls := make([]line, 0, len(sh.Lines))
	for _, l := range sh.Lines {
		ls = append(ls, line{SKU: l.SKU, Quantity: l.Quantity})
	}
	raw, err := json.Marshal(ls)
	if err != nil {
		return fmt.Errorf("insert shipment %s: %w", sh.OrderID, err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO shipments (order_id, status, lines, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`,
		sh.OrderID, int(sh.Status), string(raw), sh.Created.UTC().Format(timeLayout), sh.Updated.UTC().Format(timeLayout))
	if err != nil {
		return fmt.Errorf("insert shipment %s: %w", sh.OrderID, err)
	}
	return nil
}

// Update stores the status of a shipment.
func (s *Store) Update(ctx context.Context, tx *sqldb.Tx, sh *domain.Shipment) error {
	res, err := tx.ExecContext(ctx, `UPDATE shipments SET status = ?, updated_at = ? WHERE order_id = ?`,
		int(sh.Status), sh.Updated.UTC().Format(timeLayout), sh.OrderID)
	if err != nil {
		return fmt.Errorf("update shipment %s: %w", sh.OrderID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("update shipment %s: %d rows, %v", sh.OrderID, n, err)
	}
	return nil
}
