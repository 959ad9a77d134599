// Package ports adapts the logistics use cases to the outside: the gRPC
// LogisticsService and the handlers of the inventory and orders events.
package ports

import (
	"context"

	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	logisticsv1 "github.com/herald-events/herald/gen/go/herald/logistics/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/module"
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

// Events handles InventoryDeducted and OrderCancelled. The platform runs
// each call in the event's unit of work (one transaction with its inbox
// claim), which the context carries to the store.
type Events struct {
	app *app.App
}

// NewEvents returns the event port.
func NewEvents(a *app.App) *Events { return &Events{app: a} }

// Handlers are the module's event handlers.
func (e *Events) Handlers() []module.Handler {
	return []module.Handler{module.On(e.onInventoryDeducted), module.On(e.onOrderCancelled)}
}

func (e *Events) onInventoryDeducted(ctx context.Context, _ *consumer.Event, msg *inventoryv1.InventoryDeducted) ([]proto.Message, error) {
	lines := make([]domain.Line, 0, len(msg.GetLines()))
	for _, l := range msg.GetLines() {
		lines = append(lines, domain.Line{SKU: l.GetSku(), Quantity: l.GetQuantity()})
	}
	return nil, e.app.Reserve(ctx, msg.GetOrderId(), lines)
}

func (e *Events) onOrderCancelled(ctx context.Context, _ *consumer.Event, msg *ordersv1.OrderCancelled) ([]proto.Message, error) {
	return nil, e.app.Release(ctx, msg.GetOrderId())
}
