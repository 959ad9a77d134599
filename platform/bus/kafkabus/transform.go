package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-events/herald/platform/bus"
)

// TransformFunc maps one consumed message to the messages to produce for it;
// none is fine. It runs inside the Kafka transaction of its poll, so what it
// returns becomes visible, together with the consumed offset, only if that
// transaction commits. It must have no other side effects: after an abort
// the message is transformed again.
//
// An error aborts the poll's transaction and the poll is processed again
// after a backoff, unless the [DeadLetter] function turns the error into a
// dead letter. A panic is not recovered.
type TransformFunc func(ctx context.Context, in *bus.Message) ([]*bus.Message, error)

// DeadLetterFunc decides what becomes of a message whose [TransformFunc]
// failed with err: it returns the message to produce in its place, such as a
// copy on "<topic>.dlq" with headers naming the reason, or nil when err is
// transient. ctx is done when the Transformer is stopping; return nil then.
type DeadLetterFunc func(ctx context.Context, in *bus.Message, err error) *bus.Message

// CommitFunc is told, after a transaction committed, about each message it
// consumed: the messages produced for it and whether that was a dead letter.
// It runs exactly once per committed message and process, which suits
// metrics. It must not block.
type CommitFunc func(in *bus.Message, out []*bus.Message, deadLettered bool)

// TransformerOption configures a [Transformer]: any [Option] (seeds, client
// options, logger, transactional id, poll size, retry backoff), or one of the
// transformer's own settings, [DeadLetter] and [OnCommit].
type TransformerOption interface {
	applyTransformer(*transformConfig)
}

func (o Option) applyTransformer(c *transformConfig) { o(&c.config) }

type transformOpt func(*transformConfig)

func (o transformOpt) applyTransformer(c *transformConfig) { o(c) }

type transformConfig struct {
	config
	deadLetter DeadLetterFunc
	onCommit   CommitFunc
}

// DeadLetter sets what a [Transformer] does with a message whose function
// failed: the message fn returns is produced in the failed message's place,
// in the same transaction as everything else of the poll, so a dead letter
// and the consumed offset that skips its message commit together. Default:
// none, every error is transient, and a message that always fails holds up
// its poll (all partitions of it) for good.
func DeadLetter(fn DeadLetterFunc) TransformerOption {
	return transformOpt(func(c *transformConfig) { c.deadLetter = fn })
}

// OnCommit sets a function told about every consumed message once its
// transaction committed. Default: none.
func OnCommit(fn CommitFunc) TransformerOption {
	return transformOpt(func(c *transformConfig) { c.onCommit = fn })
}

// Transformer consumes, transforms and produces exactly once: the
// consume-transform-produce loop of Kafka's transactions (KIP-98, KIP-447).
//
// Each poll is one transaction. The messages of one partition are handed to
// the [TransformFunc] one at a time, in offset order; different partitions
// run concurrently. The messages it returns are produced inside the
// transaction, and the transaction commits them together with the consumed
// offsets ([kgo.GroupTransactSession] does the offset commit, with the
// group's generation, and aborts when a partition was revoked or lost since
// the poll). Consumers reading at read_committed isolation therefore see the
// outputs of each consumed message exactly once, however often it was
// transformed: an aborted attempt, a crash, a rebalance or a fenced zombie
// leaves nothing visible, and the message is consumed again.
//
// This is a Kafka-only power, with no counterpart in the [bus] interfaces:
// [bus.Capabilities] describes what a Publisher or Subscriber promises on its
// own, and exactly-once here needs the broker to commit the produced
// messages and the consumer offsets in one transaction. A service built on a
// Transformer needs neither an outbox nor an inbox, and runs only on Kafka.
// The guarantee ends at Kafka: a message published twice upstream is two
// messages here and gets transformed twice; the function must not write
// anywhere else.
//
// The transactional id ([TransactionalID], required) must be stable and
// belong to one running Transformer: a restarted process fences its
// predecessor with it and aborts the transaction the predecessor left open.
// To run several instances in one group, give each its own stable id; on
// Kafka 2.5 and later the group generation fences zombies across ids.
//
// Timing: a poll must be transformed and committed within the transaction
// timeout (40s, below the group's default 45s session timeout, so a member
// that lost its connection is out of the group before its transaction could
// finish); [MaxPollRecords] bounds the work per transaction. Before
// committing, the session forces a heartbeat, so a commit never lands after
// the group moved on. Extra [ClientOptions] may add partition callbacks, but
// those must not wait for the transformer: the session's own callbacks hold
// the lock that ending a transaction needs.
type Transformer struct {
	cfg transformConfig
}

// NewTransformer checks the options; it connects in Run. [Seeds] and
// [TransactionalID] are required.
func NewTransformer(opts ...TransformerOption) (*Transformer, error) {
	var (
		shared []Option
		own    []TransformerOption
	)
	for _, o := range opts {
		if so, ok := o.(Option); ok {
			shared = append(shared, so)
		} else {
			own = append(own, o)
		}
	}
	base, err := newConfig(shared)
	if err != nil {
		return nil, err
	}
	c := transformConfig{config: base}
	for _, o := range own {
		o.applyTransformer(&c)
	}
	if c.txnID == "" {
		return nil, errors.New("kafkabus: a transformer needs a TransactionalID")
	}
	return &Transformer{cfg: c}, nil
}

// Run consumes topics as group, transforms every message with fn and
// produces the results, one transaction per poll, until ctx is done. It
// returns nil on cancellation, after aborting the transaction in progress,
// and an error only when the client cannot be created (bad options).
//
// A failed transaction is retried with backoff ([RetryBackoff]); a failure
// the session cannot recover from (its EndTxn failed or timed out, or Begin
// failed) closes the client and starts a fresh one, which fences the old
// producer and aborts whatever it left open.
func (t *Transformer) Run(ctx context.Context, group string, topics []string, fn TransformFunc) error {
	log := t.cfg.logger.With("group", group, "transactional_id", t.cfg.txnID)
	wait := t.cfg.retryFloor
	for {
		sess, err := t.newSession(group, topics)
		if err != nil {
			return fmt.Errorf("kafka transformer %s: %w", group, err)
		}
		log.Info("transformer started", "topics", topics)
		started := time.Now()
		err = t.loop(ctx, log, sess, fn)
		sess.Close()
		if ctx.Err() != nil {
			log.Info("transformer stopped")
			return nil
		}
		if time.Since(started) > time.Minute {
			wait = t.cfg.retryFloor // it had been working
		}
		log.Warn("transaction session failed; starting a new one", "err", err, "retry_in", wait)
		if !sleepCtx(ctx, wait) {
			return nil
		}
		wait = min(wait*2, t.cfg.retryCeil)
	}
}

func (t *Transformer) newSession(group string, topics []string) (*kgo.GroupTransactSession, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(t.cfg.seeds...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.TransactionalID(t.cfg.txnID),
		kgo.TransactionTimeout(t.cfg.txnTimeout),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.WithLogger(kgoLogger{t.cfg.logger}),
	}
	opts = append(opts, t.cfg.extra...)
	return kgo.NewGroupTransactSession(opts...)
}

// loop runs transactions on sess until ctx is done (nil) or the session
// cannot go on (the error).
func (t *Transformer) loop(ctx context.Context, log *slog.Logger, sess *kgo.GroupTransactSession, fn TransformFunc) error {
	wait := t.cfg.retryFloor
	for {
		fetches := sess.PollRecords(ctx, t.cfg.maxPoll)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fetchErrs := 0
		fetches.EachError(func(topic string, p int32, err error) {
			fetchErrs++
			log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
		})
		if fetches.NumRecords() == 0 {
			if fetchErrs > 0 && !sleepCtx(ctx, t.cfg.retryFloor) {
				return nil
			}
			continue
		}
		if err := sess.Begin(); err != nil {
			return fmt.Errorf("begin transaction: %w", err)
		}
		results, failed := t.transform(ctx, sess, fetches, fn)
		try := kgo.TryCommit
		if failed != nil {
			try = kgo.TryAbort
		}
		// End must not be cut short by a shutdown: a cancelled EndTxn
		// leaves the producer in an unknown state. The transaction
		// timeout bounds it.
		endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.cfg.txnTimeout)
		committed, err := sess.End(endCtx, try)
		cancel()
		if err != nil {
			// franz-go: no error from End is retryable on this session.
			return fmt.Errorf("end transaction: %w", errors.Join(failed, err))
		}
		if committed {
			wait = t.cfg.retryFloor
			if t.cfg.onCommit != nil {
				for _, r := range results {
					t.cfg.onCommit(r.in, r.out, r.dead)
				}
			}
			continue
		}
		// Aborted: by us (failed) or because the group rebalanced. The
		// session has rewound to the committed offsets; the next polls
		// return the same messages.
		if ctx.Err() != nil {
			return nil
		}
		if failed == nil {
			log.Info("transaction aborted by a rebalance; consuming again", "records", fetches.NumRecords())
			continue
		}
		log.Warn("transaction aborted; consuming again", "records", fetches.NumRecords(), "err", failed, "retry_in", wait)
		if !sleepCtx(ctx, wait) {
			return nil
		}
		wait = min(wait*2, t.cfg.retryCeil)
	}
}

type transformResult struct {
	in   *bus.Message
	out  []*bus.Message
	dead bool
}

// transform runs fn over a poll inside the open transaction and produces
// the results. It returns what each consumed message produced and, when the
// transaction must abort, why.
func (t *Transformer) transform(ctx context.Context, sess *kgo.GroupTransactSession, fetches kgo.Fetches, fn TransformFunc) ([]transformResult, error) {
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		produced kgo.FirstErrPromise
		mu       sync.Mutex
		results  []transformResult
		wg       sync.WaitGroup
	)
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) == 0 {
			return
		}
		wg.Go(func() {
			part := make([]transformResult, 0, len(p.Records))
			defer func() {
				mu.Lock()
				results = append(results, part...)
				mu.Unlock()
			}()
			for _, r := range p.Records {
				if pctx.Err() != nil {
					return
				}
				res, err := t.one(pctx, fn, fromRecord(r))
				if err != nil {
					cancel(err)
					return
				}
				for _, m := range res.out {
					sess.Produce(pctx, toRecord(m), produced.Promise())
				}
				part = append(part, res)
			}
		})
	})
	wg.Wait()
	if err := context.Cause(pctx); err != nil {
		// A failure, or ctx done. What was produced is aborted with
		// the transaction; the promises need not be awaited.
		return nil, err
	}
	if err := produced.Err(); err != nil {
		return nil, fmt.Errorf("produce in transaction: %w", err)
	}
	return results, nil
}

// one transforms a message, turning a failure into a dead letter when the
// DeadLetter function says so.
func (t *Transformer) one(ctx context.Context, fn TransformFunc, in *bus.Message) (transformResult, error) {
	out, err := fn(ctx, in)
	if err == nil {
		return transformResult{in: in, out: out}, nil
	}
	if ctx.Err() == nil && t.cfg.deadLetter != nil {
		if dl := t.cfg.deadLetter(ctx, in, err); dl != nil {
			t.cfg.logger.Warn("message dead-lettered in transaction", "from", in.String(), "to", dl.Topic, "err", err)
			return transformResult{in: in, out: []*bus.Message{dl}, dead: true}, nil
		}
	}
	return transformResult{}, fmt.Errorf("transform %s: %w", in, err)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
