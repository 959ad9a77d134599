package server

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/internal/console"
	"github.com/herald-events/herald/platform/auth"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/schema"
)

// ConsoleService is the name that turns the console on in --services
// (herald serve --services=console, alone or beside other services). The
// console is not a module: it consumes and produces nothing and has no
// database; it is a page of the admin listener that reads what the
// process reaches (see internal/console).
const ConsoleService = "console"

// consoleHandler serves /console/ on the admin listener: the console once
// Start has built it, "starting" before.
func (p *Process) consoleHandler(w http.ResponseWriter, r *http.Request) {
	c := p.console.Load()
	if c == nil {
		http.Error(w, "herald is starting: the console answers once its dependencies do", http.StatusServiceUnavailable)
		return
	}
	c.ServeHTTP(w, r)
}

// startConsole builds the console from what Start reached: the brokers,
// the registry, the codec, the dead-letter publisher, the event topics, the
// consumer groups of every known module and, when the orders service runs
// here, its gRPC implementation (called in process).
func (p *Process) startConsole(client schemaregistry.Client, codec *schema.Codec, replay bus.Publisher, topics []string) error {
	var events []string
	for _, t := range topics {
		if !bus.IsDeadLetterTopic(t) {
			events = append(events, t)
		}
	}
	var consumers []console.Consumer
	for _, m := range p.cfg.modules() {
		ts := m.Topics(p.cfg.Namespace)
		if len(ts) == 0 {
			continue
		}
		cons := console.Consumer{Group: m.Names(p.cfg.Namespace, "").Group(), Topics: ts}
		for _, msg := range m.Consumes {
			cons.Types = append(cons.Types, string(proto.MessageName(msg)))
		}
		consumers = append(consumers, cons)
	}
	var orders console.Orders
	for _, s := range p.services {
		for _, g := range s.GRPC() {
			if o, ok := g.Impl.(console.Orders); ok && g.Desc.ServiceName == ordersv1.OrderService_ServiceDesc.ServiceName {
				orders = o
			}
		}
	}
	extra, err := p.cfg.Kafka.ClientOptions()
	if err != nil {
		return err
	}
	cfg := console.Config{
		Brokers: p.brokers, KafkaOptions: extra, Codec: codec, Registry: client,
		Strategy: p.cfg.SubjectStrategy, Namespace: p.cfg.Namespace,
		Topics: events, Consumers: consumers, Orders: orders, Replay: replay,
		Gatherer: p.metrics.Gatherer(), Logger: p.log,
	}
	switch a := p.cfg.Auth; {
	case p.jwt != nil:
		cfg.Verify = p.jwt.Verify
	case a.On():
		// Client certificates authenticate gRPC connections; the admin
		// listener is plain HTTP and sees none, so the console stays shut.
		cfg.Verify = func(context.Context, string) (auth.Principal, error) {
			return auth.Principal{}, errors.New("the console accepts operator bearer tokens only: start herald with --grpc-jwks")
		}
	}
	c, err := console.New(cfg)
	if err != nil {
		return err
	}
	p.closers = append(p.closers, c.Close)
	p.console.Store(c)
	p.log.Info("console", "url", "http://"+p.httpAddr+console.Prefix, "auth", cfg.Verify != nil, "orders", orders != nil)
	return nil
}

// takeConsoleService reports whether --services names the console (and
// whether only it), and removes it
// from the list of modules.
func (c *Config) takeConsoleService() (named, only bool) {
	if !slices.Contains(c.Services, ConsoleService) {
		return false, false
	}
	c.Services = slices.DeleteFunc(c.Services, func(s string) bool { return s == ConsoleService })
	return true, len(c.Services) == 0
}
