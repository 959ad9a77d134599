package module

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/contract"
	"github.com/herald-events/herald/platform/inbox"
	"github.com/herald-events/herald/platform/names"
	"github.com/herald-events/herald/platform/observe"
	"github.com/herald-events/herald/platform/outbox"
	"github.com/herald-events/herald/platform/sqldb"
)

// Codec decodes consumed values and encodes published ones;
// schema.Codec is one.
type Codec interface {
	consumer.Decoder
	outbox.Encoder
}

// Platform is what a process offers the modules it runs.
type Platform struct {
	// Namespace and Instance complete the services' names (see
	// [names.Service]).
	Namespace, Instance string
	// Codec frames event values. Required.
	Codec Codec
	// DeadLetter publishes dead letters outside a consumer transaction.
	// Required.
	DeadLetter bus.Publisher
	// DB returns the database of a service (see [Module].Database),
	// reachable; the process owns and closes it.
	DB func(service string) (*sqldb.DB, error)
	// Relay returns the publisher of a service's outbox relay
	// (transactional where the bus has transactions); the process owns
	// and closes it.
	Relay func(s names.Service) (bus.Publisher, error)
	// BusTransactions: the process's subscriber consumes in bus
	// transactions and hands handlers a delivery publisher (see
	// bus.WithDeliveryPublisher). Modules that [Module.NeedsBusTransactions]
	// refuse to start without.
	BusTransactions bool
	// BusName names the bus for errors ("kafka", "nats", ...).
	BusName string
	// Settings are the values of the modules' settings, by service.
	Settings map[string]map[string]string
	// Logger, Metrics (may be nil) and Tracing (default
	// observe.LocalTracing) are shared by every service.
	Logger  *slog.Logger
	Metrics *observe.Metrics
	Tracing *observe.Tracing
	// Contract enforces the schemas' rules at the modules' doors: their
	// outboxes and bus units refuse invalid events, and their consumer
	// routers dead-letter events that break their contract or arrive on a
	// topic their type is not declared for. Default nil: no checks.
	Contract *contract.Validator
	// RequireCloudEvents names the services whose consumers refuse
	// records without CloudEvents headers (see
	// consumer.Config.RequireCloudEvents).
	RequireCloudEvents func(service string) bool
	// OutboxBeforeMark is a fault-injection hook per service; see
	// outbox.Config.BeforeMark.
	OutboxBeforeMark map[string]func(ids []int64) error
	// InboxRetention is how long the inbox of a module with a database
	// keeps the claim of an event it consumed (see inbox.Expire); 0 keeps
	// claims forever.
	InboxRetention time.Duration
}

// Instance is a started module.
type Instance struct {
	module  Module
	names   names.Service
	grpc    []GRPC
	outbox  *outbox.Outbox
	router  *consumer.Router
	workers []func(ctx context.Context) error
	db      *sqldb.DB
	expire  *inbox.ExpireConfig
}

// Start builds m for a process: it migrates the service's database (its
// own tables, then the platform's inbox and outbox), makes the outbox and
// its relay when the module produces events, calls Build, and registers the
// handlers on a consumer router whose unit of work fits the module.
func (m Module) Start(ctx context.Context, p Platform) (*Instance, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if p.Codec == nil || p.DeadLetter == nil {
		return nil, errors.New("module: the platform's Codec and DeadLetter are required")
	}
	if m.NeedsBusTransactions() && !p.BusTransactions {
		return nil, fmt.Errorf("%s publishes without a database, in consumer transactions, which %s does not have: run it on Kafka", m.Name, p.BusName)
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	if p.Tracing == nil {
		p.Tracing = observe.LocalTracing()
	}
	n := m.Names(p.Namespace, p.Instance)
	log := p.Logger.With("service", m.Name)
	in := &Instance{module: m, names: n}
	// The service's spans carry its own service.name, also when several
	// services share the process.
	tracing := p.Tracing.Service(m.Name)
	d := Deps{Names: n, Logger: log, Metrics: p.Metrics, Tracing: tracing, Settings: p.Settings[m.Name]}
	prod := producesOf(m)

	var (
		unit consumer.Unit = consumer.Direct
		work *Work
	)
	if m.Database {
		db, err := p.DB(m.Name)
		if err != nil {
			return nil, fmt.Errorf("%s database: %w", m.Name, err)
		}
		in.db = db
		if m.Contended {
			db.SetSharedTransactions(1)
		}
		var ms []sqldb.Migration
		if m.Migrations != nil {
			ms = append(ms, m.Migrations(db.Dialect())...)
		}
		ms = append(ms, inbox.Migrations(db.Dialect())...)
		if len(m.Produces) > 0 {
			ms = append(ms, outbox.Migrations(db.Dialect())...)
		}
		if err := db.Migrate(ctx, m.Name, ms); err != nil {
			return nil, fmt.Errorf("%s database: %w", m.Name, err)
		}
		work = &Work{db: db, produces: prod, service: m.Name}
		if len(m.Produces) > 0 {
			pub, err := p.Relay(n)
			if err != nil {
				return nil, fmt.Errorf("%s outbox relay: %w", m.Name, err)
			}
			in.outbox, err = outbox.New(outbox.Config{DB: db, Service: m.Name, Source: n.Source(), Publisher: pub, Encoder: p.Codec,
				Namespace: p.Namespace, Metrics: p.Metrics, Tracing: tracing, Logger: log, BeforeMark: p.OutboxBeforeMark[m.Name], Contract: p.Contract})
			if err != nil {
				return nil, err
			}
			work.outbox = in.outbox
		}
		d.DB, d.Work = db, work
		unit = work.unit
	} else if len(m.Produces) > 0 {
		unit = (&busUnit{codec: p.Codec, produces: prod, names: n, tracing: tracing, metrics: p.Metrics, contract: p.Contract}).run
	}

	parts, err := m.Build(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", m.Name, err)
	}
	if parts == nil {
		parts = &Parts{}
	}
	in.grpc, in.workers = parts.GRPC, parts.Workers
	if err := m.checkHandlers(parts.Handlers); err != nil {
		return nil, err
	}
	for _, h := range parts.Handlers {
		if h.locks == nil {
			continue
		}
		if work == nil {
			return nil, fmt.Errorf("module %s: the handler of %s names locks, which only a module with a Database takes", m.Name, h.typ)
		}
		if work.locks == nil {
			work.locks = map[protoreflect.FullName]func(context.Context, proto.Message) ([]string, error){}
		}
		work.locks[h.typ] = h.locks
	}
	if len(parts.Handlers) > 0 {
		if in.db != nil && p.InboxRetention > 0 {
			in.expire = &inbox.ExpireConfig{DB: in.db, Service: m.Name, Retention: p.InboxRetention, Logger: log, Metrics: p.Metrics}
		}
		in.router, err = consumer.NewRouter(consumer.Config{Group: n.Group(), Namespace: p.Namespace, Decoder: p.Codec, DeadLetter: p.DeadLetter,
			Logger: log, Metrics: p.Metrics, Tracing: tracing, Unit: unit, Contract: p.Contract,
			RequireCloudEvents: p.RequireCloudEvents != nil && p.RequireCloudEvents(m.Name)})
		if err != nil {
			return nil, err
		}
		for _, h := range parts.Handlers {
			if err := h.register(in.router); err != nil {
				return nil, err
			}
		}
		// The router namespaces the group itself; the topics must agree
		// with the declaration, which Subscriptions reads unbuilt.
		if got, want := in.router.Topics(), m.Topics(p.Namespace); !sameSet(got, want) {
			return nil, fmt.Errorf("module %s: handlers read %v, Consumes declares %v", m.Name, got, want)
		}
	}
	return in, nil
}

// checkHandlers: one handler per consumed type, none other.
func (m Module) checkHandlers(hs []Handler) error {
	want := map[string]bool{}
	for _, msg := range m.Consumes {
		want[string(msg.ProtoReflect().Descriptor().FullName())] = true
	}
	for _, h := range hs {
		if !want[string(h.typ)] {
			return fmt.Errorf("module %s: a handler for %s, which Consumes does not list (or lists once)", m.Name, h.typ)
		}
		delete(want, string(h.typ))
	}
	if len(want) > 0 {
		missing := make([]string, 0, len(want))
		for t := range want {
			missing = append(missing, t)
		}
		slices.Sort(missing)
		return fmt.Errorf("module %s: no handler for %v", m.Name, missing)
	}
	return nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Name is the module's name.
func (in *Instance) Name() string { return in.module.Name }

// Names are the service's names in this process.
func (in *Instance) Names() names.Service { return in.names }

// GRPC are the gRPC services the module serves.
func (in *Instance) GRPC() []GRPC { return slices.Clone(in.grpc) }

// DB is the module's database, or nil when it has none.
func (in *Instance) DB() *sqldb.DB { return in.db }

// Outbox is the module's outbox, or nil when it has none.
func (in *Instance) Outbox() *outbox.Outbox { return in.outbox }

// Subscription is the consumer group and the topics it reads; no topics
// when the module consumes nothing.
func (in *Instance) Subscription() (group string, topics []string) {
	if in.router == nil {
		return in.names.Group(), nil
	}
	return in.router.Group(), in.router.Topics()
}

// Run relays the outbox, consumes with sub, purges the inbox of claims past
// their retention and runs the workers until ctx is done or one of them
// fails.
func (in *Instance) Run(ctx context.Context, sub bus.Subscriber) error {
	g, ctx := errgroup.WithContext(ctx)
	if in.outbox != nil {
		g.Go(func() error { return in.outbox.Run(ctx) })
	}
	if in.router != nil {
		g.Go(func() error { return in.router.Run(ctx, sub) })
	}
	if in.expire != nil {
		g.Go(func() error { return inbox.Expire(ctx, *in.expire) })
	}
	for _, w := range in.workers {
		g.Go(func() error { return w(ctx) })
	}
	return g.Wait()
}

// unit is the unit of work of an event of a module with a database: the
// inbox claim, the handler's writes and the outbox rows of its events, in
// one transaction (shared, each event in a savepoint, with the events of
// other keys and partitions handled at the same time, where the database
// groups commits).
func (w *Work) unit(ctx context.Context, ev *consumer.Event, h consumer.Handler) error {
	// The claims of a shared transaction's events are made together,
	// before its first handler runs, after the locks of all of them.
	pre := inbox.ClaimFirst(ev.ID, ev.Type)
	if w.locks != nil && ev.Message != nil && w.db.Dialect() == sqldb.Postgres {
		if namer := w.locks[ev.Message.ProtoReflect().Descriptor().FullName()]; namer != nil {
			names, err := namer(ctx, ev.Message)
			if err != nil {
				return fmt.Errorf("locks of %s %s: %w", ev.Type, ev.ID, err)
			}
			pre.Locks = w.lockNames(names)
		}
	}
	return w.db.InTxSharedAfter(ctx, pre, func(tx *sqldb.Tx, claimed any) error {
		if fresh, _ := claimed.(bool); !fresh {
			ev.MarkDuplicate()
			return nil
		}
		ctx := w.db.WithTx(ctx, tx)
		out, err := h(ctx, ev)
		if err != nil {
			return err
		}
		if err := w.add(ctx, tx, out); err != nil {
			if _, ok := contract.As(err); ok {
				// An event that breaks its contract would be returned
				// again: dead-letter the consumed event at once.
				return consumer.Permanent(err)
			}
			return err
		}
		return nil
	})
}
