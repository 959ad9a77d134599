// Package app holds the logistics use cases: reserve an order's shipment
// when its stock was deducted, release it when the order is cancelled (each
// inside the transaction of the event, after its inbox claim), and read a
// shipment.
package app

import (
	"context"
	"time"

	"github.com/herald-events/herald/platform/apperr"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/services/logistics/domain"
)

// MaxIDLength bounds an order id in a request.
const MaxIDLength = 128

// Store persists shipments. Methods taking a tx run inside it.
type Store interface {
	InTx(ctx context.Context, fn func(tx *sqldb.Tx) error) error
	// Get returns the shipment of an order, or nil when there is none,
	// locking it for the rest of tx where the database can.
	Get(ctx context.Context, tx *sqldb.Tx, orderID string) (*domain.Shipment, error)
	// Insert stores a new shipment; it fails if the order has one (a
	// concurrent handler won: the caller's transaction is retried).
	Insert(ctx context.Context, tx *sqldb.Tx, s *domain.Shipment) error
	// Update stores the status of an existing shipment.
	Update(ctx context.Context, tx *sqldb.Tx, s *domain.Shipment) error
}

// App implements the use cases.
type App struct {
	store Store
	now   func() time.Time
}

// New returns the use cases over a store.
func New(store Store) *App {
	return &App{store: store, now: func() time.Time { return time.Now().UTC() }}
}

// Reserve reserves the shipment of an order whose stock was deducted,
// inside tx. It does nothing for an order that has a shipment already,
// reserved or released (a cancellation seen first).
func (a *App) Reserve(ctx context.Context, tx *sqldb.Tx, orderID string, lines []domain.Line) error {
	cur, err := a.store.Get(ctx, tx, orderID)
	if err != nil {
		return err
	}
	next, changed := domain.Reserve(cur, orderID, lines, a.now())
	if !changed {
		return nil
	}
	return a.store.Insert(ctx, tx, next)
}

// Release releases the shipment of a cancelled order inside tx; with no
// shipment yet, it records the cancellation as a released shipment.
func (a *App) Release(ctx context.Context, tx *sqldb.Tx, orderID string) error {
	cur, err := a.store.Get(ctx, tx, orderID)
	if err != nil {
		return err
	}
	next, changed := domain.Release(cur, orderID, a.now())
	switch {
	case !changed:
		return nil
	case cur == nil:
		return a.store.Insert(ctx, tx, next)
	}
	return a.store.Update(ctx, tx, next)
}

// Shipment returns the shipment of an order, or a NotFound error.
func (a *App) Shipment(ctx context.Context, orderID string) (*domain.Shipment, error) {
	var v apperr.Violations
	switch {
	case orderID == "":
		v.Add("order_id", "must not be empty")
	case len(orderID) > MaxIDLength:
		v.Add("order_id", "must be at most %d characters", MaxIDLength)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	var s *domain.Shipment
	err := a.store.InTx(ctx, func(tx *sqldb.Tx) (err error) {
		s, err = a.store.Get(ctx, tx, orderID)
		return err
	})
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, apperr.NotFound("no shipment for order %s", orderID)
	}
	return s, nil
}
