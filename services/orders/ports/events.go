package ports

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	"github.com/herald-events/herald/platform/apperr"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/module"
	"github.com/herald-events/herald/services/orders/app"
)

// Events handles inventory's answers to OrderCreated.
type Events struct {
	app *app.App
}

// NewEvents returns the event port.
func NewEvents(a *app.App) *Events { return &Events{app: a} }

// Handlers are the module's event handlers.
func (e *Events) Handlers() []module.Handler {
	return []module.Handler{
		module.OnLocking(e.onDeducted, func(_ context.Context, msg *inventoryv1.InventoryDeducted) ([]string, error) {
			return app.OrderLocks(msg.GetOrderId()), nil
		}),
		module.OnLocking(e.onDeductionFailed, func(_ context.Context, msg *inventoryv1.InventoryDeductionFailed) ([]string, error) {
			return app.OrderLocks(msg.GetOrderId()), nil
		}),
	}
}

// permanentIfMissing: an answer about an order this service never stored
// cannot succeed on a retry.
func permanentIfMissing(out []proto.Message, err error) ([]proto.Message, error) {
	if ae, ok := apperr.As(err); ok && ae.Kind == apperr.KindNotFound {
		return nil, consumer.Permanent(err)
	}
	return out, err
}

func (e *Events) onDeducted(ctx context.Context, _ *consumer.Event, msg *inventoryv1.InventoryDeducted) ([]proto.Message, error) {
	return permanentIfMissing(e.app.Confirm(ctx, msg.GetOrderId()))
}

func (e *Events) onDeductionFailed(ctx context.Context, _ *consumer.Event, msg *inventoryv1.InventoryDeductionFailed) ([]proto.Message, error) {
	return permanentIfMissing(e.app.Reject(ctx, msg.GetOrderId(), RejectionReason(msg)))
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
