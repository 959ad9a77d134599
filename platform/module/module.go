// Package module is how a herald service is declared and how the platform
// runs it.
//
// A service is one [Module] value: its name, the events it consumes and
// produces, whether it keeps a database, and a Build function that returns
// its [Parts] (gRPC services, event handlers made with [On], background
// workers). The process (internal/server) holds the list of modules and
// assembles the ones it runs with [Module.Start]; the service's own code
// has no wiring: no router, outbox, relay, inbox or transaction of its own.
//
// The platform owns the unit of work. A handler returns the events its
// event causes, and the platform applies the handler's effect and publishes
// those events as one unit:
//
//   - A module with a database: one database transaction holds the inbox
//     claim of the consumed event (a redelivery is dropped), everything the
//     handler writes (the transaction travels in the context, see
//     sqldb.DB.WithTx, and the stores join it) and the outbox rows of the
//     returned events; the outbox relay publishes them after the commit.
//     gRPC use cases get the same unit from [Work.Do].
//   - A module without a database: the returned events are produced inside
//     the consumer's bus transaction (Kafka), which commits them with the
//     consumed offset, so each consumed record yields its events exactly
//     once at read_committed isolation. Such a module's handlers must have
//     no other effect, and it runs only on a bus with consumer transactions.
//
// Either way a failed handler leaves nothing behind and the event is
// delivered again; the consumer router classifies the failure (transient,
// permanent, unclassified; see the consumer package).
package module

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/names"
	"github.com/herald-events/herald/platform/observe"
	"github.com/herald-events/herald/platform/outbox"
	"github.com/herald-events/herald/platform/sqldb"
)

// Module declares a service.
type Module struct {
	// Name names the service in configuration (--services), logs,
	// metrics, its consumer group and ce_source. Required.
	Name string
	// Consumes are the events the service handles (zero values such as
	// &ordersv1.OrderCreated{}); Build must return one handler for each.
	Consumes []proto.Message
	// Produces are the events the service publishes. A handler or a
	// [Work.Do] that returns another type fails.
	Produces []proto.Message
	// Database: the service keeps state in a database of its own, which
	// the platform opens, migrates (Migrations, then its inbox and outbox
	// tables) and makes the unit of work's transaction. Without one, the
	// service's events are produced in the consumer's bus transaction.
	Database bool
	// Contended: the service's units lock rows that other units lock too
	// (inventory's stock rows). A shared transaction holds the rows of all
	// its units until it commits, so two side by side mostly wait for each
	// other; a Contended service's shared transactions run one at a time
	// in a process (sqldb.DB.SetSharedTransactions). Without it, up to
	// four run at once on PostgreSQL. Its handlers should name those rows
	// ([OnLocking]): then transactions that take the same rows, of this
	// process or of another instance, wait in turn instead of deadlocking.
	Contended bool
	// Migrations creates the service's own tables; nil for none.
	Migrations func(sqldb.Dialect) []sqldb.Migration
	// Settings are the service's own settings; the binary offers each as
	// the flag --<name>-<key> and the environment variable
	// HERALD_<NAME>_<KEY> (upper case, "-" as "_"), and Build finds the
	// values set in [Deps].Settings.
	Settings []Setting
	// Build returns the service's parts. Required.
	Build func(ctx context.Context, d Deps) (*Parts, error)
}

// Setting is one setting of a module.
type Setting struct {
	// Key names it, lower case with dashes ("webhook-url").
	Key string
	// Usage is the flag's help text.
	Usage string
}

// Deps are what the platform gives a module's Build.
type Deps struct {
	// Names are the service's names (group, source, ...).
	Names names.Service
	// DB is the service's database, migrated; nil without
	// [Module].Database.
	DB *sqldb.DB
	// Work runs gRPC use cases as units of work; nil without
	// [Module].Database.
	Work *Work
	// Logger carries the service's name.
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics *observe.Metrics
	// Tracing is never nil.
	Tracing *observe.Tracing
	// Settings are the values set for the module's [Setting]s, by key;
	// a key not set is absent.
	Settings map[string]string
}

// Parts are what a module is made of once built.
type Parts struct {
	// GRPC are the gRPC services to serve.
	GRPC []GRPC
	// Handlers handle the events of [Module].Consumes, one each.
	Handlers []Handler
	// Workers run beside the handlers until their context ends; an error
	// stops the process.
	Workers []func(ctx context.Context) error
}

// GRPC is one gRPC service of a module.
type GRPC struct {
	Desc *grpc.ServiceDesc
	Impl any
}

// Handler is a typed event handler made with [On] or [OnLocking].
type Handler struct {
	typ      protoreflect.FullName
	register func(*consumer.Router) error
	// locks names what a call changes that concurrent calls change too;
	// nil for none.
	locks func(ctx context.Context, msg proto.Message) ([]string, error)
}

// On returns the handler of events of type T: fn gets the decoded event and
// returns the events it causes (nil for none), which the platform publishes
// in the same unit of work as fn's effect.
func On[T proto.Message](fn func(ctx context.Context, ev *consumer.Event, msg T) ([]proto.Message, error)) Handler {
	var zero T
	return Handler{
		typ:      zero.ProtoReflect().Descriptor().FullName(),
		register: func(r *consumer.Router) error { return consumer.Handle(r, fn) },
	}
}

// OnLocking is [On] for a handler whose effects change rows that other
// units of work change too, in this process or in another instance of the
// service (inventory's stock levels). locks names those rows from the
// event; it is called before the event's unit of work begins, outside its
// transaction, and may read the service's database (through a store, with
// the context it gets). A unit's transaction takes the locks of all the
// events it applies, in one order, before any handler runs (see
// sqldb.Prelude.Locks), so two instances of the service wait for each
// other in turn instead of deadlocking. The names are the service's own:
// the platform puts its name in front. Only a module with a Database may
// declare them; on SQLite, one writer per file, none is taken or asked
// for.
func OnLocking[T proto.Message](fn func(ctx context.Context, ev *consumer.Event, msg T) ([]proto.Message, error),
	locks func(ctx context.Context, msg T) ([]string, error)) Handler {
	h := On(fn)
	h.locks = func(ctx context.Context, msg proto.Message) ([]string, error) {
		m, ok := msg.(T)
		if !ok {
			return nil, nil // not a T: its handler dead-letters it
		}
		return locks(ctx, m)
	}
	return h
}

// Type is the event type the handler handles.
func (h Handler) Type() protoreflect.FullName { return h.typ }

// Validate checks the declaration without building it.
func (m Module) Validate() error {
	if m.Name == "" || m.Build == nil {
		return errors.New("module: Name and Build are required")
	}
	for _, list := range [][]proto.Message{m.Consumes, m.Produces} {
		for _, msg := range list {
			if _, err := event.RouteOf(msg.ProtoReflect().Descriptor()); err != nil {
				return fmt.Errorf("module %s: %w", m.Name, err)
			}
		}
	}
	if !m.Database && m.Migrations != nil {
		return fmt.Errorf("module %s: migrations without a database", m.Name)
	}
	return nil
}

// NeedsBusTransactions reports whether the module publishes events without
// a database of its own, which takes consumer transactions on the bus.
func (m Module) NeedsBusTransactions() bool { return !m.Database && len(m.Produces) > 0 }

// Names are the module's names in namespace for instance.
func (m Module) Names(namespace, instance string) names.Service {
	return names.Service{Namespace: namespace, Name: m.Name, Instance: instance}
}

// Topics are the topics the module consumes, in namespace, in the order
// of [Module].Consumes.
func (m Module) Topics(namespace string) []string {
	return topicsOf(namespace, m.Consumes)
}

// Events are the event types the module consumes or produces.
func (m Module) Events() []protoreflect.MessageDescriptor {
	var out []protoreflect.MessageDescriptor
	for _, msg := range slices.Concat(m.Consumes, m.Produces) {
		md := msg.ProtoReflect().Descriptor()
		if !slices.ContainsFunc(out, func(d protoreflect.MessageDescriptor) bool { return d.FullName() == md.FullName() }) {
			out = append(out, md)
		}
	}
	return out
}

func topicsOf(namespace string, msgs []proto.Message) []string {
	var out []string
	for _, msg := range msgs {
		r, err := event.RouteOf(msg.ProtoReflect().Descriptor())
		if err != nil {
			continue // Validate reports it
		}
		if t := event.Namespaced(namespace, r.Topic); !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// produces is the set of event types a module may publish.
type produces map[protoreflect.FullName]bool

func producesOf(m Module) produces {
	out := produces{}
	for _, msg := range m.Produces {
		out[msg.ProtoReflect().Descriptor().FullName()] = true
	}
	return out
}

// check fails for an event the module did not declare.
func (p produces) check(service string, msgs []proto.Message) error {
	for _, msg := range msgs {
		if msg == nil {
			return fmt.Errorf("%s: a nil event", service)
		}
		if name := msg.ProtoReflect().Descriptor().FullName(); !p[name] {
			return fmt.Errorf("%s publishes %s, which its module does not list in Produces", service, name)
		}
	}
	return nil
}

// Work runs a module's use cases as units of work. It is the gRPC side's
// counterpart of what the platform does for an event.
type Work struct {
	db       *sqldb.DB
	outbox   *outbox.Outbox
	produces produces
	service  string
	// locks are the lock namers of the handlers made with OnLocking, by
	// event type.
	locks map[protoreflect.FullName]func(ctx context.Context, msg proto.Message) ([]string, error)
}

// Do runs fn in one database transaction, carried by the context fn gets
// (the stores join it), and adds the events fn returns to the outbox in
// that transaction. An error from fn rolls everything back and is returned
// as is. Called inside another unit of work (an event's), it joins it.
// Concurrent calls may share one transaction, each in a savepoint of its
// own (group commit, see sqldb.DB.InTxShared).
func (w *Work) Do(ctx context.Context, fn func(ctx context.Context) ([]proto.Message, error)) error {
	return w.db.InTxShared(ctx, func(tx *sqldb.Tx) error { return w.apply(ctx, tx, fn) })
}

// DoLocking is [Work.Do] for a use case that changes what the module's
// units of work change too, and names it as their [OnLocking] namers do
// (the platform puts the service's name in front of each name). Its
// transaction takes those locks with those of the calls it shares the
// transaction with, before any of them runs and in one order, so that a
// gRPC call and a poll's events that change the same rows in opposite
// orders wait for each other instead of deadlocking. On SQLite, or with
// no names, it is Do.
func (w *Work) DoLocking(ctx context.Context, locks []string, fn func(ctx context.Context) ([]proto.Message, error)) error {
	if len(locks) == 0 || w.db.Dialect() != sqldb.Postgres {
		return w.Do(ctx, fn)
	}
	return w.db.InTxSharedAfter(ctx, sqldb.Prelude{Locks: w.lockNames(locks)}, func(tx *sqldb.Tx, _ any) error {
		return w.apply(ctx, tx, fn)
	})
}

// apply runs a use case in tx, carried by the context it gets, and adds
// the events it returns to the outbox in tx.
func (w *Work) apply(ctx context.Context, tx *sqldb.Tx, fn func(ctx context.Context) ([]proto.Message, error)) error {
	ctx = w.db.WithTx(ctx, tx)
	out, err := fn(ctx)
	if err != nil {
		return err
	}
	return w.add(ctx, tx, out)
}

// lockNames puts the service's name in front of a use case's lock names:
// lock names are database-wide.
func (w *Work) lockNames(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = w.service + "/" + n
	}
	return out
}

func (w *Work) add(ctx context.Context, tx *sqldb.Tx, out []proto.Message) error {
	if err := w.produces.check(w.service, out); err != nil {
		return err
	}
	if len(out) > 0 && w.outbox == nil {
		return fmt.Errorf("%s: %d events but no outbox", w.service, len(out))
	}
	for _, msg := range out {
		if _, err := w.outbox.Add(ctx, tx, msg); err != nil {
			return err
		}
	}
	return nil
}
