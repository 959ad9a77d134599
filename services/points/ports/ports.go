// Package ports adapts the points use cases to the outside: the gRPC
// PointsService and the handlers of the orders events.
package ports

import (
	"context"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	pointsv1 "github.com/herald-events/herald/gen/go/herald/points/v1"
	"github.com/herald-events/herald/platform/auth"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/grpcx"
	"github.com/herald-events/herald/platform/module"
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

// Page size default of GetBalance. Its bound, 1000 (a rule of the
// request), keeps a page far below a client's 4 MB: an entry is under 200
// bytes.
const (
	defaultPageSize = 100
)

// GetBalance returns a customer's balance and a page of their ledger; an
// authenticated customer gets only their own (an empty customer_id means
// theirs).
func (g *GRPC) GetBalance(ctx context.Context, req *pointsv1.GetBalanceRequest) (*pointsv1.GetBalanceResponse, error) {
	customer, err := auth.OwnCustomer(ctx, "customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	// The request's rules (points.proto) bound page_size and the id; the
	// interceptor of package contract has checked them.
	size, after, err := grpcx.ParsePage(req.GetPageSize(), req.GetPageToken(), defaultPageSize, "GetBalance")
	if err != nil {
		return nil, err
	}
	page, err := g.app.Balance(ctx, customer, after, size)
	if err != nil {
		return nil, err
	}
	resp := &pointsv1.GetBalanceResponse{CustomerId: customer, Balance: page.Balance}
	for _, e := range page.Entries {
		resp.Entries = append(resp.Entries, &pointsv1.Entry{
			OrderId: e.OrderID, Kind: pointsv1.EntryKind(e.Kind), Points: e.Points, CreateTime: timestamppb.New(e.Created),
		})
	}
	if page.Next != 0 {
		resp.NextPageToken = grpcx.PageToken(page.Next)
	}
	return resp, nil
}

// Events handles the orders events. The platform runs each call in the
// event's unit of work (one transaction with its inbox claim), which the
// context carries to the store.
type Events struct {
	app *app.App
}

// NewEvents returns the event port.
func NewEvents(a *app.App) *Events { return &Events{app: a} }

// Handlers are the module's event handlers.
func (e *Events) Handlers() []module.Handler {
	return []module.Handler{module.On(e.onOrderConfirmed), module.On(e.onOrderCancelled)}
}

func (e *Events) onOrderConfirmed(ctx context.Context, _ *consumer.Event, msg *ordersv1.OrderConfirmed) ([]proto.Message, error) {
	total := domain.Money{Currency: msg.GetTotal().GetCurrencyCode(), Units: msg.GetTotal().GetUnits(), Nanos: msg.GetTotal().GetNanos()}
	return nil, e.app.Confirmed(ctx, msg.GetOrderId(), msg.GetCustomerId(), total)
}

func (e *Events) onOrderCancelled(ctx context.Context, _ *consumer.Event, msg *ordersv1.OrderCancelled) ([]proto.Message, error) {
	return nil, e.app.Cancelled(ctx, msg.GetOrderId())
}
