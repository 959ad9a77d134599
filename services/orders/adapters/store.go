// Package adapters persists orders in SQL (SQLite by default) through
// sqldb, next to the platform's outbox and inbox tables.
package adapters

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/herald-events/herald/platform/apperr"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/services/orders/app"
	"github.com/herald-events/herald/services/orders/domain"
)

// Store is the SQL implementation of app.Store.
type Store struct {
	db *sqldb.DB
}

var _ app.Store = (*Store)(nil)

// Migrations creates the orders tables.
func Migrations(d sqldb.Dialect) []sqldb.Migration {
	seq := "INTEGER PRIMARY KEY AUTOINCREMENT"
	if d == sqldb.Postgres {
		seq = "BIGSERIAL PRIMARY KEY"
	}
	return []sqldb.Migration{{ID: "0001_orders", SQL: []string{
		`CREATE TABLE IF NOT EXISTS orders (
			seq ` + seq + `,
			order_id TEXT NOT NULL UNIQUE,
			customer_id TEXT NOT NULL,
			request_id TEXT NOT NULL,
			request_hash TEXT NOT NULL,
			status INTEGER NOT NULL,
			rejection_reason TEXT NOT NULL,
			lines TEXT NOT NULL,
			total_currency TEXT NOT NULL,
			total_units BIGINT NOT NULL,
			total_nanos INTEGER NOT NULL,
			created_at TEXT NOT NULL,
			updated_at TEXT NOT NULL
		)`,
		`CREATE UNIQUE INDEX IF NOT EXISTS orders_request_id ON orders (request_id) WHERE request_id <> ''`,
		`CREATE INDEX IF NOT EXISTS orders_customer ON orders (customer_id, seq)`,
	}}, {ID: "0002_request_id_per_customer", SQL: []string{
		// Request ids are scoped per customer: two customers may use the
		// same one.
		`CREATE UNIQUE INDEX IF NOT EXISTS orders_customer_request_id ON orders (customer_id, request_id) WHERE request_id <> ''`,
		`DROP INDEX IF EXISTS orders_request_id`,
	}}, {ID: "0003_pending", SQL: []string{
		// The orders still waiting for the saga, which the door counts
		// (Store.Pending); the index holds those only.
		`CREATE INDEX IF NOT EXISTS orders_pending ON orders (seq) WHERE ` + pendingOnly(),
	}}}
}

// New returns the store over db, migrated with [Migrations]. Its methods
// run in the transaction the context carries (the platform's unit of work),
// or on their own outside one.
func New(db *sqldb.DB) *Store { return &Store{db: db} }

const timeLayout = time.RFC3339Nano

// pendingOnly is the condition of the orders_pending index, and of the
// count that reads it. The status is written into the statement, not
// bound: a planner uses a partial index only for a condition it can see
// implies the index's own, so both must read the same.
func pendingOnly() string { return "status = " + strconv.Itoa(int(domain.StatusPending)) }

// Pending counts the orders still PENDING, up to limit: past it the exact
// number does not matter, and the count stays as cheap as limit rows of
// an index.
func (s *Store) Pending(ctx context.Context, limit int) (int, error) {
	var n int
	err := s.db.Conn(ctx).QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM orders WHERE `+pendingOnly()+` LIMIT ?) p`,
		limit).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count pending orders: %w", err)
	}
	return n, nil
}

// Insert stores a new order and reports true, or stores nothing and
// reports false when its customer already has an order with its request
// id (the unique index decides, in the same statement: no lookup first).
func (s *Store) Insert(ctx context.Context, o *domain.Order, requestHash string) (bool, error) {
	lines, err := json.Marshal(o.Lines)
	if err != nil {
		return false, fmt.Errorf("insert order %s: %w", o.ID, err)
	}
	res, err := s.db.Conn(ctx).ExecContext(ctx, `INSERT INTO orders (order_id, customer_id, request_id, request_hash, status,
		rejection_reason, lines, total_currency, total_units, total_nanos, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (customer_id, request_id) WHERE request_id <> '' DO NOTHING`,
		o.ID, o.CustomerID, o.RequestID, requestHash, int(o.Status), o.RejectionReason, string(lines),
		o.Total.Currency, o.Total.Units, o.Total.Nanos, o.Created.Format(timeLayout), o.Updated.Format(timeLayout))
	if err != nil {
		return false, fmt.Errorf("insert order %s: %w", o.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("insert order %s: %w", o.ID, err)
	}
	return n == 1, nil
}

const columns = `seq, order_id, customer_id, request_id, request_hash, status, rejection_reason, lines,
	total_currency, total_units, total_nanos, created_at, updated_at`

type scanner interface{ Scan(...any) error }

func scanOrder(row scanner) (*domain.Order, int64, string, error) {
	var (
		o                domain.Order
		seq              int64
		status           int
		lines, hash      string
		created, updated string
	)
	err := row.Scan(&seq, &o.ID, &o.CustomerID, &o.RequestID, &hash, &status, &o.RejectionReason, &lines,
		&o.Total.Currency, &o.Total.Units, &o.Total.Nanos, &created, &updated)
	if err != nil {
		return nil, 0, "", err
	}
	o.Status = domain.Status(status)
	if err := json.Unmarshal([]byte(lines), &o.Lines); err != nil {
		return nil, 0, "", fmt.Errorf("order %s lines: %w", o.ID, err)
	}
	o.Created, _ = time.Parse(timeLayout, created)
	o.Updated, _ = time.Parse(timeLayout, updated)
	return &o, seq, hash, nil
}

// Get returns one order.
func (s *Store) Get(ctx context.Context, id string) (*domain.Order, error) {
	return s.get(ctx, s.db.Conn(ctx), id, false)
}

func (s *Store) get(ctx context.Context, q sqldb.Querier, id string, lock bool) (*domain.Order, error) {
	query := `SELECT ` + columns + ` FROM orders WHERE order_id = ?`
	if lock && s.db.Dialect() == sqldb.Postgres {
		// Status changes read then write: lock the row so a cancel and
		// inventory's answer cannot both win.
		query += ` FOR UPDATE`
	}
	o, _, _, err := scanOrder(q.QueryRowContext(ctx, query, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, apperr.NotFound("order %s not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("get order %s: %w", id, err)
	}
	return o, nil
}

// GetByRequestID returns the order a customer created with an idempotency
// key.
func (s *Store) GetByRequestID(ctx context.Context, customerID, requestID string) (*domain.Order, string, error) {
	// "request_id <> ''" restates the partial index's condition, so that
	// the planner may use the index with a bound parameter (a plain
	// "request_id = ?" scanned the whole table on SQLite).
	o, _, hash, err := scanOrder(s.db.Conn(ctx).QueryRowContext(ctx,
		`SELECT `+columns+` FROM orders WHERE customer_id = ? AND request_id = ? AND request_id <> ''`, customerID, requestID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("get order by request %s: %w", requestID, err)
	}
	return o, hash, nil
}

// Update changes one order: it reads the order (locked until the
// transaction ends, on PostgreSQL), lets fn change it, and stores its
// status fields, in the context's transaction or in one of its own. An
// error from fn stores nothing and is returned as is; an order that does
// not exist is an apperr NotFound error.
func (s *Store) Update(ctx context.Context, id string, fn func(*domain.Order) error) (*domain.Order, error) {
	var o *domain.Order
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		var err error
		if o, err = s.get(ctx, tx, id, true); err != nil {
			return err
		}
		if err := fn(o); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE orders SET status = ?, rejection_reason = ?, updated_at = ? WHERE order_id = ?`,
			int(o.Status), o.RejectionReason, o.Updated.Format(timeLayout), o.ID)
		if err != nil {
			return fmt.Errorf("update order %s: %w", o.ID, err)
		}
		return nil
	})
	return o, err
}

// List pages through orders, newest first.
func (s *Store) List(ctx context.Context, customerID string, cursor int64, limit int) ([]*domain.Order, []int64, error) {
	// Only the conditions that apply, so that a customer's page walks the
	// (customer_id, seq) index instead of filtering every row.
	var (
		where []string
		args  []any
	)
	if cursor != 0 {
		where, args = append(where, "seq < ?"), append(args, cursor)
	}
	if customerID != "" {
		where, args = append(where, "customer_id = ?"), append(args, customerID)
	}
	q := `SELECT ` + columns + ` FROM orders`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY seq DESC LIMIT ?`
	rows, err := s.db.Conn(ctx).QueryContext(ctx, q, append(args, limit)...)
	if err != nil {
		return nil, nil, fmt.Errorf("list orders: %w", err)
	}
	defer rows.Close()
	var (
		out     []*domain.Order
		cursors []int64
	)
	for rows.Next() {
		o, seq, _, err := scanOrder(rows)
		if err != nil {
			return nil, nil, fmt.Errorf("list orders: %w", err)
		}
		out = append(out, o)
		cursors = append(cursors, seq)
	}
	return out, cursors, rows.Err()
}
