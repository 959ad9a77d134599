package ports

import (
	"context"
	"fmt"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	"github.com/herald-events/herald/platform/apperr"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/inbox"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/services/orders/app"
)

// Events handles inventory's answers to OrderCreated.
type Events struct {
	app   *app.App
	store app.Store
}

// NewEvents returns the event port.
func NewEvents(a *app.App, s app.Store) *Events { return &Events{app: a, store: s} }

// Register subscribes the handlers on r.
func (e *Events) Register(r *consumer.Router) error {
	if err := consumer.Handle(r, e.onDeducted); err != nil {
		return err
	}
	return consumer.Handle(r, e.onDeductionFailed)
}

// once applies fn in one transaction with the inbox claim of ev.
func (e *Events) once(ctx context.Context, ev *consumer.Event, fn func(tx *sqldb.Tx) error) error {
	err := inbox.Once(ctx, e.store, ev, fn)
	if ae, ok := apperr.As(err); ok && ae.Kind == apperr.KindNotFound {
		return consumer.Permanent(err)
	}
	return err
}

func (e *Events) onDeducted(ctx context.Context, ev *consumer.Event, msg *inventoryv1.InventoryDeducted) error {
	return e.once(ctx, ev, func(tx *sqldb.Tx) error {
		return e.app.Confirm(ctx, tx, msg.GetOrderId())
	})
}

func (e *Events) onDeductionFailed(ctx context.Context, ev *consumer.Event, msg *inventoryv1.InventoryDeductionFailed) error {
	return e.once(ctx, ev, func(tx *sqldb.Tx) error {
		return e.app.Reject(ctx, tx, msg.GetOrderId(), RejectionReason(msg))
	})
}

// RejectionReason renders inventory's refusal for the order's
// rejection_reason.
func RejectionReason(msg *inventoryv1.InventoryDeductionFailed) string {
	switch msg.GetReason() {
	case inventoryv1.DeductionFailureReason_DEDUCTION_FAILURE_REASON_INSUFFICIENT_STOCK:
		return fmt.Sprintf("INSUFFICIENT_STOCK: sku %s: requested %d, available %d", msg.GetSku(), msg.GetRequested(), msg.GetAvailable())
	case inventoryv1.DeductionFailureReason_DEDUCTION_FAILURE_REASON_UNKNOWN_SKU:
		return fmt.Sprintf("UNKNOWN_SKU: sku %s is not stocked", msg.GetSku())
	default:
		return "inventory refused the order: " + msg.GetReason().String()
	}
}
