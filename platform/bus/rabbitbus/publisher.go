package rabbitbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/herald-events/herald/platform/bus"
)

// Publisher is a RabbitMQ [bus.Publisher] with publisher confirms.
type Publisher struct {
	cfg  config
	log  *slog.Logger
	done chan struct{} // closed by Close
	once sync.Once

	mu     sync.Mutex // serialises Publish; guards the fields below
	sess   *pubSession
	closed bool
}

var _ bus.Publisher = (*Publisher)(nil)

// pubSession is one connection of a publisher.
type pubSession struct {
	conn *amqp.Connection
	topo *topology // its channel, in confirm mode, is the publishing channel
	lost chan struct{}

	retMu   sync.Mutex
	returns []amqp.Return
}

// errConnLost marks a publish that failed because the connection or the
// channel closed; its unconfirmed messages are sent again.
var errConnLost = errors.New("rabbitmq connection lost before the broker confirmed")

// NewPublisher connects a publisher. The first connection is not retried.
func NewPublisher(opts ...Option) (*Publisher, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	p := &Publisher{cfg: cfg, log: cfg.logger.With("rabbitmq_client", cfg.name+"-publisher"), done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.dialTimeout)
	defer cancel()
	if p.sess, err = p.open(ctx); err != nil {
		return nil, err
	}
	cfg.count("publisher", "connected")
	return p, nil
}

// open dials and prepares a session.
func (p *Publisher) open(ctx context.Context) (*pubSession, error) {
	conn, err := p.cfg.dial(ctx, "publisher", "")
	if err != nil {
		return nil, err
	}
	topo, err := newTopology(conn, &p.cfg)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	s := &pubSession{conn: conn, topo: topo, lost: make(chan struct{})}
	returns := topo.ch.NotifyReturn(make(chan amqp.Return, 16))
	go func() {
		for r := range returns {
			s.retMu.Lock()
			s.returns = append(s.returns, r)
			s.retMu.Unlock()
		}
	}()
	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
	chClosed := topo.ch.NotifyClose(make(chan *amqp.Error, 1))
	p.cfg.watchBlocked(conn, "publisher", p.log)
	go func() {
		var e *amqp.Error
		select {
		case e = <-connClosed:
		case e = <-chClosed:
		}
		close(s.lost)
		if e != nil {
			p.cfg.count("publisher", "disconnected")
			p.log.Warn("rabbitmq publisher connection lost; reconnecting on the next publish", "err", e)
			_ = conn.Close()
		}
	}()
	return s, nil
}

func (s *pubSession) alive() bool {
	select {
	case <-s.lost:
		return false
	default:
		return true
	}
}

// takeReturns removes and returns the messages the broker returned.
func (s *pubSession) takeReturns() []amqp.Return {
	s.retMu.Lock()
	defer s.retMu.Unlock()
	r := s.returns
	s.returns = nil
	return r
}

// Capabilities: no atomic batches; per-key order is what the subscriber
// keeps (messages of one Publish call are published in order).
func (p *Publisher) Capabilities() bus.Capabilities {
	return bus.Capabilities{System: system, AtomicBatches: false, OrderedByKey: true, Partitions: false}
}

// Publish publishes msgs in order and returns once the broker confirmed
// every one. A nack or a returned (unroutable) message is an error; messages
// left unconfirmed by a lost connection are published again after
// reconnecting, until ctx ends. A failed call may have published a prefix,
// or some messages twice.
func (p *Publisher) Publish(ctx context.Context, msgs ...*bus.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	for _, m := range msgs {
		if err := checkTopic(m.Topic); err != nil {
			return fmt.Errorf("publish %s: %w", m, err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("rabbitmq publish: %w", bus.ErrClosed)
	}
	pending := msgs
	for {
		if p.sess == nil || !p.sess.alive() {
			if err := p.reconnect(ctx); err != nil {
				return err
			}
		}
		var err error
		pending, err = p.publishOnce(ctx, pending)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errConnLost) || ctx.Err() != nil {
			return err
		}
		p.log.Info("rabbitmq publish interrupted; publishing the unconfirmed messages again", "messages", len(pending), "err", err)
	}
}

// publishOnce publishes msgs on the current session and waits for their
// confirms. On a lost connection it returns the messages not confirmed.
func (p *Publisher) publishOnce(ctx context.Context, msgs []*bus.Message) ([]*bus.Message, error) {
	s := p.sess
	s.takeReturns()
	now := time.Now()
	confirms := make([]*amqp.DeferredConfirmation, 0, len(msgs))
	for i, m := range msgs {
		if err := s.topo.ensureTopic(m.Topic); err != nil {
			return p.failed(s, msgs[i:], fmt.Errorf("publish %s: %w", m.Topic, err))
		}
		dc, err := s.topo.ch.PublishWithDeferredConfirmWithContext(ctx, ExchangeName(m.Topic), m.Topic, true, false, toPublishing(m, now))
		if err != nil {
			// What was sent before still gets confirmed: wait for it.
			if _, werr := p.wait(ctx, s, msgs[:i], confirms); werr != nil {
				return p.failed(s, msgs, werr)
			}
			return p.failed(s, msgs[i:], fmt.Errorf("publish %s key %q: %w", m.Topic, m.Key, err))
		}
		confirms = append(confirms, dc)
	}
	return p.wait(ctx, s, msgs, confirms)
}

// wait waits for the confirms of msgs.
func (p *Publisher) wait(ctx context.Context, s *pubSession, msgs []*bus.Message, confirms []*amqp.DeferredConfirmation) ([]*bus.Message, error) {
	var unconfirmed []*bus.Message
	var nacked error
	for i, dc := range confirms {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return msgs[i:], fmt.Errorf("publish %s key %q: waiting for the broker's confirm: %w", msgs[i].Topic, msgs[i].Key, err)
		}
		if ok {
			continue
		}
		if !s.alive() || s.topo.ch.IsClosed() {
			unconfirmed = append(unconfirmed, msgs[i])
		} else if nacked == nil {
			nacked = fmt.Errorf("publish %s key %q: the broker nacked the message", msgs[i].Topic, msgs[i].Key)
		}
	}
	for _, r := range s.takeReturns() {
		return nil, fmt.Errorf("publish %s: returned by the broker as unroutable (%d %s): no queue is bound for it, not even %s",
			r.RoutingKey, r.ReplyCode, r.ReplyText, UnroutedQueueName(r.RoutingKey))
	}
	if nacked != nil {
		return nil, nacked
	}
	if len(unconfirmed) > 0 {
		return unconfirmed, fmt.Errorf("publish %d of %d messages: %w", len(unconfirmed), len(msgs), errConnLost)
	}
	return nil, nil
}

// failed classifies a publish error: on a closed connection or channel the
// rest is retried.
func (p *Publisher) failed(s *pubSession, rest []*bus.Message, err error) ([]*bus.Message, error) {
	if permanent(err) {
		return nil, err
	}
	if !s.alive() || s.topo.ch.IsClosed() || errors.Is(err, amqp.ErrClosed) {
		return rest, fmt.Errorf("%w: %w", errConnLost, err)
	}
	return nil, err
}

// reconnect replaces a lost session, with backoff, until ctx ends or the
// publisher is closed. The caller holds p.mu.
func (p *Publisher) reconnect(ctx context.Context) error {
	if p.sess != nil {
		_ = p.sess.conn.Close()
		p.sess = nil
	}
	for attempt := 1; ; attempt++ {
		s, err := p.open(ctx)
		if err == nil {
			p.sess = s
			p.cfg.count("publisher", "reconnected")
			p.log.Info("rabbitmq publisher reconnected", "attempts", attempt)
			return nil
		}
		p.cfg.count("publisher", "reconnect_failed")
		if permanent(err) {
			return fmt.Errorf("rabbitmq publisher reconnect: %w", err)
		}
		wait := p.cfg.backoff(attempt)
		p.log.Warn("rabbitmq publisher reconnect failed", "attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("rabbitmq publisher reconnect: %w (last error: %v)", ctx.Err(), err)
		case <-p.done:
			return fmt.Errorf("rabbitmq publish: %w", bus.ErrClosed)
		case <-time.After(wait):
		}
	}
}

// Close closes the connection. A Publish in progress ends first; one
// waiting to reconnect gives up.
func (p *Publisher) Close() error {
	p.once.Do(func() { close(p.done) })
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if p.sess == nil {
		return nil
	}
	p.sess.topo.close()
	err := p.sess.conn.Close()
	p.cfg.count("publisher", "closed")
	if err != nil && !errors.Is(err, amqp.ErrClosed) {
		return fmt.Errorf("close rabbitmq publisher: %w", err)
	}
	return nil
}
