// Package ports adapts the logistics use cases to the outside: the gRPC
// LogisticsService and the handlers of the inventory and orders events.
package ports

import (
	"context"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	logisticsv1 "github.com/herald-events/herald/gen/go/herald/logistics/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/inbox"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/services/logistics/app"
	"github.com/herald-events/herald/services/logistics/domain"
)

// GRPC implements logisticsv1.LogisticsServiceServer.
type GRPC struct {
	logisticsv1.UnimplementedLogisticsServiceServer
	app *app.App
}

// NewGRPC returns the gRPC port.
func NewGRPC(a *app.App) *GRPC { return &GRPC{app: a} }

// GetShipment returns the shipment of an order.
func (g *GRPC) GetShipment(ctx context.Context, req *logisticsv1.GetShipmentRequest) (*logisticsv1.GetShipmentResponse, error) {
	s, err := g.app.Shipment(ctx, req.GetOrderId())
	if err != nil {
		return nil, err
	}
	resp := &logisticsv1.GetShipmentResponse{OrderId: s.OrderID, Status: logisticsv1.ShipmentStatus(s.Status)}
	for _, l := range s.Lines {
		resp.Lines = append(resp.Lines, &logisticsv1.ShipmentLine{Sku: l.SKU, Quantity: l.Quantity})
	}
	return resp, nil
}

// Events handles InventoryDeducted and OrderCancelled.
type Events struct {
	app   *app.App
	store app.Store
}

// NewEvents returns the event port.
func NewEvents(a *app.App, s app.Store) *Events { return &Events{app: a, store: s} }

// Register subscribes the handlers on r.
func (e *Events) Register(r *consumer.Router) error {
	if err := consumer.Handle(r, e.onInventoryDeducted); err != nil {
		return err
	}
	return consumer.Handle(r, e.onOrderCancelled)
}

func (e *Events) onInventoryDeducted(ctx context.Context, ev *consumer.Event, msg *inventoryv1.InventoryDeducted) error {
	lines := make([]domain.Line, 0, len(msg.GetLines()))
	for _, l := range msg.GetLines() {
		lines = append(lines, domain.Line{SKU: l.GetSku(), Quantity: l.GetQuantity()})
	}
	return inbox.Once(ctx, e.store, ev, func(tx *sqldb.Tx) error {
		return e.app.Reserve(ctx, tx, msg.GetOrderId(), lines)
	})
}

func (e *Events) onOrderCancelled(ctx context.Context, ev *consumer.Event, msg *ordersv1.OrderCancelled) error {
	return inbox.Once(ctx, e.store, ev, func(tx *sqldb.Tx) error {
		return e.app.Release(ctx, tx, msg.GetOrderId())
	})
}
