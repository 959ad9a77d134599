// Package orders is the order service: the shop's gRPC front door and the
// owner of an order's state in the saga with inventory.
//
// It accepts orders (publishing OrderCreated), confirms or rejects them on
// inventory's answer (OrderConfirmed, OrderRejected), and cancels them
// (OrderCancelled). Its code is split into domain (rules), app (use cases),
// adapters (SQL store) and ports (gRPC and event handlers); [Module]
// declares it to the platform, which runs every change with its event as
// one unit of work.
package orders

import (
	"context"

	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/module"
	"github.com/herald-events/herald/services/orders/adapters"
	"github.com/herald-events/herald/services/orders/app"
	"github.com/herald-events/herald/services/orders/ports"
)

// Name is the service's name in configuration, logs and ce_source.
const Name = "orders"

// Module declares the orders service.
func Module() module.Module {
	return module.Module{
		Name:       Name,
		Consumes:   []proto.Message{&inventoryv1.InventoryDeducted{}, &inventoryv1.InventoryDeductionFailed{}},
		Produces:   []proto.Message{&ordersv1.OrderCreated{}, &ordersv1.OrderConfirmed{}, &ordersv1.OrderRejected{}, &ordersv1.OrderCancelled{}},
		Database:   true,
		Migrations: adapters.Migrations,
		Build: func(_ context.Context, d module.Deps) (*module.Parts, error) {
			a := app.New(adapters.New(d.DB), d.Work)
			return &module.Parts{
				GRPC:     []module.GRPC{{Desc: &ordersv1.OrderService_ServiceDesc, Impl: ports.NewGRPC(a)}},
				Handlers: ports.NewEvents(a).Handlers(),
			}, nil
		},
	}
}
