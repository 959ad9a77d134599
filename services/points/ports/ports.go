// Package ports adapts the points use cases to the outside: the gRPC
// PointsService and the handlers of the orders events.
package ports

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	pointsv1 "github.com/herald-events/herald/gen/go/herald/points/v1"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/inbox"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/services/points/app"
	"github.com/herald-events/herald/services/points/domain"
)

// GRPC implements pointsv1.PointsServiceServer.
type GRPC struct {
	pointsv1.UnimplementedPointsServiceServer
	app *app.App
}

// NewGRPC returns the gRPC port.
func NewGRPC(a *app.App) *GRPC { return &GRPC{app: a} }

// GetBalance returns a customer's balance and ledger.
func (g *GRPC) GetBalance(ctx context.Context, req *pointsv1.GetBalanceRequest) (*pointsv1.GetBalanceResponse, error) {
	balance, entries, err := g.app.Balance(ctx, req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	resp := &pointsv1.GetBalanceResponse{CustomerId: req.GetCustomerId(), Balance: balance}
	for _, e := range entries {
		resp.Entries = append(resp.Entries, &pointsv1.Entry{
			OrderId: e.OrderID, Kind: pointsv1.EntryKind(e.Kind), Points: e.Points, CreateTime: timestamppb.New(e.Created),
		})
	}
	return resp, nil
}

// Events handles the orders events.
type Events struct {
	app   *app.App
	store app.Store
}

// NewEvents returns the event port.
func NewEvents(a *app.App, s app.Store) *Events { return &Events{app: a, store: s} }

// Register subscribes the handlers on r.
func (e *Events) Register(r *consumer.Router) error {
	if err := consumer.Handle(r, e.onOrderConfirmed); err != nil {
		return err
	}
	return consumer.Handle(r, e.onOrderCancelled)
}

func (e *Events) onOrderConfirmed(ctx context.Context, ev *consumer.Event, msg *ordersv1.OrderConfirmed) error {
	total := domain.Money{Currency: msg.GetTotal().GetCurrencyCode(), Units: msg.GetTotal().GetUnits(), Nanos: msg.GetTotal().GetNanos()}
	return inbox.Once(ctx, e.store, ev, func(tx *sqldb.Tx) error {
		return e.app.Confirmed(ctx, tx, msg.GetOrderId(), msg.GetCustomerId(), total)
	})
}

func (e *Events) onOrderCancelled(ctx context.Context, ev *consumer.Event, msg *ordersv1.OrderCancelled) error {
	return inbox.Once(ctx, e.store, ev, func(tx *sqldb.Tx) error {
		return e.app.Cancelled(ctx, tx, msg.GetOrderId())
	})
}
