package rabbitbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/herald-events/herald/platform/bus"
)

// lagInterval is how often Run reports the ready messages of its queues.
const lagInterval = 15 * time.Second

// Subscriber is a RabbitMQ [bus.Subscriber].
type Subscriber struct {
	cfg config
}

var _ bus.Subscriber = (*Subscriber)(nil)

// NewSubscriber prepares a consumer; it connects in Run.
func NewSubscriber(opts ...Option) (*Subscriber, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Subscriber{cfg: cfg}, nil
}

// Capabilities: ordered by key with single active consumers (see the
// package documentation); no atomic batches, no partitions.
func (s *Subscriber) Capabilities() bus.Capabilities {
	return bus.Capabilities{System: system, AtomicBatches: false, OrderedByKey: true, Partitions: false}
}

// session is one connection of a Run, consuming every topic on one channel.
type session struct {
	conn       *amqp.Connection
	ch         *amqp.Channel
	deliveries map[string]<-chan amqp.Delivery // by topic
	lost       chan *amqp.Error
}

func (ss *session) close() {
	_ = ss.ch.Close() // returns what was not acked to the queues
	_ = ss.conn.Close()
}

// Run consumes topics as group until ctx is done. See [bus.Subscriber] and
// the package documentation. It fails at once when the first connection or
// the declaration of the group's queues fails; later connection losses are
// retried until ctx ends.
func (s *Subscriber) Run(ctx context.Context, group string, topics []string, h bus.Handler) error {
	if group == "" || len(topics) == 0 {
		return fmt.Errorf("rabbitmq consumer %q: a group and at least one topic are required", group)
	}
	for i, t := range topics {
		if err := checkTopic(t); err != nil {
			return fmt.Errorf("rabbitmq consumer %s: %w", group, err)
		}
		if slices.Contains(topics[:i], t) {
			return fmt.Errorf("rabbitmq consumer %s: topic %s listed twice", group, t)
		}
	}
	log := s.cfg.logger.With("group", group, "rabbitmq_client", s.cfg.name+"-subscriber-"+group)
	sess, err := s.open(ctx, group, topics, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("rabbitmq consumer %s: %w", group, err)
	}
	s.cfg.count("subscriber", "connected")
	log.Info("consumer started", "topics", topics)

	// Handlers get a context that outlives ctx by the grace period, so a
	// shutdown finishes the messages in hand instead of abandoning them.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(s.cfg.grace, hcancel)
		context.AfterFunc(hctx, func() { t.Stop() })
	})
	defer stop()

	for {
		lost := s.serve(ctx, hctx, sess, group, h, log)
		if ctx.Err() != nil {
			s.cfg.count("subscriber", "closed")
			log.Info("consumer stopped")
			return nil
		}
		s.cfg.count("subscriber", "disconnected")
		log.Warn("rabbitmq consumer connection lost; reconnecting", "err", lost)
		if sess, err = s.reconnect(ctx, group, topics, log); err != nil {
			if ctx.Err() != nil {
				log.Info("consumer stopped")
				return nil
			}
			return fmt.Errorf("rabbitmq consumer %s: %w", group, err)
		}
	}
}

// reconnect opens a new session with backoff until ctx ends; a permanent
// error (credentials, conflicting queue arguments) ends it.
func (s *Subscriber) reconnect(ctx context.Context, group string, topics []string, log *slog.Logger) (*session, error) {
	for attempt := 1; ; attempt++ {
		wait := s.cfg.backoff(attempt)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		sess, err := s.open(ctx, group, topics, log)
		if err == nil {
			s.cfg.count("subscriber", "reconnected")
			log.Info("rabbitmq consumer reconnected; consuming again", "attempts", attempt)
			return sess, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		s.cfg.count("subscriber", "reconnect_failed")
		if permanent(err) {
			return nil, err
		}
		log.Warn("rabbitmq consumer reconnect failed", "attempt", attempt, "err", err)
	}
}

// open dials, declares the group's queues and starts consuming them.
func (s *Subscriber) open(ctx context.Context, group string, topics []string, log *slog.Logger) (*session, error) {
	conn, err := s.cfg.dial(ctx, "subscriber", group)
	if err != nil {
		return nil, err
	}
	// A cancelled ctx closes the connection, which unblocks any call below.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	fail := func(err error) (*session, error) {
		_ = conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	topo, err := newTopology(conn, &s.cfg)
	if err != nil {
		return fail(err)
	}
	for _, t := range topics {
		q, err := topo.ensureQueue(group, t)
		if err != nil {
			return fail(err)
		}
		s.cfg.metrics.Lag(group, t, 0, int64(q.Messages))
	}
	topo.close()
	ch, err := conn.Channel()
	if err != nil {
		return fail(fmt.Errorf("open channel: %w", err))
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return fail(fmt.Errorf("qos: %w", err))
	}
	sess := &session{conn: conn, ch: ch, deliveries: map[string]<-chan amqp.Delivery{}}
	// One notification for either the connection or the channel closing.
	sess.lost = make(chan *amqp.Error, 2)
	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	go func() {
		select {
		case e := <-connClosed:
			sess.lost <- e
		case e := <-chClosed:
			sess.lost <- e
		}
	}()
	s.cfg.watchBlocked(conn, "subscriber", log)
	tag := consumerTag(s.cfg.name, group)
	for _, t := range topics {
		d, err := ch.Consume(QueueName(group, t), tag+"-"+t, false, false, false, false, nil)
		if err != nil {
			return fail(fmt.Errorf("consume %s: %w", QueueName(group, t), err))
		}
		sess.deliveries[t] = d
	}
	return sess, nil
}

func consumerTag(name, group string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return name + "-" + group + "-" + hex.EncodeToString(b[:])
}

// inbound is one delivery with the topic of its queue.
type inbound struct {
	topic string
	d     amqp.Delivery
}

// serve dispatches the session's deliveries until ctx is done (then it
// finishes what it took, within the grace, and returns nil) or the session is
// lost (then it lets the handlers in progress finish and returns the cause).
func (s *Subscriber) serve(ctx, hctx context.Context, sess *session, group string, h bus.Handler, log *slog.Logger) error {
	var (
		in      = make(chan inbound)
		quit    = make(chan struct{})
		forward sync.WaitGroup
	)
	for t, ds := range sess.deliveries {
		forward.Go(func() {
			for d := range ds {
				select {
				case in <- inbound{topic: t, d: d}:
				case <-quit:
					return // the rest goes back to the queue with the channel
				}
			}
		})
	}
	lagDone := make(chan struct{})
	go s.reportLag(sess, group, quit, lagDone, log)
	d := &dispatcher{s: s, h: h, hctx: hctx, log: log, group: group,
		sem: make(chan struct{}, s.cfg.keyWorkers), queues: map[string][]inbound{}, lost: make(chan struct{})}
	var lost error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case e := <-sess.lost:
			lost = errors.New("connection closed")
			if e != nil {
				lost = e
			}
			break loop
		case m := <-in:
			d.add(m)
		}
	}
	close(quit)
	if lost == nil {
		// Finish what was taken; a connection lost meanwhile abandons it.
		finished := make(chan struct{})
		go func() { d.wg.Wait(); close(finished) }()
		select {
		case <-finished:
		case e := <-sess.lost:
			lost = e
			d.abandon()
		}
	} else {
		d.abandon()
	}
	d.wg.Wait()
	if lost == nil {
		d.settle()
	}
	sess.close()
	forward.Wait()
	<-lagDone
	if lost == nil && ctx.Err() == nil {
		return errors.New("connection closed")
	}
	return lost
}

// reportLag reports the ready messages of the session's queues every
// lagInterval, from a channel of its own.
func (s *Subscriber) reportLag(sess *session, group string, quit, done chan struct{}, log *slog.Logger) {
	defer close(done)
	if s.cfg.metrics == nil {
		return
	}
	tick := time.NewTicker(lagInterval)
	defer tick.Stop()
	for {
		select {
		case <-quit:
			return
		case <-tick.C:
		}
		ch, err := sess.conn.Channel()
		if err != nil {
			continue
		}
		for t := range sess.deliveries {
			q, err := ch.QueueDeclarePassive(QueueName(group, t), true, false, false, false, s.cfg.queueArgs(t))
			if err != nil {
				log.Debug("rabbitmq: queue depth", "queue", QueueName(group, t), "err", err)
				break
			}
			s.cfg.metrics.Lag(group, t, 0, int64(q.Messages))
		}
		_ = ch.Close()
	}
}

// dispatcher runs one goroutine per key with messages queued, at most
// keyWorkers handling at once, each key in arrival order.
type dispatcher struct {
	s     *Subscriber
	h     bus.Handler
	hctx  context.Context
	log   *slog.Logger
	group string
	sem   chan struct{}

	mu      sync.Mutex
	queues  map[string][]inbound // by topic and key; present while a goroutine runs
	wg      sync.WaitGroup
	lost    chan struct{}
	once    sync.Once
	lastAck time.Time
}

func (d *dispatcher) abandon() { d.once.Do(func() { close(d.lost) }) }

// settleDelay is how long a stopping Run keeps its channel open after its
// last ack. A quorum queue applies acks (settles) as low-priority commands,
// after the channel's departure when the channel closes right behind them:
// the acked messages would then be returned and delivered again.
const settleDelay = 250 * time.Millisecond

// settle waits until settleDelay has passed since the last ack or reject.
func (d *dispatcher) settle() {
	d.mu.Lock()
	last := d.lastAck
	d.mu.Unlock()
	if last.IsZero() {
		return
	}
	time.Sleep(settleDelay - time.Since(last))
}

func (d *dispatcher) acked() {
	d.mu.Lock()
	d.lastAck = time.Now()
	d.mu.Unlock()
}

func (d *dispatcher) add(m inbound) {
	key := m.topic + "\x00" + string(keyOf(&m.d))
	d.mu.Lock()
	q, busy := d.queues[key]
	d.queues[key] = append(q, m)
	d.mu.Unlock()
	if !busy {
		d.wg.Go(func() { d.run(key) })
	}
}

func keyOf(dl *amqp.Delivery) []byte {
	if v, ok := headerValue(dl.Headers[KeyHeader]); ok && dl.Headers[KeyHeader] != nil {
		return v
	}
	return nil
}

// run handles key's queue until it is empty, or abandoned: then the
// remaining messages stay unacked and go back to the queue with the channel.
func (d *dispatcher) run(key string) {
	for {
		d.mu.Lock()
		m := d.queues[key][0]
		d.mu.Unlock()
		ok := false
		select {
		case d.sem <- struct{}{}:
			ok = d.handle(m)
			<-d.sem
		case <-d.lost:
		case <-d.hctx.Done():
		}
		d.mu.Lock()
		q := d.queues[key][1:]
		if !ok || len(q) == 0 {
			delete(d.queues, key)
			d.mu.Unlock()
			return
		}
		d.queues[key] = q
		d.mu.Unlock()
	}
}

// handle calls the handler until it succeeds, the delivery limit is
// reached, or the delivery is abandoned; it reports whether the key may go
// on.
func (d *dispatcher) handle(m inbound) bool {
	cfg := &d.s.cfg
	wait := cfg.retryFloor
	for attempt := 1; ; attempt++ {
		select {
		case <-d.lost:
			return false
		default:
		}
		if d.hctx.Err() != nil {
			return false
		}
		msg := fromDelivery(m.topic, &m.d)
		err := d.h(d.hctx, msg)
		if err == nil {
			aerr := m.d.Ack(false)
			d.acked()
			if aerr != nil {
				d.log.Warn("ack failed; the message will be delivered again", "topic", m.topic, "err", aerr)
			}
			return true
		}
		if d.hctx.Err() != nil {
			return false
		}
		if cfg.limit > 0 && attempt >= cfg.limit {
			d.log.Error("handler failed at the delivery limit; dead-lettering", "topic", m.topic,
				"to", bus.DeadLetterTopic(m.topic), "attempts", attempt, "err", err)
			rerr := m.d.Reject(false)
			d.acked()
			if rerr != nil {
				d.log.Warn("reject failed; the message will be delivered again", "topic", m.topic, "err", rerr)
			}
			return true
		}
		d.log.Warn("handler failed; will redeliver", "topic", m.topic, "key", string(msg.Key),
			"attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-d.hctx.Done():
			return false
		case <-d.lost:
			return false
		case <-time.After(wait):
		}
		wait = min(wait*2, cfg.retryCeil)
	}
}
