// Package app holds the logistics use cases: reserve an order's shipment
// when its stock was deducted, release it when the order is cancelled (each
// in the unit of work of the event, which the context carries), and read a
// shipment.
package app

import (
	"context"
	"time"
	"unicode/utf8"

	"github.com/herald-events/herald/platform/apperr"
	"github.com/herald-events/herald/services/logistics/domain"
)

// MaxIDLength bounds an order id in a request.
const MaxIDLength = 128

// Store persists shipments. Its methods join the transaction ctx carries.
type Store interface {
	// Get returns the shipment of an order, or nil when there is none.
	Get(ctx context.Context, orderID string) (*domain.Shipment, error)
	// Update gives fn the shipment of an order (nil when there is none),
	// locked until the transaction ends where the database can, and stores
	// the shipment fn returns, if any. Storing a new shipment fails if the
	// order got one meanwhile (a concurrent handler won: the caller's
	// transaction is retried).
	Update(ctx context.Context, orderID string, fn func(cur *domain.Shipment) (*domain.Shipment, error)) error
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

// Reserve reserves the shipment of an order whose stock was deducted. It
// does nothing for an order that has a shipment already, reserved or
// released (a cancellation seen first).
func (a *App) Reserve(ctx context.Context, orderID string, lines []domain.Line) error {
	return a.store.Update(ctx, orderID, func(cur *domain.Shipment) (*domain.Shipment, error) {
		return changed(domain.Reserve(cur, orderID, lines, a.now()))
	})
}

// Release releases the shipment of a cancelled order; with no shipment
// yet, it records the cancellation as a released shipment.
func (a *App) Release(ctx context.Context, orderID string) error {
	return a.store.Update(ctx, orderID, func(cur *domain.Shipment) (*domain.Shipment, error) {
		return changed(domain.Release(cur, orderID, a.now()))
	})
}

// changed turns a transition's result into what Store.Update stores: the
// next shipment, or nil when nothing changed.
func changed(next *domain.Shipment, ok bool) (*domain.Shipment, error) {
	if !ok {
		return nil, nil
	}
	return next, nil
}

// Shipment returns the shipment of an order, or a NotFound error.
func (a *App) Shipment(ctx context.Context, orderID string) (*domain.Shipment, error) {
	var v apperr.Violations
	switch {
	case orderID == "":
		v.Add("order_id", "must not be empty")
	case utf8.RuneCountInString(orderID) > MaxIDLength:
		v.Add("order_id", "must be at most %d characters", MaxIDLength)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	s, err := a.store.Get(ctx, orderID)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, apperr.NotFound("no shipment for order %s", orderID)
	}
	return s, nil
}
