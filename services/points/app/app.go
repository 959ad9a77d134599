// Package app holds the points use cases: award the points of a confirmed
// order, take back those of a cancelled one (each in the unit of work of
// the event that caused it, which the context carries), and read a
// customer's balance.
package app

import (
	"context"
	"time"
	"unicode/utf8"

	"github.com/herald-events/herald/platform/apperr"
	"github.com/herald-events/herald/services/points/domain"
)

// MaxIDLength bounds a customer id in a request.
const MaxIDLength = 128

// Store persists the ledger. Its methods join the transaction ctx
// carries.
type Store interface {
	// Update gives fn the entries of an order (locked until the
	// transaction ends where the database can) and adds the entry fn
	// returns, if any, in the same transaction. The ledger holds at most
	// one entry of each kind per order; a second one is not added.
	Update(ctx context.Context, orderID string, fn func(existing []domain.Entry) (*domain.Entry, error)) error
	// Ledger returns up to limit of a customer's entries after the cursor
	// (0: from the first), oldest first, and the cursor of the last one.
	Ledger(ctx context.Context, customerID string, after int64, limit int) ([]domain.Entry, int64, error)
	// Balance sums all of a customer's entries.
	Balance(ctx context.Context, customerID string) (int64, error)
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

// Confirmed awards the points of a confirmed order, once.
func (a *App) Confirmed(ctx context.Context, orderID, customerID string, total domain.Money) error {
	return a.store.Update(ctx, orderID, func(existing []domain.Entry) (*domain.Entry, error) {
		return domain.Award(orderID, customerID, total, existing, a.now()), nil
	})
}

// Cancelled takes back the points of a cancelled order, once; an order
// that earned nothing is left alone.
func (a *App) Cancelled(ctx context.Context, orderID string) error {
	return a.store.Update(ctx, orderID, func(existing []domain.Entry) (*domain.Entry, error) {
		return domain.Reverse(orderID, existing, a.now()), nil
	})
}

// BalancePage is a customer's balance and one page of the entries it sums.
type BalancePage struct {
	// Balance sums every entry of the customer, not only this page's.
	Balance int64
	// Entries are the page, oldest first.
	Entries []domain.Entry
	// Next is the cursor of the next page, 0 on the last page.
	Next int64
}

// Balance returns a customer's balance and up to limit entries after the
// cursor (0: from the first). A customer without entries has a balance of
// zero.
func (a *App) Balance(ctx context.Context, customerID string, after int64, limit int) (BalancePage, error) {
	var v apperr.Violations
	switch {
	case customerID == "":
		v.Add("customer_id", "must not be empty")
	case utf8.RuneCountInString(customerID) > MaxIDLength:
		v.Add("customer_id", "must be at most %d characters", MaxIDLength)
	}
	if err := v.Err(); err != nil {
		return BalancePage{}, err
	}
	entries, last, err := a.store.Ledger(ctx, customerID, after, limit)
	if err != nil {
		return BalancePage{}, err
	}
	balance, err := a.store.Balance(ctx, customerID)
	if err != nil {
		return BalancePage{}, err
	}
	page := BalancePage{Balance: balance, Entries: entries}
	if len(entries) == limit {
		page.Next = last
	}
	return page, nil
}
