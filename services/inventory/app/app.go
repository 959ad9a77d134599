// Package app holds the inventory use cases: operators set and read stock;
// OrderCreated deducts an order's lines (answering InventoryDeducted or
// InventoryDeductionFailed) and OrderCancelled returns them
// (InventoryReleased). The event use cases return their answer, and the
// platform stores the change, the inbox claim and the answer in one
// transaction.
package app

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	"github.com/herald-events/herald/platform/apperr"
	"github.com/herald-events/herald/services/inventory/domain"
)

// ErrConflict reports that stock changed between check and write; the
// caller retries.
var ErrConflict = errors.New("stock changed concurrently")

// ErrOverflow reports that returning stock would take a level past
// [domain.MaxStock]; nothing is changed.
var ErrOverflow = errors.New("stock level would overflow")

// Store persists stock and reservations, in the unit of work the context
// carries.
type Store interface {
	// SetStock sets the level of sku, in one transaction with check, which
	// gets what open orders hold of sku and may refuse the level.
	SetStock(ctx context.Context, sku string, quantity int64, check func(held int64) error) error
	// Stock returns the available quantity of each known SKU among skus.
	Stock(ctx context.Context, skus []string) (map[string]int64, error)
	// Take subtracts quantity from sku if that much is available, else
	// returns [ErrConflict].
	Take(ctx context.Context, sku string, quantity int64) error
	// Give adds quantity back to sku, or returns [ErrOverflow] and
	// changes nothing when the level would pass [domain.MaxStock].
	Give(ctx context.Context, sku string, quantity int64) error
	// Reserve records what an order took; Reserved returns what it still
	// holds; Release marks its reservations returned.
	Reserve(ctx context.Context, orderID string, lines []domain.Line) error
	Reserved(ctx context.Context, orderID string) ([]domain.Line, bool, error)
	Release(ctx context.Context, orderID string) error
}

// App implements the use cases.
type App struct {
	store Store
}

// New returns the use cases.
func New(store Store) *App { return &App{store: store} }

func validSKU(sku string) error {
	var v apperr.Violations
	switch {
	case sku == "":
		v.Add("sku", "must not be empty")
	case utf8.RuneCountInString(sku) > 128:
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
	return a.store.SetStock(ctx, sku, quantity, func(held int64) error {
		if !domain.FitsLevel(quantity, held) {
			return apperr.FailedPrecondition("sku %s: open orders hold %d, which must fit on top of the level when they are cancelled: "+
				"set at most %d", sku, held, domain.MaxStock-held)
		}
		return nil
	})
}

// GetStock returns the available quantity of a SKU.
func (a *App) GetStock(ctx context.Context, sku string) (int64, error) {
	if err := validSKU(sku); err != nil {
		return 0, err
	}
	m, err := a.store.Stock(ctx, []string{sku})
	if err != nil {
		return 0, err
	}
	q, ok := m[sku]
	if !ok {
		return 0, apperr.NotFound("sku %s not found", sku)
	}
	return q, nil
}

// DeductLocks names the stock rows a deduction of lines changes: one per
// SKU (see module.OnLocking).
func DeductLocks(lines []domain.Line) []string {
	names := make([]string, 0, len(lines))
	for _, l := range lines {
		names = append(names, stockLock(l.SKU))
	}
	return names
}

// ReleaseLocks names the stock rows a release of orderID changes: those of
// the SKUs the order holds now.
func (a *App) ReleaseLocks(ctx context.Context, orderID string) ([]string, error) {
	held, _, err := a.store.Reserved(ctx, orderID)
	if err != nil {
		return nil, err
	}
	return DeductLocks(held), nil
}

func stockLock(sku string) string { return "stock/" + sku }

// Deduct takes all lines of an order or none and returns the answer
// event. A second call for the same order returns none. It runs in the
// event's unit of work.
func (a *App) Deduct(ctx context.Context, orderID string, lines []domain.Line) ([]proto.Message, error) {
	if _, seen, err := a.store.Reserved(ctx, orderID); err != nil || seen {
		return nil, err
	}
	merged := domain.Merge(lines)
	if len(merged) == 1 {
		// One SKU: the conditional take is the check, one statement
		// where reading the level first made two. Only a refused take
		// goes on below, to read the level for the failure's figures.
		switch err := a.store.Take(ctx, merged[0].SKU, merged[0].Quantity); {
		case err == nil:
			return a.deducted(ctx, orderID, merged)
		case !errors.Is(err, ErrConflict):
			return nil, fmt.Errorf("deduct %s for order %s: %w", merged[0].SKU, orderID, err)
		}
	}
	skus := make([]string, len(merged))
	for i, l := range merged {
		skus[i] = l.SKU
	}
	avail, err := a.store.Stock(ctx, skus)
	if err != nil {
		return nil, err
	}
	if f := domain.Check(merged, avail); f != nil {
		return []proto.Message{&inventoryv1.InventoryDeductionFailed{
			OrderId: orderID, Reason: inventoryv1.DeductionFailureReason(f.Reason),
			Sku: f.SKU, Requested: int32(f.Requested), Available: f.Available,
		}}, nil
	}
	for _, l := range merged {
		if err := a.store.Take(ctx, l.SKU, l.Quantity); err != nil {
			return nil, fmt.Errorf("deduct %s for order %s: %w", l.SKU, orderID, err)
		}
	}
	return a.deducted(ctx, orderID, merged)
}

// deducted records what an order took, its stock already taken, and
// returns InventoryDeducted.
func (a *App) deducted(ctx context.Context, orderID string, merged []domain.Line) ([]proto.Message, error) {
	if err := a.store.Reserve(ctx, orderID, merged); err != nil {
		return nil, err
	}
	ev := &inventoryv1.InventoryDeducted{OrderId: orderID}
	for _, l := range merged {
		ev.Lines = append(ev.Lines, &inventoryv1.StockChange{Sku: l.SKU, Quantity: int32(l.Quantity)})
	}
	return []proto.Message{ev}, nil
}

// Release returns what a cancelled order holds and returns
// InventoryReleased. An order that holds nothing (refused, or already
// released) returns none. It runs in the event's unit of work.
//
// SetStock keeps room for what open orders hold, so a release cannot take
// a level past [domain.MaxStock]; if one would (a level set before that
// rule), Release fails with [ErrOverflow] and changes nothing.
func (a *App) Release(ctx context.Context, orderID string) ([]proto.Message, error) {
	held, _, err := a.store.Reserved(ctx, orderID)
	if err != nil || len(held) == 0 {
		return nil, err
	}
	ev := &inventoryv1.InventoryReleased{OrderId: orderID}
	for _, l := range held {
		if err := a.store.Give(ctx, l.SKU, l.Quantity); err != nil {
			return nil, fmt.Errorf("release %s of order %s: %w", l.SKU, orderID, err)
		}
		ev.Lines = append(ev.Lines, &inventoryv1.StockChange{Sku: l.SKU, Quantity: int32(l.Quantity)})
	}
	if err := a.store.Release(ctx, orderID); err != nil {
		return nil, err
	}
	return []proto.Message{ev}, nil
}
