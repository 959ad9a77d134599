// Package app holds the points use cases: award the points of a confirmed
// order, take back those of a cancelled one (each inside the transaction of
// the event that caused it, after its inbox claim), and read a customer's
// balance.
package app

import (
	"context"
	"time"

	"github.com/herald-events/herald/platform/apperr"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/services/points/domain"
)

// MaxIDLength bounds a customer id in a request.
const MaxIDLength = 128

// Store persists the ledger. Methods taking a tx run inside it.
type Store interface {
	InTx(ctx context.Context, fn func(tx *sqldb.Tx) error) error
	// Entries returns the entries of an order, locking them for the rest of
	// tx where the database can.
	Entries(ctx context.Context, tx *sqldb.Tx, orderID string) ([]domain.Entry, error)
	// Insert adds an entry. It reports false, changing nothing, when the
	// order already has an entry of that kind.
	Insert(ctx context.Context, tx *sqldb.Tx, e domain.Entry) (bool, error)
	// Ledger returns a customer's entries, oldest first.
	Ledger(ctx context.Context, customerID string) ([]domain.Entry, error)
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

// Confirmed awards the points of a confirmed order inside tx, once.
func (a *App) Confirmed(ctx context.Context, tx *sqldb.Tx, orderID, customerID string, total domain.Money) error {
	existing, err := a.store.Entries(ctx, tx, orderID)
	if err != nil {
		return err
	}
	e := domain.Award(orderID, customerID, total, existing, a.now())
	if e == nil {
		return nil
	}
	_, err = a.store.Insert(ctx, tx, *e)
	return err
}

// Cancelled takes back the points of a cancelled order inside tx, once;
// an order that earned nothing is left alone.
func (a *App) Cancelled(ctx context.Context, tx *sqldb.Tx, orderID string) error {
	existing, err := a.store.Entries(ctx, tx, orderID)
	if err != nil {
		return err
	}
	e := domain.Reverse(orderID, existing, a.now())
	if e == nil {
		return nil
	}
	_, err = a.store.Insert(ctx, tx, *e)
	return err
}

// Balance returns a customer's balance and entries. A customer without
// entries has a balance of zero.
func (a *App) Balance(ctx context.Context, customerID string) (int64, []domain.Entry, error) {
	var v apperr.Violations
	switch {
	case customerID == "":
		v.Add("customer_id", "must not be empty")
	case len(customerID) > MaxIDLength:
		v.Add("customer_id", "must be at most %d characters", MaxIDLength)
	}
	if err := v.Err(); err != nil {
		return 0, nil, err
	}
	entries, err := a.store.Ledger(ctx, customerID)
	if err != nil {
		return 0, nil, err
	}
	return domain.Balance(entries), entries, nil
}
