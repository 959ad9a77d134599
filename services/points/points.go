// Package points is the loyalty service: it keeps a ledger of points per
// customer, awarding one point per whole currency unit of a confirmed
// order's total (OrderConfirmed) and taking them back when the order is
// cancelled (OrderCancelled); see the domain package for the rule. It
// consumes the orders events and publishes none. Its code is split into
// domain (rules), app (use cases), adapters (SQL store) and ports (gRPC and
// event handlers).
package points

import (
	"context"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"

	pointsv1 "github.com/herald-events/herald/gen/go/herald/points/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/observe"
	"github.com/herald-events/herald/platform/outbox"
	"github.com/herald-events/herald/platform/schema"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/services/points/adapters"
	"github.com/herald-events/herald/services/points/app"
	"github.com/herald-events/herald/services/points/ports"
)

// Name is the service's name in configuration and logs.
const Name = "points"

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
}

// Service is a running points service.
type Service struct {
	router *consumer.Router
	grpc   *ports.GRPC
}

// New migrates the database and wires the service.
func New(ctx context.Context, d Deps) (*Service, error) {
	store, err := adapters.Open(ctx, d.DB)
	if err != nil {
		return nil, fmt.Errorf("points store: %w", err)
	}
	a := app.New(store)
	router, err := consumer.NewRouter(consumer.Config{Group: "herald-" + Name, Namespace: d.Namespace, Metrics: d.Metrics, Tracing: d.Tracing, Decoder: d.Codec, DeadLetter: d.DeadLetter, Logger: d.Logger})
	if err != nil {
		return nil, err
	}
	if err := ports.NewEvents(a, store).Register(router); err != nil {
		return nil, err
	}
	return &Service{router: router, grpc: ports.NewGRPC(a)}, nil
}

// Name returns [Name].
func (s *Service) Name() string { return Name }

// Subscription is the consumer group and the topics it reads.
func (s *Service) Subscription() (group string, topics []string) {
	return s.router.Group(), s.router.Topics()
}

// RegisterGRPC adds PointsService to a gRPC server.
func (s *Service) RegisterGRPC(gs *grpc.Server) { pointsv1.RegisterPointsServiceServer(gs, s.grpc) }

// GRPCServiceNames lists the gRPC services for health reporting.
func (s *Service) GRPCServiceNames() []string {
	return []string{pointsv1.PointsService_ServiceDesc.ServiceName}
}

// Outbox returns nil: the service publishes no events.
func (s *Service) Outbox() *outbox.Outbox { return nil }

// Run consumes the orders events until ctx is done.
func (s *Service) Run(ctx context.Context, sub bus.Subscriber) error {
	return s.router.Run(ctx, sub)
}
