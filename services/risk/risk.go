// Package risk is the risk service: it scores every new order for fraud
// risk (the rules are in [github.com/herald-events/herald/services/risk/domain])
// and publishes RiskAssessed on herald.risk.v1.
//
// It has no database, no outbox and no inbox. It consumes OrderCreated and
// produces RiskAssessed with a kafkabus.Transformer: one Kafka transaction
// per poll holds the RiskAssessed records and the consumed offsets, so at
// read_committed isolation each OrderCreated record yields exactly one
// RiskAssessed, whatever crashes, rebalances or retries happen on the way.
// That promise is per record: an OrderCreated published twice (an outbox
// relay that crashed between publishing and marking republishes with the
// same ce_id) is two records and is assessed twice. The assessment is a pure
// function of the order, so the two RiskAssessed agree; consumers that must
// act once per order deduplicate on order_id. This relies on Kafka
// transactions, so the service runs on Kafka only.
//
// OrderCreated records that cannot be read (undecodable, no ce_id, a value
// that is not the type its ce_type names) go to herald.orders.v1.dlq with
// the routers' dead-letter headers, in the same transaction.
package risk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"google.golang.org/grpc"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/kafkabus"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/observe"
	"github.com/herald-events/herald/platform/outbox"
	"github.com/herald-events/herald/platform/schema"
	"github.com/herald-events/herald/services/risk/app"
	"github.com/herald-events/herald/services/risk/domain"
	"github.com/herald-events/herald/services/risk/ports"
)

// Name is the service's name in configuration, logs and ce_source.
const Name = "risk"

// Consumer group and transactional id, before namespacing.
const (
	Group         = "herald-risk"
	TransactionID = "herald-risk-transform"
)

// DefaultDenyList is the deny list used when [Deps].DenyList is nil.
func DefaultDenyList() []string { return []string{"mallory", "trudy"} }

// Deps are what the service needs from the process.
type Deps struct {
	// Codec decodes OrderCreated and encodes RiskAssessed. Required.
	Codec *schema.Codec
	// Kafka are the process's Kafka options: seeds, TLS and SASL,
	// logger. Required (at least the seeds).
	Kafka []kafkabus.Option
	// Logger defaults to [slog.Default].
	Logger *slog.Logger
	// Namespace prefixes topics, the consumer group and the transactional
	// id; see event.Namespaced.
	Namespace string
	// DenyList are customer ids that raise the score; nil means
	// [DefaultDenyList], empty means none.
	DenyList []string
	// Metrics may be nil.
	Metrics *observe.Metrics
	// Tracing may be nil.
	Tracing *observe.Tracing
}

// Service is a running risk service.
type Service struct {
	tr     *kafkabus.Transformer
	group  string
	topics []string
	events *ports.Events
}

// New wires the service; it connects to Kafka in Run.
func New(d Deps) (*Service, error) {
	if d.Codec == nil || len(d.Kafka) == 0 {
		return nil, errors.New("risk: Codec and Kafka are required")
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.DenyList == nil {
		d.DenyList = DefaultDenyList()
	}
	route, err := event.RouteOf((&ordersv1.OrderCreated{}).ProtoReflect().Descriptor())
	if err != nil {
		return nil, fmt.Errorf("risk: %w", err)
	}
	group := event.Namespaced(d.Namespace, Group)
	events := ports.NewEvents(ports.Config{
		App: app.New(domain.Policy{DenyList: d.DenyList}), Codec: d.Codec, Service: Name, Group: group,
		Namespace: d.Namespace, Metrics: d.Metrics, Tracing: d.Tracing,
	})
	opts := make([]kafkabus.TransformerOption, 0, len(d.Kafka)+4)
	for _, o := range d.Kafka {
		opts = append(opts, o)
	}
	opts = append(opts, kafkabus.Logger(d.Logger),
		kafkabus.TransactionalID(event.Namespaced(d.Namespace, TransactionID)),
		kafkabus.DeadLetter(events.DeadLetter), kafkabus.OnCommit(events.Committed))
	tr, err := kafkabus.NewTransformer(opts...)
	if err != nil {
		return nil, fmt.Errorf("risk: %w", err)
	}
	return &Service{tr: tr, group: group, topics: []string{event.Namespaced(d.Namespace, route.Topic)}, events: events}, nil
}

// Name returns [Name].
func (s *Service) Name() string { return Name }

// Subscription is the consumer group and the topics it reads.
func (s *Service) Subscription() (group string, topics []string) {
	return s.group, slices.Clone(s.topics)
}

// RegisterGRPC registers nothing: the service has no API.
func (s *Service) RegisterGRPC(*grpc.Server) {}

// GRPCServiceNames returns none.
func (s *Service) GRPCServiceNames() []string { return nil }

// Outbox returns nil: the service publishes through Kafka transactions.
func (s *Service) Outbox() *outbox.Outbox { return nil }

// Run assesses orders until ctx is done. It consumes with its own
// transactional session, not with the process's subscriber, which it
// ignores.
func (s *Service) Run(ctx context.Context, _ bus.Subscriber) error {
	return s.tr.Run(ctx, s.group, s.topics, s.events.Transform)
}
