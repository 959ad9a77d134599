// Package inventory is the inventory service: it holds stock levels, deducts
// an order's lines all or none when OrderCreated arrives, answers with
// InventoryDeducted or InventoryDeductionFailed, and returns the stock of a
// cancelled order (InventoryReleased).
package inventory

import (
	"context"
	"fmt"
	"log/slog"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/observe"
	"github.com/herald-events/herald/platform/outbox"
	"github.com/herald-events/herald/platform/schema"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/services/inventory/adapters"
	"github.com/herald-events/herald/services/inventory/app"
	"github.com/herald-events/herald/services/inventory/ports"
)

// Name is the service's name in configuration, logs and ce_source.
const Name = "inventory"

// Deps are what the service needs from the process.
type Deps struct {
	DB         *sqldb.DB
	Codec      *schema.Codec
	Publisher  bus.Publisher
	DeadLetter bus.Publisher
	Logger     *slog.Logger
	// Namespace prefixes topics and the consumer group; see event.Namespaced.
	Namespace string
	// Metrics may be nil.
	Metrics *observe.Metrics
	// Tracing may be nil.
	Tracing *observe.Tracing
}

// Service is a running inventory service.
type Service struct {
	outbox *outbox.Outbox
	router *consumer.Router
	grpc   *ports.GRPC
}

// New migrates the database and wires the service.
func New(ctx context.Context, d Deps) (*Service, error) {
	store, err := adapters.Open(ctx, d.DB)
	if err != nil {
		return nil, fmt.Errorf("inventory store: %w", err)
	}
	ob, err := outbox.New(outbox.Config{DB: d.DB, Source: "herald/" + Name, Publisher: d.Publisher, Encoder: d.Codec, Namespace: d.Namespace, Metrics: d.Metrics, Tracing: d.Tracing, Logger: d.Logger})
	if err != nil {
		return nil, err
	}
	a := app.New(store, ob)
	router, err := consumer.NewRouter(consumer.Config{Group: "herald-" + Name, Namespace: d.Namespace, Metrics: d.Metrics, Tracing: d.Tracing, Decoder: d.Codec, DeadLetter: d.DeadLetter, Logger: d.Logger})
	if err != nil {
		return nil, err
	}
	if err := ports.NewEvents(a, store).Register(router); err != nil {
		return nil, err
	}
	return &Service{outbox: ob, router: router, grpc: ports.NewGRPC(a)}, nil
}

// Name returns [Name].
func (s *Service) Name() string { return Name }

// Subscription is the consumer group and the topics it reads.
func (s *Service) Subscription() (group string, topics []string) {
	return s.router.Group(), s.router.Topics()
}

// RegisterGRPC adds InventoryService to a gRPC server.
func (s *Service) RegisterGRPC(gs *grpc.Server) {
	inventoryv1.RegisterInventoryServiceServer(gs, s.grpc)
}

// GRPCServiceNames lists the gRPC services for health reporting.
func (s *Service) GRPCServiceNames() []string {
	return []string{inventoryv1.InventoryService_ServiceDesc.ServiceName}
}

// Outbox exposes the outbox relay, for tests and metrics.
func (s *Service) Outbox() *outbox.Outbox { return s.outbox }

// Run relays the outbox and consumes the orders events until ctx is done.
func (s *Service) Run(ctx context.Context, sub bus.Subscriber) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.outbox.Run(ctx) })
	g.Go(func() error { return s.router.Run(ctx, sub) })
	return g.Wait()
}
