// Package inventory is the inventory service: it holds stock levels, deducts
// an order's lines all or none when OrderCreated arrives, answers with
// InventoryDeducted or InventoryDeductionFailed, and returns the stock of a
// cancelled order (InventoryReleased). [Module] declares it to the
// platform, which stores each deduction with its answer as one unit of
// work.
package inventory

import (
	"context"

	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/module"
	"github.com/herald-events/herald/services/inventory/adapters"
	"github.com/herald-events/herald/services/inventory/app"
	"github.com/herald-events/herald/services/inventory/ports"
)

// Name is the service's name in configuration, logs and ce_source.
const Name = "inventory"

// Module declares the inventory service.
func Module() module.Module {
	return module.Module{
		Name:     Name,
		Consumes: []proto.Message{&ordersv1.OrderCreated{}, &ordersv1.OrderCancelled{}},
		Produces: []proto.Message{&inventoryv1.InventoryDeducted{}, &inventoryv1.InventoryDeductionFailed{},
			&inventoryv1.InventoryReleased{}},
		Database: true,
		// An order locks its SKUs' stock rows (sorted), and a shared
		// transaction holds those of several orders until it commits.
		Contended:  true,
		Migrations: adapters.Migrations,
		Build: func(_ context.Context, d module.Deps) (*module.Parts, error) {
			a := app.New(adapters.New(d.DB))
			return &module.Parts{
				GRPC:     []module.GRPC{{Desc: &inventoryv1.InventoryService_ServiceDesc, Impl: ports.NewGRPC(a)}},
				Handlers: ports.NewEvents(a).Handlers(),
			}, nil
		},
	}
}
