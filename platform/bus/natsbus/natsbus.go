// Package natsbus implements the [bus] interfaces on NATS JetStream with
// nats.go's jetstream package.
//
// # Streams
//
// A topic is a NATS subject: "herald.orders.v1", or "ns1.herald.orders.v1"
// in a namespace, is published and consumed as exactly that subject. Each
// topic gets a stream of its own, named after it with the characters that
// stream names forbid replaced ([StreamName]: "herald.orders.v1" is stored
// in the stream "herald_orders_v1", its dead letters "herald.orders.v1.dlq"
// in "herald_orders_v1_dlq"). One stream per topic rather than per domain
// because a topic is the unit herald configures, consumes and dead-letters:
// a consumer reads one topic of one stream with a single filter subject
// (multiple filter subjects need nats-server 2.10), namespaced test runs get
// disjoint streams, limits and purges apply to one topic, and the name is
// derived from the topic alone, without knowing what a "domain" is.
// [EnsureStreams] (or [EnsureTopics]) creates them with file storage, a
// duplicate window for publish-side deduplication and age/size limits
// ([StreamLimits]); like Kafka with automatic topic creation off, publishing
// to a topic without a stream fails. Subscribers look streams up by subject,
// so streams an operator made by hand, even one per domain with wildcard
// subjects, work too.
//
// # Publishing
//
// [Publisher.Publish] sends every message and waits for its PubAck, one after
// the other, so a returned nil means the stream has stored all of them and a
// failed call has stored a prefix. Headers travel as NATS headers (values a
// NATS header would alter, such as a stack trace, base64-encoded: see
// [EncodedHeaderPrefix]), the key in the header [KeyHeader], and the message's
// id ([bus.Message.MessageID], the CloudEvents id) becomes the Nats-Msg-Id,
// so a retried publish within the stream's duplicate window is dropped by
// the server; consumed messages get their ID back from it. Batches are not atomic (Capabilities.AtomicBatches
// is false): the outbox publishes one event at a time and the consumers'
// inbox deduplicates, which together carry the exactly-once effect.
//
// # Consuming
//
// [Subscriber.Run] binds one durable pull consumer per topic for the group
// ([ConsumerName]), with explicit acks, and fetches in batches. Messages are
// queued per key and each key is handled by one goroutine at a time in stream
// order, up to [KeyConcurrency] keys at once. A message is acked after its
// handler returned nil. A handler error is retried in place with backoff
// ([RetryBackoff]) while the key's later messages wait, as [bus.Handler]
// requires; the message's ack deadline is kept alive with in-progress acks
// meanwhile, so neither a long retry nor a slow handler makes the server
// redeliver it elsewhere. (A NakWithDelay per failure would let the server
// hand out the key's next message before the failed one returns, which
// breaks key order.) On cancellation Run finishes the messages it holds for
// up to [ShutdownGrace], then naks the unfinished ones without delay, in
// stream order, and returns: the server redelivers nak'd messages before new
// ones, so a successor continues where Run stopped, at once and in order,
// instead of waiting for [AckWait] to expire.
//
// Delivery is at least once. Capabilities.OrderedByKey is false, because
// JetStream cannot promise it: a key's messages are handled in order within
// one Run and across clean restarts, but several Runs of one group share the
// consumer and take different batches, and after a crash the messages the
// dead process held come back only when their AckWait expires, after newer
// ones were handled. Partitions is false: consumed messages carry partition
// 0 and the stream sequence as Offset.
//
// # Connections
//
// Each publisher, each Run, and each Ping or EnsureTopics call has its own
// connection, which reconnects forever with exponential backoff
// ([ReconnectBackoff]) and buffers what is published meanwhile. State changes
// are logged and counted in herald_nats_connection_events_total
// ([Registerer]).
package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-events/herald/platform/observe"
)

// Option configures a [Publisher], a [Subscriber], [Ping] or [EnsureTopics].
type Option func(*config)

type config struct {
	urls         []string
	name         string
	logger       *slog.Logger
	metrics      *observe.Metrics
	reg          prometheus.Registerer
	events       *prometheus.CounterVec
	ackWait      time.Duration
	maxDeliver   int
	batch        int
	fetchWait    time.Duration
	keyWorkers   int
	grace        time.Duration
	retryFloor   time.Duration
	retryCeil    time.Duration
	reconnFloor  time.Duration
	reconnCeil   time.Duration
	connTimeout  time.Duration
	drainTimeout time.Duration
	limits       StreamLimits
}

func newConfig(opts []Option) (config, error) {
	c := config{
		name:         "herald",
		logger:       slog.Default(),
		ackWait:      30 * time.Second,
		maxDeliver:   -1,
		batch:        100,
		fetchWait:    time.Second,
		keyWorkers:   16,
		grace:        10 * time.Second,
		retryFloor:   100 * time.Millisecond,
		retryCeil:    5 * time.Second,
		reconnFloor:  100 * time.Millisecond,
		reconnCeil:   5 * time.Second,
		connTimeout:  5 * time.Second,
		drainTimeout: 10 * time.Second,
		limits:       DefaultStreamLimits(),
	}
	for _, o := range opts {
		o(&c)
	}
	if len(c.urls) == 0 {
		return c, errors.New("natsbus: no server URL configured")
	}
	if c.ackWait < time.Second {
		return c, fmt.Errorf("natsbus: ack wait %s: must be at least 1s", c.ackWait)
	}
	if c.reg != nil {
		ev, err := connEvents(c.reg)
		if err != nil {
			return c, fmt.Errorf("natsbus: register metrics: %w", err)
		}
		c.events = ev
	}
	return c, nil
}

// URL sets the server URLs, "nats://host:port" (several for a cluster; each
// argument may itself be a comma-separated list). Required.
func URL(urls ...string) Option {
	return func(c *config) {
		for _, u := range urls {
			for _, p := range strings.Split(u, ",") {
				if p = strings.TrimSpace(p); p != "" {
					c.urls = append(c.urls, p)
				}
			}
		}
	}
}

// ClientName prefixes the connection names the server shows (connz):
// "<name>-publisher", "<name>-subscriber-<group>". Default "herald".
func ClientName(name string) Option { return func(c *config) { c.name = name } }

// Logger sets the logger. Default: [slog.Default].
func Logger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// Metrics reports consumer lag per group and topic to m (partition 0), from
// the pending count JetStream attaches to each delivery. Default none.
func Metrics(m *observe.Metrics) Option { return func(c *config) { c.metrics = m } }

// Registerer registers the counter herald_nats_connection_events_total
// {client, event} in reg: client is publisher, subscriber or admin; event
// is disconnected, reconnected, closed or error (asynchronous errors such as
// a slow consumer or a permissions violation). Registering the same counter
// again (several publishers) reuses it. Default: not counted.
func Registerer(reg prometheus.Registerer) Option { return func(c *config) { c.reg = reg } }

// AckWait is how long the server waits for a consumed message's ack before
// it redelivers the message. Run keeps the messages it holds alive with
// in-progress acks every AckWait/3, so this bounds how long the messages of
// a crashed or stuck process stay unavailable, not how long a handler may
// take. Default 30s; at least 1s. Applied to the durable consumer on every
// Run.
func AckWait(d time.Duration) Option { return func(c *config) { c.ackWait = d } }

// MaxDeliver bounds how often the server delivers one message; past it the
// server drops the message from the consumer (it stays in the stream) and
// publishes a MAX_DELIVERIES advisory. Handler errors do not count (Run
// retries them in place); deliveries count when a process crashed or was
// stopped holding the message, so a limit breaks crash loops on a poison
// message at the price of skipping it. Default -1, unlimited: nothing is
// skipped, and dead-lettering stays with the consumer package.
func MaxDeliver(n int) Option { return func(c *config) { c.maxDeliver = n } }

// FetchBatch bounds how many messages of one topic Run holds at once; it
// fetches up to that many per pull request and more as they finish.
// Default 100: more overlaps slow handlers better but redelivers more after
// a crash.
func FetchBatch(n int) Option { return func(c *config) { c.batch = max(1, n) } }

// FetchWait is how long one pull request waits for messages on an idle
// topic; it also bounds how long Run takes to notice cancellation while
// waiting. Default 1s.
func FetchWait(d time.Duration) Option {
	return func(c *config) { c.fetchWait = max(10*time.Millisecond, d) }
}

// KeyConcurrency bounds how many keys a subscriber handles at once;
// messages of one key are always handled one after the other, in stream
// order. Default 16.
func KeyConcurrency(n int) Option { return func(c *config) { c.keyWorkers = max(1, n) } }

// ShutdownGrace is how long a subscriber whose context was cancelled keeps
// handling the messages it already fetched. Default 10s. Within the grace
// everything held is handled and acked; past it, the handlers' context is
// cancelled and what is unfinished is nak'd for immediate redelivery (the
// inbox makes a repeated message harmless).
func ShutdownGrace(d time.Duration) Option { return func(c *config) { c.grace = d } }

// RetryBackoff sets the pause before handling again a message whose handler
// failed, doubling from floor to ceil. Default 100ms to 5s.
func RetryBackoff(floor, ceil time.Duration) Option {
	return func(c *config) { c.retryFloor, c.retryCeil = floor, max(floor, ceil) }
}

// ReconnectBackoff sets the pause between reconnect attempts after a
// connection was lost, doubling from floor to ceil with up to 25% jitter;
// attempts never stop. Default 100ms to 5s.
func ReconnectBackoff(floor, ceil time.Duration) Option {
	return func(c *config) { c.reconnFloor, c.reconnCeil = floor, max(floor, ceil) }
}

// ConnectTimeout bounds the initial connection (per server URL). The
// first connection is not retried: constructors and Run fail at once when
// no server answers. Default 5s.
func ConnectTimeout(d time.Duration) Option { return func(c *config) { c.connTimeout = d } }

// Streams sets the limits [EnsureTopics] gives new streams. Default
// [DefaultStreamLimits].
func Streams(l StreamLimits) Option { return func(c *config) { c.limits = l } }

// connEvents makes or finds the connection event counter in reg.
func connEvents(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	return observe.CounterVec(reg, prometheus.CounterOpts{
		Name: "herald_nats_connection_events_total",
		Help: "NATS connection state changes, by client (publisher, subscriber, admin) and event (disconnected, reconnected, closed, error).",
	}, "client", "event")
}

// conn is one NATS connection with its JetStream context.
type conn struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	closed  chan struct{}
	timeout time.Duration
	log     *slog.Logger
}

// connect dials the servers. client names the role in logs and metrics,
// suffix (optional) is appended to the connection name.
func (c *config) connect(ctx context.Context, client, suffix string) (*conn, error) {
	name := c.name + "-" + client
	if suffix != "" {
		name += "-" + suffix
	}
	log := c.logger.With("nats_client", name)
	cn := &conn{closed: make(chan struct{}), timeout: c.drainTimeout, log: log}
	count := func(event string) {
		if c.events != nil {
			c.events.WithLabelValues(client, event).Inc()
		}
	}
	if c.events != nil {
		for _, ev := range []string{"disconnected", "reconnected", "closed", "error"} {
			c.events.WithLabelValues(client, ev).Add(0)
		}
	}
	timeout := c.connTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, max(time.Until(dl), time.Millisecond))
	}
	floor, ceil := c.reconnFloor, c.reconnCeil
	opts := []nats.Option{
		nats.Name(name),
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			d := floor
			for i := 1; i < attempts && d < ceil; i++ {
				d *= 2
			}
			d = min(d, ceil)
			return d + rand.N(d/4+1)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			count("disconnected")
			if err != nil {
				log.Warn("nats disconnected; reconnecting", "err", err)
			} else {
				log.Info("nats disconnected")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			count("reconnected")
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Debug("nats reconnect attempt failed", "err", err)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			count("closed")
			if err := nc.LastError(); err != nil {
				log.Warn("nats connection closed", "err", err)
			} else {
				log.Debug("nats connection closed")
			}
			close(cn.closed)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			count("error")
			attrs := []any{"err", err}
			if sub != nil {
				attrs = append(attrs, "subject", sub.Subject)
			}
			log.Warn("nats asynchronous error", attrs...)
		}),
	}
	nc, err := nats.Connect(strings.Join(c.urls, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("nats connect %s: %w", c.redactedURLs(), err)
	}
	cn.nc = nc
	cn.js, err = jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats %s: jetstream: %w", c.redactedURLs(), err)
	}
	log.Debug("nats connected", "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerVersion())
	return cn, nil
}

// close drains the connection: what was published (acks included) is
// flushed and processed by the server before it closes. It waits for the
// close up to the drain timeout, then closes hard.
func (cn *conn) close() {
	if err := cn.nc.Drain(); err != nil {
		cn.nc.Close()
		return
	}
	select {
	case <-cn.closed:
	case <-time.After(cn.timeout):
		cn.log.Warn("nats drain timed out; closing")
		cn.nc.Close()
	}
}

// redactedURLs lists the server URLs without passwords, for errors.
func (c *config) redactedURLs() string {
	out := make([]string, len(c.urls))
	for i, u := range c.urls {
		if at := strings.LastIndex(u, "@"); at >= 0 {
			if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
				u = u[:scheme+3] + "***" + u[at:]
			}
		}
		out[i] = u
	}
	return strings.Join(out, ",")
}

// Ping connects once and checks that JetStream is enabled for the account,
// reporting the first error: no server answering, rejected credentials, or
// a server running without JetStream.
func Ping(ctx context.Context, opts ...Option) error {
	cfg, err := newConfig(opts)
	if err != nil {
		return err
	}
	cn, err := cfg.connect(ctx, "admin", "ping")
	if err != nil {
		return fmt.Errorf("%w (check the URL, that nats-server runs, and TLS/credential settings)", err)
	}
	defer cn.nc.Close()
	if _, err := cn.js.AccountInfo(ctx); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return fmt.Errorf("nats %s: JetStream is not enabled (run nats-server with -js, or enable JetStream for this account): %w", cfg.redactedURLs(), err)
		}
		return fmt.Errorf("nats %s: JetStream account info: %w", cfg.redactedURLs(), err)
	}
	return nil
}
