package natsbus

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-events/herald/platform/bus"
)

// Subscriber is a JetStream [bus.Subscriber].
type Subscriber struct {
	cfg config
}

var _ bus.Subscriber = (*Subscriber)(nil)

// NewSubscriber prepares a subscriber; each Run connects on its own.
func NewSubscriber(opts ...Option) (*Subscriber, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Subscriber{cfg: cfg}, nil
}

// Capabilities: at-least-once delivery, no key-order promise, no partitions
// (see the package documentation for what is ordered in practice).
func (s *Subscriber) Capabilities() bus.Capabilities { return capabilities }

// binding is one topic's durable consumer.
type binding struct {
	topic  string
	stream string
	cc     jetstream.ConsumerConfig
	cons   jetstream.Consumer
	freed  chan struct{} // signalled when a held message of the topic is released
}

// Run consumes topics as group until ctx is done or the connection is
// closed for good. See the package documentation for the delivery rules.
// It fails at once when a topic has no stream.
func (s *Subscriber) Run(ctx context.Context, group string, topics []string, h bus.Handler) error {
	if group == "" {
		return errors.New("nats consumer: empty group")
	}
	if len(topics) == 0 {
		return fmt.Errorf("nats consumer %s: no topics", group)
	}
	topics = slices.Clone(topics)
	slices.Sort(topics)
	topics = slices.Compact(topics)
	for _, t := range topics {
		if err := validTopic(t); err != nil {
			return fmt.Errorf("nats consumer %s: %w", group, err)
		}
	}
	log := s.cfg.logger.With("group", group)
	cn, err := s.cfg.connect(ctx, "subscriber", group)
	if err != nil {
		return fmt.Errorf("nats consumer %s: %w", group, err)
	}
	defer cn.close()

	binds := make([]*binding, 0, len(topics))
	for _, t := range topics {
		b, err := s.bind(ctx, cn.js, group, t)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("nats consumer %s: %w", group, err)
		}
		binds = append(binds, b)
	}
	log.Info("consumer started", "topics", topics, "consumer", binds[0].cc.Durable)

	// Fetching stops when ctx is done or a fetch loop fails for good.
	fctx, fcancel := context.WithCancelCause(ctx)
	defer fcancel(nil)
	// Handlers get a context that outlives fctx by the grace period, so a
	// shutdown finishes the messages in hand instead of abandoning them.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	stop := context.AfterFunc(fctx, func() {
		t := time.AfterFunc(s.cfg.grace, hcancel)
		context.AfterFunc(hctx, func() { t.Stop() })
	})
	defer stop()

	sc := &scheduler{
		cfg: &s.cfg, log: log, group: group, h: h, hctx: hctx,
		sem:    make(chan struct{}, s.cfg.keyWorkers),
		queues: map[qkey]*queue{},
		count:  map[string]int{},
		held:   map[*item]struct{}{},
	}
	hbDone := make(chan struct{})
	var hb sync.WaitGroup
	hb.Go(func() { sc.heartbeat(hbDone) })

	var fetchers sync.WaitGroup
	for _, b := range binds {
		fetchers.Go(func() {
			if err := s.fetchLoop(fctx, log, cn, b, sc); err != nil {
				fcancel(err)
			}
		})
	}
	fetchers.Wait()
	sc.workers.Wait()
	// Nothing fetches any more: the naks cannot come straight back to us.
	sc.nakAbandoned()
	close(hbDone)
	hb.Wait()

	if err := context.Cause(fctx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("nats consumer %s: %w", group, err)
	}
	log.Info("consumer stopped")
	return nil
}

// bind creates or updates the group's durable consumer on topic's stream.
func (s *Subscriber) bind(ctx context.Context, js jetstream.JetStream, group, topic string) (*binding, error) {
	stream, err := js.StreamNameBySubject(ctx, topic)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("topic %s: no stream stores this subject (create it with natsbus.EnsureStreams): %w", topic, err)
	}
	if err != nil {
		return nil, fmt.Errorf("topic %s: look up stream: %w", topic, err)
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("topic %s: stream %s: %w", topic, stream, err)
	}
	name := ConsumerName(group)
	// A stream that stores more than this topic (an operator's per-domain
	// stream) may have one consumer of the group per topic.
	if subj := st.CachedInfo().Config.Subjects; len(subj) != 1 || subj[0] != topic {
		name += "__" + sanitize(topic)
	}
	b := &binding{topic: topic, stream: stream, freed: make(chan struct{}, 1), cc: jetstream.ConsumerConfig{
		Durable:       name,
		Description:   fmt.Sprintf("herald group %s on %s", group, topic),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.ackWait,
		MaxDeliver:    s.cfg.maxDeliver,
		MaxAckPending: max(1000, 4*s.cfg.batch),
		FilterSubject: topic,
	}}
	if b.cons, err = js.CreateOrUpdateConsumer(ctx, stream, b.cc); err != nil {
		return nil, fmt.Errorf("topic %s: consumer %s on stream %s: %w", topic, name, stream, err)
	}
	return b, nil
}

// fetchLoop pulls b's messages into sc while fewer than the batch size are
// held, until ctx is done. It returns an error only when the connection is
// closed for good.
func (s *Subscriber) fetchLoop(ctx context.Context, log *slog.Logger, cn *conn, b *binding, sc *scheduler) error {
	log = log.With("topic", b.topic)
	wait := s.cfg.retryFloor
	refill := max(1, s.cfg.batch/4)
	for ctx.Err() == nil {
		room := s.cfg.batch - sc.heldOf(b.topic)
		if room < refill {
			select {
			case <-ctx.Done():
			case <-b.freed:
			}
			continue
		}
		mb, err := b.cons.Fetch(room, jetstream.FetchMaxWait(s.cfg.fetchWait))
		if err == nil {
			for m := range mb.Messages() {
				sc.dispatch(b, m)
			}
			err = mb.Error()
		}
		if err == nil {
			wait = s.cfg.retryFloor
			continue
		}
		switch {
		case errors.Is(err, nats.ErrConnectionClosed):
			return fmt.Errorf("fetch %s: %w", b.topic, err)
		case errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound):
			log.Warn("consumer deleted; re-creating it", "consumer", b.cc.Durable, "err", err)
			if c, cerr := cn.js.CreateOrUpdateConsumer(ctx, b.stream, b.cc); cerr == nil {
				b.cons = c
			} else if ctx.Err() == nil {
				log.Warn("re-create consumer", "consumer", b.cc.Durable, "err", cerr)
			}
		case ctx.Err() != nil:
		case !cn.nc.IsConnected():
			log.Debug("fetch while disconnected", "err", err)
		default:
			log.Warn("fetch failed; retrying", "retry_in", wait, "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(wait*2, s.cfg.retryCeil)
	}
	return nil
}

// item is one fetched message held by Run.
type item struct {
	msg jetstream.Msg
	b   *binding
	seq uint64
}

type qkey struct{ topic, key string }

// queue holds one key's messages in stream order; one worker drains it.
type queue struct {
	key   qkey
	items []*item
}

// scheduler runs one worker per key with messages in hand, at most
// cap(sem) of them handling at once.
type scheduler struct {
	cfg     *config
	log     *slog.Logger
	group   string
	h       bus.Handler
	hctx    context.Context
	sem     chan struct{}
	workers sync.WaitGroup

	mu        sync.Mutex
	queues    map[qkey]*queue
	count     map[string]int     // held messages per topic
	held      map[*item]struct{} // every message not yet acked or nak'd
	abandoned []*item            // to nak once fetching has stopped
}

// keyOf is the message's key as published.
func keyOf(m jetstream.Msg) string {
	h := m.Headers()
	if k, ok := h[KeyHeader]; ok && len(k) > 0 {
		return k[0]
	}
	if k, ok := h[EncodedHeaderPrefix+KeyHeader]; ok && len(k) > 0 {
		if dec, err := base64.StdEncoding.DecodeString(k[0]); err == nil {
			return string(dec)
		}
	}
	return ""
}

func (sc *scheduler) heldOf(topic string) int {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.count[topic]
}

// dispatch queues m behind the messages of its key, starting a worker for
// the key when it has none.
func (sc *scheduler) dispatch(b *binding, m jetstream.Msg) {
	it := &item{msg: m, b: b}
	if md, err := m.Metadata(); err == nil {
		it.seq = md.Sequence.Stream
		if md.NumDelivered > 1 {
			sc.log.Debug("redelivered message", "topic", b.topic, "seq", it.seq, "deliveries", md.NumDelivered)
		}
	}
	k := qkey{b.topic, keyOf(m)}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.count[b.topic]++
	sc.held[it] = struct{}{}
	q, ok := sc.queues[k]
	if !ok {
		q = &queue{key: k}
		sc.queues[k] = q
		sc.workers.Go(func() { sc.work(q) })
	}
	q.items = append(q.items, it)
}

// release forgets it; the caller holds sc.mu.
func (sc *scheduler) release(it *item) {
	delete(sc.held, it)
	sc.count[it.b.topic]--
	select {
	case it.b.freed <- struct{}{}:
	default:
	}
}

// work drains q: each message is handled until it succeeds and is acked;
// when the handlers' context ends first, the rest of q is abandoned.
func (sc *scheduler) work(q *queue) {
	select {
	case sc.sem <- struct{}{}:
		defer func() { <-sc.sem }()
	case <-sc.hctx.Done():
		sc.abandon(q)
		return
	}
	for {
		sc.mu.Lock()
		if len(q.items) == 0 {
			delete(sc.queues, q.key)
			sc.mu.Unlock()
			return
		}
		it := q.items[0]
		sc.mu.Unlock()
		if !sc.deliver(it) {
			sc.abandon(q)
			return
		}
		if err := it.msg.Ack(); err != nil {
			sc.log.Warn("ack failed; the message will be redelivered", "topic", it.b.topic, "seq", it.seq, "err", err)
		}
		if sc.cfg.metrics != nil {
			if md, err := it.msg.Metadata(); err == nil {
				sc.cfg.metrics.Lag(sc.group, it.b.topic, 0, int64(md.NumPending))
			}
		}
		sc.mu.Lock()
		q.items = q.items[1:]
		sc.release(it)
		sc.mu.Unlock()
	}
}

// abandon removes q; its messages are nak'd when fetching has stopped.
func (sc *scheduler) abandon(q *queue) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	delete(sc.queues, q.key)
	sc.abandoned = append(sc.abandoned, q.items...)
	q.items = nil
}

// nakAbandoned naks the abandoned messages without delay, in stream order
// per topic, so that the server redelivers them first and in order.
func (sc *scheduler) nakAbandoned() {
	sc.mu.Lock()
	items := sc.abandoned
	sc.abandoned = nil
	for _, it := range items {
		sc.release(it)
	}
	sc.mu.Unlock()
	slices.SortFunc(items, func(a, b *item) int {
		return cmp.Or(cmp.Compare(a.b.topic, b.b.topic), cmp.Compare(a.seq, b.seq))
	})
	for _, it := range items {
		if err := it.msg.Nak(); err != nil {
			sc.log.Debug("nak failed; the message comes back after the ack wait", "topic", it.b.topic, "seq", it.seq, "err", err)
		}
	}
	if len(items) > 0 {
		sc.log.Info("shutdown: unfinished messages handed back for redelivery", "count", len(items))
	}
}

// deliver calls h until it succeeds or the handlers' context ends; it
// reports success.
func (sc *scheduler) deliver(it *item) bool {
	wait := sc.cfg.retryFloor
	for attempt := 1; ; attempt++ {
		if sc.hctx.Err() != nil {
			return false
		}
		err := sc.h(sc.hctx, fromNATS(it.msg))
		if err == nil {
			return true
		}
		if sc.hctx.Err() != nil {
			return false
		}
		sc.log.Warn("handler failed; will redeliver", "topic", it.b.topic, "seq", it.seq,
			"attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-sc.hctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(wait*2, sc.cfg.retryCeil)
	}
}

// heartbeat tells the server every AckWait/3 that the held messages are
// still being worked on, so it does not redeliver them while they wait
// behind their key or a retry.
func (sc *scheduler) heartbeat(done <-chan struct{}) {
	t := time.NewTicker(sc.cfg.ackWait / 3)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		sc.mu.Lock()
		items := make([]*item, 0, len(sc.held))
		for it := range sc.held {
			items = append(items, it)
		}
		sc.mu.Unlock()
		for _, it := range items {
			_ = it.msg.InProgress() // fails only once acked or nak'd
		}
	}
}
