// Package ports adapts the orders use cases to the outside: the gRPC
// OrderService and the handlers of inventory's events. An authenticated
// customer (platform/auth) sees, lists and cancels only their own orders.
package ports

import (
	"context"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/auth"
	"github.com/herald-events/herald/platform/grpcx"
	"github.com/herald-events/herald/services/orders/app"
	"github.com/herald-events/herald/services/orders/domain"
)

// GRPC implements ordersv1.OrderServiceServer.
type GRPC struct {
	ordersv1.UnimplementedOrderServiceServer
	app *app.App
}

// NewGRPC returns the gRPC port over the use cases.
func NewGRPC(a *app.App) *GRPC { return &GRPC{app: a} }

// CreateOrder accepts an order.
func (g *GRPC) CreateOrder(ctx context.Context, req *ordersv1.CreateOrderRequest) (*ordersv1.CreateOrderResponse, error) {
	customer, err := auth.OwnCustomer(ctx, "customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	in := app.CreateOrder{RequestID: req.GetRequestId(), CustomerID: customer}
	for _, it := range req.GetItems() {
		in.Lines = append(in.Lines, domain.Line{SKU: it.GetSku(), Quantity: it.GetQuantity(), UnitPrice: fromMoney(it.GetUnitPrice())})
	}
	o, err := g.app.CreateOrder(ctx, in)
	if err != nil {
		return nil, err
	}
	return &ordersv1.CreateOrderResponse{Order: toOrder(o)}, nil
}

// GetOrder returns one order.
func (g *GRPC) GetOrder(ctx context.Context, req *ordersv1.GetOrderRequest) (*ordersv1.GetOrderResponse, error) {
	owner, _ := auth.CustomerScope(ctx)
	o, err := g.app.GetOrder(ctx, req.GetOrderId(), owner)
	if err != nil {
		return nil, err
	}
	return &ordersv1.GetOrderResponse{Order: toOrder(o)}, nil
}

// Page bounds of ListOrders: page_size (at most 500) is a rule of the
// request. A page also ends before the order that would take it past
// maxPageBytes (with a next page token), so that 500 large orders (up to
// about 60 KB each) stay well under the 4 MB a gRPC client accepts by
// default.
const (
	defaultPageSize = 50
	maxPageBytes    = 1 << 20
)

// ListOrders returns a page of orders.
func (g *GRPC) ListOrders(ctx context.Context, req *ordersv1.ListOrdersRequest) (*ordersv1.ListOrdersResponse, error) {
	// The request's rules (orders.proto) bound page_size and the ids; the
	// interceptor of package contract has checked them.
	customer, err := auth.OwnCustomer(ctx, "customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	size, cursor, err := grpcx.ParsePage(req.GetPageSize(), req.GetPageToken(), defaultPageSize, "ListOrders")
	if err != nil {
		return nil, err
	}
	orders, cursors, err := g.app.ListOrders(ctx, customer, cursor, size)
	if err != nil {
		return nil, err
	}
	resp := &ordersv1.ListOrdersResponse{}
	used := 0
	for i, o := range orders {
		po := toOrder(o)
		n := protowire.SizeTag(1) + protowire.SizeBytes(proto.Size(po))
		if i > 0 && used+n > maxPageBytes {
			resp.NextPageToken = grpcx.PageToken(cursors[i-1])
			return resp, nil
		}
		used += n
		resp.Orders = append(resp.Orders, po)
	}
	if len(orders) == size {
		resp.NextPageToken = grpcx.PageToken(cursors[len(cursors)-1])
	}
	return resp, nil
}

// CancelOrder cancels an order.
func (g *GRPC) CancelOrder(ctx context.Context, req *ordersv1.CancelOrderRequest) (*ordersv1.CancelOrderResponse, error) {
	owner, _ := auth.CustomerScope(ctx)
	o, err := g.app.CancelOrder(ctx, req.GetOrderId(), owner)
	if err != nil {
		return nil, err
	}
	return &ordersv1.CancelOrderResponse{Order: toOrder(o)}, nil
}

func fromMoney(m *moneyv1.Money) domain.Money {
	return domain.Money{Currency: m.GetCurrencyCode(), Units: m.GetUnits(), Nanos: m.GetNanos()}
}

func toMoney(m domain.Money) *moneyv1.Money {
	return &moneyv1.Money{CurrencyCode: m.Currency, Units: m.Units, Nanos: m.Nanos}
}

func toOrder(o *domain.Order) *ordersv1.Order {
	out := &ordersv1.Order{
		OrderId: o.ID, CustomerId: o.CustomerID, Status: ordersv1.OrderStatus(o.Status),
		RejectionReason: o.RejectionReason, Total: toMoney(o.Total), RequestId: o.RequestID,
		CreateTime: timestamppb.New(o.Created), UpdateTime: timestamppb.New(o.Updated),
	}
	for _, l := range o.Lines {
		out.Items = append(out.Items, &ordersv1.LineItem{Sku: l.SKU, Quantity: l.Quantity, UnitPrice: toMoney(l.UnitPrice)})
	}
	return out
}
