// Package rabbitbus implements the [bus] interfaces on RabbitMQ (AMQP 0-9-1)
// with amqp091-go.
//
// # Topology
//
// Every topic belongs to a durable topic exchange named after its domain,
// [ExchangeName]: the topic without its version segment and without a
// ".dlq" suffix. "herald.orders.v1" and its dead letters
// "herald.orders.v1.dlq" both go through the exchange "herald.orders". A
// namespace prefix stays part of the name ("ns1.herald.orders.v1" uses
// "ns1.herald.orders"), so namespaced deployments sharing a broker never
// share an exchange and can be torn down apart. The routing key is always the
// full topic string.
//
// A consumer group gets one durable quorum queue per topic, [QueueName]
// ("<group>@<topic>"), bound to the topic's exchange with the topic as
// routing key. One queue per topic rather than one per group, so that each
// queue dead-letters to its own topic's ".dlq" key, and a group's topics
// are consumed, ordered and limited independently. The queues are declared with
//
//   - x-single-active-consumer: of several instances of one service only
//     one consumes a queue at a time; the others are standbys that take over
//     when its channel closes. This is what keeps per-key order across
//     instances (see Ordering).
//   - x-dead-letter-exchange (the topic's exchange) and
//     x-dead-letter-routing-key (topic+".dlq"): a message rejected by Run past
//     [DeliveryLimit], or returned to the queue more often than the quorum
//     queue's x-delivery-limit (set to the same value), is republished by the
//     broker to the topic's ".dlq" key. The consumer package's DeadLetter
//     middleware publishes to the same key through a Publisher, so a
//     subscriber of "herald.orders.v1.dlq" gets both kinds; Run adds the
//     herald_dlq_* headers to broker dead letters that lack them.
//
// RabbitMQ keeps no history: a message reaches the queues bound when it is
// published, and a queue declared later starts empty. So that nothing
// published before a topic's first consumer group exists is dropped, every
// exchange has an alternate exchange ("<exchange>.unrouted") that routes a
// message no queue is bound for into the topic's unrouted queue,
// [UnroutedQueueName] ("<topic>.unrouted"); publishers set the mandatory flag
// as well, so a message that not even that queue takes fails Publish instead
// of vanishing. When a group declares its queue for a topic it first moves
// whatever waits in the unrouted queue into its own, then binds it. The
// first group to subscribe thus gets the topic's early messages; a group
// added when another one already consumes starts with what is published from
// then on, so deploy new groups' queues ahead of their producers with
// [EnsureGroup]. Dead letters nobody reads yet wait in "<topic>.dlq.unrouted".
//
// Exchanges and queues are declared idempotently by publishers (once per
// topic and connection), by [Subscriber.Run], and by [EnsureTopology] /
// [EnsureGroup]. RabbitMQ refuses to redeclare one with other arguments
// (PRECONDITION_FAILED): changing [DeliveryLimit] for an existing group needs
// its queues deleted, or a policy.
//
// # Publishing
//
// [Publisher.Publish] publishes on a channel in confirm mode and returns once
// the broker confirmed every message (a nack, a return or a lost connection is
// an error; messages unconfirmed because the connection dropped are sent again
// after reconnecting, within the ctx). Headers become the AMQP header table
// (string values), the key travels in the header [KeyHeader], the message's id
// ([bus.Message.MessageID], the CloudEvents id) becomes the AMQP message id,
// delivery is persistent. Batches are not atomic (Capabilities.AtomicBatches
// is false): the outbox publishes and the inbox deduplicates, which together
// carry the exactly-once effect.
//
// # Consuming
//
// [Subscriber.Run] consumes each topic's queue with manual acks and a
// prefetch of 100 messages per topic. Messages are queued per key; each key is handled by
// one goroutine at a time in queue order, up to [KeyConcurrency] keys at once.
// A message is acked after its handler returned nil. A handler error is
// retried in place with backoff ([RetryBackoff]) while the key's later
// messages wait, as [bus.Handler] requires; it is not nack'd with requeue,
// which would let the broker hand the key's next message out first. With a
// [DeliveryLimit], a message whose handler failed that many times is rejected
// without requeue and dead-lettered by the broker, and its key moves on.
//
// On cancellation Run hands no new message to a handler, finishes the ones
// it had already taken for up to [ShutdownGrace] and acks them, then closes
// its channel: what it held unfinished or untouched goes back to the queue,
// to the front, and the standby (or the next Run) gets it. The consumer is
// not cancelled before that, so a standby does not become active while the
// old instance still works on some key.
//
// # Ordering
//
// Capabilities.OrderedByKey is true, thanks to single active consumers: one
// process handles a queue at a time; within it a key is handled
// in queue order; a failed message blocks its key instead of being requeued;
// and messages returned to a quorum queue (channel closed by shutdown, crash
// or a lost connection) are delivered again before newer ones. What RabbitMQ
// cannot promise: when a connection is lost (a network partition, a missed
// heartbeat), the broker hands its messages to the standby while the old
// process may still be finishing a handler for one of them, so two
// deliveries of a key can briefly overlap; a message dead-lettered past the
// delivery limit lets its key's later messages pass it; and early messages
// moved out of the unrouted queue can interleave with the first ones routed
// directly, within the moment it takes to bind the new queue. Partitions is
// false: consumed messages carry partition 0 and offset 0.
//
// # Connections
//
// amqp091 does not reconnect by itself (its experimental Config.Recovery is
// left off: recovery must drain handlers and redeclare topology in a
// particular order). Each publisher and each Run has its own connection;
// when it closes, they redial with exponential backoff and jitter
// ([ReconnectBackoff]), declare their topology again and resume publishing
// or consuming. Run first lets the handlers in progress finish, so a message
// redelivered after the reconnect never runs next to its old copy in the same
// process. The first connection is not retried: constructors and Run fail at
// once when the broker cannot be reached or refuses the credentials. Every
// state change is logged and counted in
// herald_rabbitmq_connection_events_total ([Registerer]).
package rabbitbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/observe"
)

// system is the OpenTelemetry messaging.system value for RabbitMQ.
const system = "rabbitmq"

// KeyHeader is the AMQP header carrying a message's key.
const KeyHeader = "herald_key"

const (
	// prefetch is the QoS prefetch count of each consumer: how many unacked
	// messages of one topic Run holds at once. More overlaps slow handlers
	// of different keys better, but hands more back (and redelivers more
	// after a crash) when Run stops.
	prefetch = 100
	// heartbeat is the AMQP heartbeat interval asked for; a connection
	// whose peer is silent for about twice as long is considered lost.
	heartbeat = 10 * time.Second
)

// Option configures a [Publisher], a [Subscriber], [Ping], [EnsureTopology]
// or [EnsureGroup].
type Option func(*config)

type config struct {
	url          string
	name         string
	logger       *slog.Logger
	metrics      *observe.Metrics
	reg          prometheus.Registerer
	events       *prometheus.CounterVec
	keyWorkers   int
	grace        time.Duration
	retryFloor   time.Duration
	retryCeil    time.Duration
	reconnFloor  time.Duration
	reconnCeil   time.Duration
	dialTimeout  time.Duration
	limit        int
	closeTimeout time.Duration
}

func newConfig(opts []Option) (config, error) {
	c := config{
		name:         "herald",
		logger:       slog.Default(),
		keyWorkers:   16,
		grace:        10 * time.Second,
		retryFloor:   100 * time.Millisecond,
		retryCeil:    5 * time.Second,
		reconnFloor:  100 * time.Millisecond,
		reconnCeil:   5 * time.Second,
		dialTimeout:  5 * time.Second,
		closeTimeout: 5 * time.Second,
	}
	for _, o := range opts {
		o(&c)
	}
	if c.url == "" {
		return c, errors.New("rabbitbus: no broker URL configured")
	}
	if _, err := amqp.ParseURI(c.url); err != nil {
		return c, fmt.Errorf("rabbitbus: broker URL %s: %w", redact(c.url), err)
	}
	if c.reg != nil {
		ev, err := connEvents(c.reg)
		if err != nil {
			return c, fmt.Errorf("rabbitbus: register metrics: %w", err)
		}
		c.events = ev
	}
	return c, nil
}

// URL sets the broker URL, "amqp://user:password@host:port/vhost" (amqps://
// for TLS). Required.
func URL(u string) Option { return func(c *config) { c.url = strings.TrimSpace(u) } }

// ClientName prefixes the connection names the broker shows
// (rabbitmqctl list_connections client_properties): "<name>-publisher",
// "<name>-subscriber-<group>". Default "herald".
func ClientName(name string) Option { return func(c *config) { c.name = name } }

// Logger sets the logger. Default: [slog.Default].
func Logger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// Metrics reports consumer lag per group and topic to m (partition 0): the
// messages ready in the queue, as the broker reports them when Run declares
// the queue, and as Run handles them. Default none.
func Metrics(m *observe.Metrics) Option { return func(c *config) { c.metrics = m } }

// Registerer registers the counter herald_rabbitmq_connection_events_total
// {client, event} in reg: client is publisher, subscriber or admin; event is
// connected, disconnected, reconnect_failed, reconnected, blocked, unblocked
// or closed. Registering the same counter again (several publishers) reuses
// it. Default: not counted.
func Registerer(reg prometheus.Registerer) Option { return func(c *config) { c.reg = reg } }

// KeyConcurrency bounds how many keys a subscriber handles at once;
// messages of one key are always handled one after the other, in queue
// order. Default 16.
func KeyConcurrency(n int) Option { return func(c *config) { c.keyWorkers = max(1, n) } }

// ShutdownGrace is how long a subscriber whose context was cancelled keeps
// handling the messages it had already taken. Default 10s. Within the grace
// they are handled and acked; past it the handlers' context is cancelled and
// what is unfinished goes back to the queue when the channel closes (the
// inbox makes the repeat harmless).
func ShutdownGrace(d time.Duration) Option { return func(c *config) { c.grace = max(0, d) } }

// RetryBackoff sets the pause before handling again a message whose handler
// failed, doubling from floor to ceil. Default 100ms to 5s.
func RetryBackoff(floor, ceil time.Duration) Option {
	return func(c *config) { c.retryFloor, c.retryCeil = floor, max(floor, ceil) }
}

// ReconnectBackoff sets the pause between attempts to reconnect after a
// connection was lost, doubling from floor to ceil with up to 25% jitter;
// attempts never stop while the publisher is open or Run's context lives.
// Default 100ms to 5s.
func ReconnectBackoff(floor, ceil time.Duration) Option {
	return func(c *config) { c.reconnFloor, c.reconnCeil = floor, max(floor, ceil) }
}

// DialTimeout bounds one connection attempt (TCP, TLS and the AMQP
// handshake). Default 5s.
func DialTimeout(d time.Duration) Option { return func(c *config) { c.dialTimeout = d } }

// DeliveryLimit dead-letters a message (to its topic's ".dlq" routing key)
// once Run's handler failed on it n times in a row, and, as the quorum
// queue's x-delivery-limit, once the broker took it back from consumers more
// than n times (crashes, lost connections, shutdowns past the grace): a
// guard against poison messages that crash the process. The key's later
// messages then go on. It is part of the queue's declaration, fixed when a
// group's queue is first declared. Default 0, unlimited: a failing message
// is retried forever and blocks its key, and dead-lettering is left to the
// consumer package's middleware, as [bus.Handler] describes.
func DeliveryLimit(n int) Option { return func(c *config) { c.limit = max(0, n) } }

// ExchangeName is the exchange a topic is published to: the topic without a
// trailing ".dlq" and without its last segment when that is a version
// ("v1", "v2", ...). "herald.orders.v1", "herald.orders.v1.dlq" →
// "herald.orders"; "ns1.herald.orders.v1" → "ns1.herald.orders"; a topic
// without a version, such as "audit", is its own exchange.
func ExchangeName(topic string) string {
	t := strings.TrimSuffix(topic, bus.DeadLetterSuffix)
	if i := strings.LastIndexByte(t, '.'); i > 0 && versionSegment.MatchString(t[i+1:]) {
		return t[:i]
	}
	return t
}

var versionSegment = regexp.MustCompile(`^v[0-9]+$`)

// unroutedExchange is the alternate exchange of a topic exchange.
func unroutedExchange(exchange string) string { return exchange + ".unrouted" }

// UnroutedQueueName is the queue that keeps a topic's messages published
// while no consumer group's queue is bound to the topic.
func UnroutedQueueName(topic string) string { return topic + ".unrouted" }

// QueueName is the queue of a consumer group for one topic:
// "<group>@<topic>".
func QueueName(group, topic string) string { return group + "@" + topic }

// groupOfQueue undoes QueueName.
func groupOfQueue(queue string) string {
	if i := strings.LastIndexByte(queue, '@'); i >= 0 {
		return queue[:i]
	}
	return ""
}

// checkTopic rejects topics that cannot be a routing key or a queue name.
func checkTopic(topic string) error {
	switch {
	case topic == "":
		return errors.New("empty topic")
	case len(UnroutedQueueName(bus.DeadLetterTopic(topic))) > 255:
		return fmt.Errorf("topic %q: longer than AMQP names allow", topic)
	case strings.ContainsAny(topic, "@*#"):
		return fmt.Errorf("topic %q: must not contain '@', '*' or '#'", topic)
	}
	return nil
}

// connEvents makes or finds the connection event counter in reg.
func connEvents(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	return observe.CounterVec(reg, prometheus.CounterOpts{
		Name: "herald_rabbitmq_connection_events_total",
		Help: "RabbitMQ connection state changes, by client (publisher, subscriber, admin) and event " +
			"(connected, disconnected, reconnect_failed, reconnected, blocked, unblocked, closed).",
	}, "client", "event")
}

// count records a connection event.
func (c *config) count(client, event string) {
	if c.events != nil {
		c.events.WithLabelValues(client, event).Inc()
	}
}

// dial opens one connection. client names the role in logs and metrics,
// suffix (optional) is appended to the connection name.
func (c *config) dial(ctx context.Context, client, suffix string) (*amqp.Connection, error) {
	name := c.name + "-" + client
	if suffix != "" {
		name += "-" + suffix
	}
	timeout := c.dialTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, max(time.Until(dl), time.Millisecond))
	}
	// Recovery stays off: the package reconnects by itself.
	ac := amqp.Config{Heartbeat: heartbeat, Dial: amqp.DefaultDial(timeout), Properties: amqp.NewConnectionProperties()}
	ac.Properties.SetClientConnectionName(name)
	type result struct {
		conn *amqp.Connection
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := amqp.DialConfig(c.url, ac)
		done <- result{conn, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("rabbitmq connect %s: %w", redact(c.url), r.err)
		}
		return r.conn, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.conn != nil {
				_ = r.conn.Close()
			}
		}()
		return nil, fmt.Errorf("rabbitmq connect %s: %w", redact(c.url), ctx.Err())
	}
}

// backoff returns the pause before reconnect attempt n (1-based).
func (c *config) backoff(n int) time.Duration {
	d := c.reconnFloor
	for i := 1; i < n && d < c.reconnCeil; i++ {
		d *= 2
	}
	d = min(d, c.reconnCeil)
	return d + rand.N(d/4+1)
}

// watchBlocked logs and counts connection.blocked notifications (the broker
// stops reading from publishers when memory or disk runs low).
func (c *config) watchBlocked(conn *amqp.Connection, client string, log *slog.Logger) {
	blocks := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	go func() {
		for b := range blocks {
			if b.Active {
				c.count(client, "blocked")
				log.Warn("rabbitmq blocked the connection; publishing waits", "reason", b.Reason)
			} else {
				c.count(client, "unblocked")
				log.Info("rabbitmq unblocked the connection")
			}
		}
	}()
}

// redact hides the password in an AMQP URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}

// permanent reports whether an AMQP error will not go away by reconnecting:
// rejected credentials, a missing vhost, refused access, or a declaration
// that conflicts with what exists.
func permanent(err error) bool {
	var ae *amqp.Error
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.Code {
	case amqp.AccessRefused, amqp.PreconditionFailed, amqp.NotAllowed, amqp.NotImplemented:
		return true
	}
	return false
}

// Ping connects once, opens a channel and checks that a server-named
// exclusive queue can be declared, reporting the first error: no broker
// answering, rejected credentials or vhost, or missing permissions.
func Ping(ctx context.Context, opts ...Option) error {
	cfg, err := newConfig(opts)
	if err != nil {
		return err
	}
	conn, err := cfg.dial(ctx, "admin", "ping")
	if err != nil {
		return fmt.Errorf("%w (check the URL, that rabbitmq-server runs, the user, password and vhost, and TLS settings)", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("rabbitmq %s: open channel: %w", redact(cfg.url), err)
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare("", false, true, true, false, nil); err != nil {
		return fmt.Errorf("rabbitmq %s: declare a test queue (does the user have configure permission on the vhost?): %w", redact(cfg.url), err)
	}
	return nil
}

// EnsureTopology declares, for each topic and its ".dlq" topic, the
// exchange, its alternate exchange and the unrouted queue, so that nothing
// published to them is lost before consumer groups exist (Kafka analogue:
// kafkabus.EnsureTopics). It is idempotent.
func EnsureTopology(ctx context.Context, url string, topics ...string) error {
	return EnsureTopologyWith(ctx, topics, URL(url))
}

// EnsureTopologyWith is [EnsureTopology] with options (TLS, logger, ...).
func EnsureTopologyWith(ctx context.Context, topics []string, opts ...Option) error {
	cfg, err := newConfig(opts)
	if err != nil {
		return err
	}
	return cfg.admin(ctx, "topology", func(t *topology) error {
		for _, tp := range topics {
			if err := t.ensureTopic(tp); err != nil {
				return err
			}
		}
		return nil
	})
}

// EnsureGroup declares the queues of a consumer group for topics, as Run
// does, so that the group receives what is published from now on even
// before it first runs (RabbitMQ keeps no history for groups that do not
// exist yet). Deploy steps call it for new groups before their producers
// start.
func EnsureGroup(ctx context.Context, group string, topics []string, opts ...Option) error {
	cfg, err := newConfig(opts)
	if err != nil {
		return err
	}
	return cfg.admin(ctx, "group", func(t *topology) error {
		for _, tp := range topics {
			if _, err := t.ensureQueue(group, tp); err != nil {
				return err
			}
		}
		return nil
	})
}

// admin runs fn on a fresh connection.
func (c *config) admin(ctx context.Context, what string, fn func(*topology) error) error {
	conn, err := c.dial(ctx, "admin", what)
	if err != nil {
		return err
	}
	defer conn.Close()
	t, err := newTopology(conn, c)
	if err != nil {
		return err
	}
	defer t.close()
	done := make(chan error, 1)
	go func() { done <- fn(t) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		_ = conn.Close() // unblocks fn
		<-done
		return ctx.Err()
	}
}
