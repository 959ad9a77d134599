// Package logistics is the shipping service: it reserves the shipment of an
// order once inventory deducted its stock (InventoryDeducted) and releases
// it when the order is cancelled (OrderCancelled). A cancel that overtakes
// the deduction (the events travel on different topics) is recorded, and
// the order is never reserved afterwards. It consumes the inventory and
// orders events, publishes none, and needs nothing from the orders service
// but its events.
//
// [Module] declares it to the platform, which runs each event's handler in
// one database transaction with the event's inbox claim. Its code is split
// into domain (the shipment state machine), app (use cases), adapters (SQL
// store) and ports (gRPC and event handlers).
package logistics

import (
	"context"

	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	logisticsv1 "github.com/herald-events/herald/gen/go/herald/logistics/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/module"
	"github.com/herald-events/herald/services/logistics/adapters"
	"github.com/herald-events/herald/services/logistics/app"
	"github.com/herald-events/herald/services/logistics/ports"
)

// Name is the service's name in configuration and logs.
const Name = "logistics"

// Module declares the logistics service: it consumes InventoryDeducted and
// OrderCancelled, keeps shipments in a database and serves
// LogisticsService.
func Module() module.Module {
	return module.Module{
		Name:       Name,
		Consumes:   []proto.Message{&inventoryv1.InventoryDeducted{}, &ordersv1.OrderCancelled{}},
		Database:   true,
		Migrations: adapters.Migrations,
		Build: func(_ context.Context, d module.Deps) (*module.Parts, error) {
			a := app.New(adapters.New(d.DB))
			return &module.Parts{
				GRPC:     []module.GRPC{{Desc: &logisticsv1.LogisticsService_ServiceDesc, Impl: ports.NewGRPC(a)}},
				Handlers: ports.NewEvents(a).Handlers(),
			}, nil
		},
	}
}
