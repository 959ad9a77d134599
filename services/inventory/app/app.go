// Package app holds the inventory use cases: operators set and read stock;
// OrderCreated deducts an order's lines (answering InventoryDeducted or
// InventoryDeductionFailed) and OrderCancelled returns them
// (InventoryReleased). Each runs in one transaction with its event.
package app

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	"github.com/herald-events/herald/platform/apperr"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/services/inventory/domain"
)

// ErrConflict reports that stock changed between check and write; the
// caller retries.
var ErrConflict = errors.New("stock changed concurrently")

// Store persists stock and reservations. Methods run inside tx.
type Store interface {
	InTx(ctx context.Context, fn func(tx *sqldb.Tx) error) error
	SetStock(ctx context.Context, tx *sqldb.Tx, sku string, quantity int64) error
	// Stock returns the available quantity of each known SKU among skus.
	Stock(ctx context.Context, tx *sqldb.Tx, skus []string) (map[string]int64, error)
	// Take subtracts quantity from sku if that much is available, else
	// returns [ErrConflict].
	Take(ctx context.Context, tx *sqldb.Tx, sku string, quantity int64) error
	Give(ctx context.Context, tx *sqldb.Tx, sku string, quantity int64) error
	// Reserve records what an order took; Reserved returns what it still
	// holds; Release marks its reservations returned.
	Reserve(ctx context.Context, tx *sqldb.Tx, orderID string, lines []domain.Line) error
	Reserved(ctx context.Context, tx *sqldb.Tx, orderID string) ([]domain.Line, bool, error)
	Release(ctx context.Context, tx *sqldb.Tx, orderID string) error
}

// Outbox stores events in a transaction.
type Outbox interface {
	Add(ctx context.Context, tx *sqldb.Tx, msg proto.Message) (*event.Envelope, error)
}

// App implements the use cases.
type App struct {
	store  Store
	outbox Outbox
}

// New returns the use cases.
func New(store Store, outbox Outbox) *App { return &App{store: store, outbox: outbox} }

func validSKU(sku string) error {
	var v apperr.Violations
	switch {
	case sku == "":
		v.Add("sku", "must not be empty")
	case len(sku) > 128:
		v.Add("sku", "must be at most 128 characters")
	}
	return v.Err()
}

// SetStock sets the available quantity of a SKU.
func (a *App) SetStock(ctx context.Context, sku string, quantity int64) error {
	var v apperr.Violations
	if err := validSKU(sku); err != nil {
		ae, _ := apperr.As(err)
		v = append(v, ae.Violations...)
	}
	if quantity < 0 {
		v.Add("quantity", "must be zero or more, got %d", quantity)
	}
	if err := v.Err(); err != nil {
		return err
	}
	return a.store.InTx(ctx, func(tx *sqldb.Tx) error { return a.store.SetStock(ctx, tx, sku, quantity) })
}

// GetStock returns the available quantity of a SKU.
func (a *App) GetStock(ctx context.Context, sku string) (int64, error) {
	if err := validSKU(sku); err != nil {
		return 0, err
	}
	var q int64
	err := a.store.InTx(ctx, func(tx *sqldb.Tx) error {
		m, err := a.store.Stock(ctx, tx, []string{sku})
		if err != nil {
			return err
		}
		var ok bool
		if q, ok = m[sku]; !ok {
			return apperr.NotFound("sku %s not found", sku)
		}
		return nil
	})
	return q, err
}

// Deduct takes all lines of an order or none, inside tx, and adds the
// answer event. A second call for the same order adds nothing.
func (a *App) Deduct(ctx context.Context, tx *sqldb.Tx, orderID string, lines []domain.Line) error {
	if _, seen, err := a.store.Reserved(ctx, tx, orderID); err != nil || seen {
		return err
	}
	merged := domain.Merge(lines)
	skus := make([]string, len(merged))
	for i, l := range merged {
		skus[i] = l.SKU
	}
	avail, err := a.store.Stock(ctx, tx, skus)
	if err != nil {
		return err
	}
	if f := domain.Check(merged, avail); f != nil {
		_, err := a.outbox.Add(ctx, tx, &inventoryv1.InventoryDeductionFailed{
			OrderId: orderID, Reason: inventoryv1.DeductionFailureReason(f.Reason),
			Sku: f.SKU, Requested: int32(f.Requested), Available: f.Available,
		})
		return err
	}
	ev := &inventoryv1.InventoryDeducted{OrderId: orderID}
	for _, l := range merged {
		if err := a.store.Take(ctx, tx, l.SKU, l.Quantity); err != nil {
			return fmt.Errorf("deduct %s for order %s: %w", l.SKU, orderID, err)
		}
		ev.Lines = append(ev.Lines, &inventoryv1.StockChange{Sku: l.SKU, Quantity: int32(l.Quantity)})
	}
	if err := a.store.Reserve(ctx, tx, orderID, merged); err != nil {
		return err
	}
	_, err = a.outbox.Add(ctx, tx, ev)
	return err
}

// Release returns what a cancelled order holds, inside tx, and adds
// InventoryReleased. An order that holds nothing (refused, or already
// released) adds nothing.
func (a *App) Release(ctx context.Context, tx *sqldb.Tx, orderID string) error {
	held, _, err := a.store.Reserved(ctx, tx, orderID)
	if err != nil || len(held) == 0 {
		return err
	}
	ev := &inventoryv1.InventoryReleased{OrderId: orderID}
	for _, l := range held {
		if err := a.store.Give(ctx, tx, l.SKU, l.Quantity); err != nil {
			return err
		}
		ev.Lines = append(ev.Lines, &inventoryv1.StockChange{Sku: l.SKU, Quantity: int32(l.Quantity)})
	}
	if err := a.store.Release(ctx, tx, orderID); err != nil {
		return err
	}
	_, err = a.outbox.Add(ctx, tx, ev)
	return err
}
