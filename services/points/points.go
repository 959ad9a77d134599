// Package points is the loyalty service: it keeps a ledger of points per
// customer, awarding one point per whole currency unit of a confirmed
// order's total (OrderConfirmed) and taking them back when the order is
// cancelled (OrderCancelled); see the domain package for the rule. It
// consumes the orders events and publishes none.
//
// [Module] declares it to the platform, which runs each event's handler in
// one database transaction with the event's inbox claim. Its code is split
// into domain (rules), app (use cases), adapters (SQL store) and ports
// (gRPC and event handlers).
package points

import (
	"context"

	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	pointsv1 "github.com/herald-events/herald/gen/go/herald/points/v1"
	"github.com/herald-events/herald/platform/module"
	"github.com/herald-events/herald/services/points/adapters"
	"github.com/herald-events/herald/services/points/app"
	"github.com/herald-events/herald/services/points/ports"
)

// Name is the service's name in configuration and logs.
const Name = "points"

// Module declares the points service: it consumes OrderConfirmed and
// OrderCancelled, keeps its ledger in a database and serves PointsService.
func Module() module.Module {
	return module.Module{
		Name:       Name,
		Consumes:   []proto.Message{&ordersv1.OrderConfirmed{}, &ordersv1.OrderCancelled{}},
		Database:   true,
		Migrations: adapters.Migrations,
		Build: func(_ context.Context, d module.Deps) (*module.Parts, error) {
			a := app.New(adapters.New(d.DB))
			return &module.Parts{
				GRPC:     []module.GRPC{{Desc: &pointsv1.PointsService_ServiceDesc, Impl: ports.NewGRPC(a)}},
				Handlers: ports.NewEvents(a).Handlers(),
			}, nil
		},
	}
}
