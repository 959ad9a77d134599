// Package notification is the notification service: it tells a customer
// about every change of their order's state (OrderConfirmed, OrderRejected,
// OrderCancelled), one notification per change.
//
// A notification is stored in the transaction of the event that caused it
// (with the event's inbox claim) and delivered after commit by a dispatcher
// loop, so a slow or failing receiver never holds up event consumption and
// a crash loses nothing. Delivery is at least once; the notification id
// travels as Idempotency-Key. Notifications go to a webhook when
// [Deps].WebhookURL is set, and to the log otherwise. The service consumes
// the orders events and publishes none. Its code is split into domain
// (rules), app (use cases and dispatcher), adapters (SQL store, channels)
// and ports (gRPC and event handlers).
package notification

import (
	"context"
	"fmt"
	"log/slog"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	notificationv1 "github.com/herald-events/herald/gen/go/herald/notification/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/observe"
	"github.com/herald-events/herald/platform/outbox"
	"github.com/herald-events/herald/platform/schema"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/services/notification/adapters"
	"github.com/herald-events/herald/services/notification/app"
	"github.com/herald-events/herald/services/notification/ports"
)

// Name is the service's name in configuration and logs.
const Name = "notification"

// Deps are what the service needs from the process.
type Deps struct {
	DB         *sqldb.DB
	Codec      *schema.Codec
	DeadLetter bus.Publisher
	Logger     *slog.Logger
	// Namespace prefixes topics and the consumer group; see event.Namespaced.
	Namespace string
	// Metrics may be nil.
	Metrics *observe.Metrics
	// Tracing may be nil.
	Tracing *observe.Tracing
	// WebhookURL receives every notification as a JSON POST (see
	// adapters.Webhook). Empty: notifications are written to Logger.
	WebhookURL string
}

// Service is a running notification service.
type Service struct {
	router     *consumer.Router
	dispatcher *app.Dispatcher
	grpc       *ports.GRPC
}

// New migrates the database and wires the service.
func New(ctx context.Context, d Deps) (*Service, error) {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	store, err := adapters.Open(ctx, d.DB)
	if err != nil {
		return nil, fmt.Errorf("notification store: %w", err)
	}
	var ch app.Channel = adapters.NewLog(d.Logger)
	if d.WebhookURL != "" {
		if ch, err = adapters.NewWebhook(adapters.WebhookConfig{URL: d.WebhookURL}); err != nil {
			return nil, err
		}
	}
	disp, err := app.NewDispatcher(app.DispatcherConfig{Store: store, Channel: ch, Logger: d.Logger})
	if err != nil {
		return nil, err
	}
	a := app.New(store, disp.Notify)
	router, err := consumer.NewRouter(consumer.Config{Group: "herald-" + Name, Namespace: d.Namespace, Metrics: d.Metrics, Tracing: d.Tracing, Decoder: d.Codec, DeadLetter: d.DeadLetter, Logger: d.Logger})
	if err != nil {
		return nil, err
	}
	if err := ports.NewEvents(a, store).Register(router); err != nil {
		return nil, err
	}
	return &Service{router: router, dispatcher: disp, grpc: ports.NewGRPC(a)}, nil
}

// Name returns [Name].
func (s *Service) Name() string { return Name }

// Subscription is the consumer group and the topics it reads.
func (s *Service) Subscription() (group string, topics []string) {
	return s.router.Group(), s.router.Topics()
}

// RegisterGRPC adds NotificationService to a gRPC server.
func (s *Service) RegisterGRPC(gs *grpc.Server) {
	notificationv1.RegisterNotificationServiceServer(gs, s.grpc)
}

// GRPCServiceNames lists the gRPC services for health reporting.
func (s *Service) GRPCServiceNames() []string {
	return []string{notificationv1.NotificationService_ServiceDesc.ServiceName}
}

// Outbox returns nil: the service publishes no events.
func (s *Service) Outbox() *outbox.Outbox { return nil }

// Run consumes the orders events and delivers notifications until ctx is
// done.
func (s *Service) Run(ctx context.Context, sub bus.Subscriber) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.dispatcher.Run(ctx) })
	g.Go(func() error { return s.router.Run(ctx, sub) })
	return g.Wait()
}
