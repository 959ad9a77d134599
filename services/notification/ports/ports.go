// Package ports adapts the notification use cases to the outside: the gRPC
// NotificationService and the handlers of the orders events.
package ports

import (
	"context"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	notificationv1 "github.com/herald-events/herald/gen/go/herald/notification/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/auth"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/grpcx"
	"github.com/herald-events/herald/platform/module"
	"github.com/herald-events/herald/services/notification/app"
	"github.com/herald-events/herald/services/notification/domain"
)

// GRPC implements notificationv1.NotificationServiceServer.
type GRPC struct {
	notificationv1.UnimplementedNotificationServiceServer
	app *app.App
}

// NewGRPC returns the gRPC port.
func NewGRPC(a *app.App) *GRPC { return &GRPC{app: a} }

// Page size default of ListNotifications (its bound is a rule of the
// request).
const (
	defaultPageSize = 50
)

// ListNotifications returns a page of notifications; an authenticated
// customer sees only their own.
func (g *GRPC) ListNotifications(ctx context.Context, req *notificationv1.ListNotificationsRequest) (*notificationv1.ListNotificationsResponse, error) {
	// The request's rules (notification.proto) bound page_size and the
	// ids; the interceptor of package contract has checked them.
	customer, err := auth.OwnCustomer(ctx, "customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	size, cursor, err := grpcx.ParsePage(req.GetPageSize(), req.GetPageToken(), defaultPageSize, "ListNotifications")
	if err != nil {
		return nil, err
	}
	ns, last, err := g.app.List(ctx, app.Filter{CustomerID: customer, OrderID: req.GetOrderId()}, cursor, size)
	if err != nil {
		return nil, err
	}
	resp := &notificationv1.ListNotificationsResponse{}
	for _, n := range ns {
		resp.Notifications = append(resp.Notifications, toNotification(n))
	}
	if len(ns) == size {
		resp.NextPageToken = grpcx.PageToken(last)
	}
	return resp, nil
}

func toNotification(n *domain.Notification) *notificationv1.Notification {
	out := &notificationv1.Notification{
		NotificationId: n.ID, OrderId: n.OrderID, CustomerId: n.CustomerID,
		Kind: notificationv1.NotificationKind(n.Kind), Text: n.Text, CreateTime: timestamppb.New(n.Created),
		DeliveryStatus: notificationv1.DeliveryStatus(n.Status), DeliveryAttempts: int32(n.Attempts), LastError: n.LastError,
	}
	if !n.Delivered.IsZero() {
		out.DeliverTime = timestamppb.New(n.Delivered)
	}
	return out
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
	return []module.Handler{module.On(e.onOrderConfirmed), module.On(e.onOrderRejected), module.On(e.onOrderCancelled)}
}

func (e *Events) onOrderConfirmed(ctx context.Context, _ *consumer.Event, msg *ordersv1.OrderConfirmed) ([]proto.Message, error) {
	t := msg.GetTotal()
	text := domain.ConfirmedText(msg.GetOrderId(), domain.Money{Currency: t.GetCurrencyCode(), Units: t.GetUnits(), Nanos: t.GetNanos()})
	return nil, e.app.Record(ctx, msg.GetOrderId(), msg.GetCustomerId(), domain.KindConfirmed, text)
}

func (e *Events) onOrderRejected(ctx context.Context, _ *consumer.Event, msg *ordersv1.OrderRejected) ([]proto.Message, error) {
	text := domain.RejectedText(msg.GetOrderId(), msg.GetReason())
	return nil, e.app.Record(ctx, msg.GetOrderId(), msg.GetCustomerId(), domain.KindRejected, text)
}

func (e *Events) onOrderCancelled(ctx context.Context, _ *consumer.Event, msg *ordersv1.OrderCancelled) ([]proto.Message, error) {
	text := domain.CancelledText(msg.GetOrderId())
	return nil, e.app.Record(ctx, msg.GetOrderId(), msg.GetCustomerId(), domain.KindCancelled, text)
}
