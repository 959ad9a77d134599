// Package app holds the notification use cases: record a notification in
// the unit of work of the order event it tells about (the transaction the
// context carries), list notifications, and deliver them after commit
// through a [Channel] with the [Dispatcher].
package app

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/herald-events/herald/services/notification/domain"
)

// Store persists notifications. Its methods join the transaction ctx
// carries.
type Store interface {
	// Insert stores a new notification. It reports false, changing
	// nothing, when the order already has a notification of that kind.
	Insert(ctx context.Context, n *domain.Notification) (bool, error)
	// AfterCommit runs fn once the transaction ctx carries commits, or at
	// once outside one.
	AfterCommit(ctx context.Context, fn func())
	// Claim returns up to limit pending notifications due at now, oldest
	// first, and postpones them to now+lease so that no other dispatcher
	// takes them meanwhile; a dispatcher that dies holding them lets the
	// lease run out, and they are due again.
	Claim(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*domain.Notification, error)
	// Save stores the delivery state of a notification.
	Save(ctx context.Context, n *domain.Notification) error
	// List returns up to limit notifications older than the cursor (0:
	// newest), newest first, and the cursor of the last one.
	List(ctx context.Context, f Filter, cursor int64, limit int) ([]*domain.Notification, int64, error)
}

// Filter narrows [App.List]; empty fields match everything.
type Filter struct {
	CustomerID string
	OrderID    string
}

// App implements the use cases.
type App struct {
	store Store
	wake  func()
	now   func() time.Time
}

// New returns the use cases over a store. wake, which may be nil, is called
// after a transaction that recorded a notification commits (the
// dispatcher's [Dispatcher.Notify]).
func New(store Store, wake func()) *App {
	if wake == nil {
		wake = func() {}
	}
	return &App{store: store, wake: wake, now: func() time.Time { return time.Now().UTC() }}
}

// Record stores a pending notification in the transaction ctx carries; it
// is delivered after that transaction commits. An order gets at most one
// notification of each kind.
func (a *App) Record(ctx context.Context, orderID, customerID string, kind domain.Kind, text string) error {
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("notification id: %w", err)
	}
	n := domain.New(id.String(), orderID, customerID, kind, text, a.now())
	inserted, err := a.store.Insert(ctx, n)
	if err != nil {
		return err
	}
	if inserted {
		a.store.AfterCommit(ctx, a.wake)
	}
	return nil
}

// List returns a page of notifications, newest first.
func (a *App) List(ctx context.Context, f Filter, cursor int64, limit int) ([]*domain.Notification, int64, error) {
	return a.store.List(ctx, f, cursor, limit)
}
