// Package ports adapts the inventory use cases to the outside: the gRPC
// InventoryService for operators and the handlers of the orders events.
package ports

import (
	"context"
	"errors"

	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/module"
	"github.com/herald-events/herald/services/inventory/app"
	"github.com/herald-events/herald/services/inventory/domain"
)

// GRPC implements inventoryv1.InventoryServiceServer.
type GRPC struct {
	inventoryv1.UnimplementedInventoryServiceServer
	app *app.App
}

// NewGRPC returns the gRPC port.
func NewGRPC(a *app.App) *GRPC { return &GRPC{app: a} }

// SetStock sets a stock level.
func (g *GRPC) SetStock(ctx context.Context, req *inventoryv1.SetStockRequest) (*inventoryv1.SetStockResponse, error) {
	if err := g.app.SetStock(ctx, req.GetSku(), req.GetQuantity()); err != nil {
		return nil, err
	}
	return &inventoryv1.SetStockResponse{Sku: req.GetSku(), Quantity: req.GetQuantity()}, nil
}

// GetStock reads a stock level.
func (g *GRPC) GetStock(ctx context.Context, req *inventoryv1.GetStockRequest) (*inventoryv1.GetStockResponse, error) {
	q, err := g.app.GetStock(ctx, req.GetSku())
	if err != nil {
		return nil, err
	}
	return &inventoryv1.GetStockResponse{Sku: req.GetSku(), Quantity: q}, nil
}

// Events handles the orders events.
type Events struct {
	app *app.App
}

// NewEvents returns the event port.
func NewEvents(a *app.App) *Events { return &Events{app: a} }

// Handlers are the module's event handlers. Both change stock rows that
// the events of other orders change too, so both name them: an instance's
// transactions lock them in one order, and two instances do not deadlock.
func (e *Events) Handlers() []module.Handler {
	return []module.Handler{
		module.OnLocking(e.onOrderCreated, func(_ context.Context, msg *ordersv1.OrderCreated) ([]string, error) {
			return app.DeductLocks(lines(msg)), nil
		}),
		module.OnLocking(e.onOrderCancelled, func(ctx context.Context, msg *ordersv1.OrderCancelled) ([]string, error) {
			return e.app.ReleaseLocks(ctx, msg.GetOrderId())
		}),
	}
}

func lines(msg *ordersv1.OrderCreated) []domain.Line {
	out := make([]domain.Line, 0, len(msg.GetLines()))
	for _, l := range msg.GetLines() {
		out = append(out, domain.Line{SKU: l.GetSku(), Quantity: int64(l.GetQuantity())})
	}
	return out
}

func (e *Events) onOrderCreated(ctx context.Context, _ *consumer.Event, msg *ordersv1.OrderCreated) ([]proto.Message, error) {
	return e.app.Deduct(ctx, msg.GetOrderId(), lines(msg))
}

// onOrderCancelled returns the stock of a cancelled order. A release that
// would overflow a level (app.ErrOverflow) is a permanent fault of this
// event: it goes to the dead-letter topic with the reason, the level and
// the reservation stay as they were, and once an operator has lowered the
// level the event can be replayed (herald dlq replay). Clamping the level
// instead would lose the units silently.
func (e *Events) onOrderCancelled(ctx context.Context, _ *consumer.Event, msg *ordersv1.OrderCancelled) ([]proto.Message, error) {
	out, err := e.app.Release(ctx, msg.GetOrderId())
	if errors.Is(err, app.ErrOverflow) {
		return nil, consumer.Permanent(err)
	}
	return out, err
}
