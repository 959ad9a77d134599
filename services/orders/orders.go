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
	"fmt"
	"strconv"
	"time"

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

// SettingMaxPending is the setting that holds the door to the saga's pace
// (--orders-max-pending, HERALD_ORDERS_MAX_PENDING).
const SettingMaxPending = "max-pending"

// DefaultMaxPending is the backlog of orders waiting for inventory at which
// CreateOrder starts to refuse new ones: about a second of the saga's work
// on the real stack (docs/performance.md, "the door held to the saga's
// pace").
const DefaultMaxPending = 1000

// pendingSampled is how old the door's count of waiting orders may be.
const pendingSampled = 50 * time.Millisecond

// Module declares the orders service.
func Module() module.Module {
	return module.Module{
		Name:       Name,
		Consumes:   []proto.Message{&inventoryv1.InventoryDeducted{}, &inventoryv1.InventoryDeductionFailed{}},
		Produces:   []proto.Message{&ordersv1.OrderCreated{}, &ordersv1.OrderConfirmed{}, &ordersv1.OrderRejected{}, &ordersv1.OrderCancelled{}},
		Database:   true,
		Migrations: adapters.Migrations,
		Settings: []module.Setting{{Key: SettingMaxPending, Usage: fmt.Sprintf(
			"refuse new orders (RESOURCE_EXHAUSTED, retry later) while this many wait for inventory's answer; 0: no limit (default %d)", DefaultMaxPending)}},
		Build: func(_ context.Context, d module.Deps) (*module.Parts, error) {
			maxPending := DefaultMaxPending
			if v, ok := d.Settings[SettingMaxPending]; ok {
				n, err := strconv.Atoi(v)
				if err != nil || n < 0 {
					return nil, fmt.Errorf("--orders-max-pending (HERALD_ORDERS_MAX_PENDING) %q: want a whole number, 0 or more", v)
				}
				maxPending = n
			}
			store := adapters.New(d.DB)
			a := app.New(store, d.Work).WithAdmission(app.Admission{
				Counter: store, MaxPending: maxPending, Every: pendingSampled, Logger: d.Logger})
			return &module.Parts{
				GRPC:     []module.GRPC{{Desc: &ordersv1.OrderService_ServiceDesc, Impl: ports.NewGRPC(a)}},
				Handlers: ports.NewEvents(a).Handlers(),
			}, nil
		},
	}
}
