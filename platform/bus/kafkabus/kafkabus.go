// Package kafkabus implements the [bus] interfaces on Apache Kafka with
// franz-go.
//
// [NewPublisher] makes an idempotent producer; with [TransactionalID] every
// Publish call is one Kafka transaction, so its batch is atomic
// ([bus.Capabilities].AtomicBatches). [NewSubscriber] consumes with a consumer
// group at read_committed isolation and commits offsets only for messages its
// handler has finished. [EnsureTopics] creates topics up front.
package kafkabus

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/observe"
)

// Option configures a [Publisher] or [Subscriber].
type Option func(*config)

type config struct {
	seeds       []string
	extra       []kgo.Opt
	logger      *slog.Logger
	txnID       string
	maxPoll     int
	retryFloor  time.Duration
	retryCeil   time.Duration
	txnTimeout  time.Duration
	commitAwait time.Duration
	stallAfter  time.Duration
	keyWorkers  int
	grace       time.Duration
	groupTxnID  string
	carryFor    time.Duration
	instance    string
	metrics     *observe.Metrics
}

func newConfig(opts []Option) (config, error) {
	c := config{
		logger:      slog.Default(),
		maxPoll:     500,
		retryFloor:  100 * time.Millisecond,
		retryCeil:   5 * time.Second,
		txnTimeout:  DefaultTransactionTimeout,
		commitAwait: 10 * time.Second,
		stallAfter:  30 * time.Second,
		keyWorkers:  16,
		grace:       10 * time.Second,
		carryFor:    100 * time.Millisecond,
	}
	for _, o := range opts {
		o(&c)
	}
	if len(c.seeds) == 0 {
		return c, errors.New("kafkabus: no seed brokers configured")
	}
	if c.instance != "" && c.txnID != "" {
		c.txnID += "-" + c.instance
	}
	return c, nil
}

// Seeds sets the bootstrap brokers, "host:port". Required.
func Seeds(addrs ...string) Option { return func(c *config) { c.seeds = addrs } }

// ClientOptions passes extra franz-go options to every client, for example
// TLS or SASL settings. Default: none.
func ClientOptions(opts ...kgo.Opt) Option {
	return func(c *config) { c.extra = append(c.extra, opts...) }
}

// Logger sets the logger. Default: [slog.Default].
func Logger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// TransactionalID makes a publisher transactional: each Publish is one
// transaction. The id must be stable for one logical producer (for example
// one per service's outbox relay) so that a restarted process fences its
// predecessor. With [InstanceID] the id used is "<id>-<instance>".
// Default: not transactional (idempotent only).
func TransactionalID(id string) Option { return func(c *config) { c.txnID = id } }

// InstanceID names this process among the instances of one service. It is
// appended to a publisher's transactional id,
// "<id>-<instance>", and it must be stable across restarts of one
// instance, so that the restarted process fences its predecessor and the
// broker aborts the transaction it left open at once, instead of holding
// read-committed readers back for the [TransactionTimeout]. A consumer
// session's id is "<prefix><group>-<instance>-<random>" (see
// [GroupTransactions] for why it is not stable). It must be
// unique among the instances running at once: two live instances with the
// same id fence each other without end. A transactional subscriber also
// joins its group as a static member under this id (KIP-345): a restarted
// instance takes over the member its predecessor left behind at once,
// instead of waiting for that member's session to time out; a subscriber
// that stops leaves the group explicitly. Default none: a publisher's id is
// used as given, and a consumer session gets a random suffix and a dynamic
// membership, so a crashed session's open transaction is only aborted when
// it times out.
func InstanceID(id string) Option { return func(c *config) { c.instance = id } }

// DefaultTransactionTimeout is the [TransactionTimeout] unless set.
//
// The broker aborts a transaction this long after its first record (or
// offset commit) was added to it, unless it ended first. With a stable
// [InstanceID] that only matters for an instance that crashed and never
// comes back: its open transaction holds read-committed readers of the
// partitions it wrote to (and the group's offsets it was committing) back
// until then. A restarted instance, or a new session after a broker
// restart, fences its predecessor and the broker aborts at once.
//
// It must exceed the longest transaction herald runs while healthy. The
// relay's is one batch: produce, flush, commit, milliseconds. A consumer's
// opens broker-side only at its first produce (a dead letter) or, failing
// that, at the offset commit in End; from there it lasts the rest of the
// poll, a second or so at a few thousand records. A handler that waits on
// an unreachable database before anything was produced holds no broker
// transaction, whatever the wait; one that waits after a dead letter was
// produced in the poll's transaction outlives the timeout: the broker
// aborts it, End fails, the session is replaced and the poll comes again,
// its dead letter with it (the aborted copy is never visible).
//
// 10 seconds leaves that margin several times over and is well under
// franz-go's 40 s default that herald used before: a crashed consumer
// session's offsets, or a vanished relay's records, are held back for at
// most 10 s plus the broker's expiry scan
// (transaction.abort.timed.out.transaction.cleanup.interval.ms, 10 s by
// default; the scripts' broker runs it every second).
const DefaultTransactionTimeout = 10 * time.Second

// TransactionTimeout sets how long the broker lets a transaction of a
// publisher or a transactional subscriber stay open before
// it aborts it. Default [DefaultTransactionTimeout], which explains the
// trade-off; it must not exceed the broker's transaction.max.timeout.ms.
func TransactionTimeout(d time.Duration) Option { return func(c *config) { c.txnTimeout = d } }

// MaxPollRecords bounds how many records a subscriber takes per poll; the
// offsets of one poll are committed together. Default 500: larger batches
// commit less often but redeliver more after a crash.
func MaxPollRecords(n int) Option { return func(c *config) { c.maxPoll = n } }

// RetryBackoff sets the pause before redelivering a message whose handler
// failed, doubling from floor to ceil. Default 100ms to 5s.
func RetryBackoff(floor, ceil time.Duration) Option {
	return func(c *config) { c.retryFloor, c.retryCeil = floor, ceil }
}

// KeyConcurrency bounds how many keys a subscriber handles at once within
// one poll; messages of one key are always handled one after the other, in
// offset order. Default 16: more overlaps slow handlers (I/O) better but
// holds more database connections.
func KeyConcurrency(n int) Option { return func(c *config) { c.keyWorkers = max(1, n) } }

// ShutdownGrace is how long a subscriber whose context was cancelled keeps
// handling the messages it already polled before it gives up on them.
// Default 10s. Within the grace nothing is lost or repeated: the whole poll
// is handled and committed. Past it, unfinished messages are redelivered to
// the next consumer (and their finished neighbours with them), which the
// inbox makes harmless.
func ShutdownGrace(d time.Duration) Option { return func(c *config) { c.grace = d } }

// GroupTransactions makes a subscriber consume in Kafka transactions
// (franz-go's GroupTransactSession). Each Run gets the transactional id
// "<prefix><group>-<instance>-<random>", a new one per session (KIP-447
// lets every consumer session have its own id). A stable id would fence a
// dead predecessor at once, but twice left a transaction hanging on
// __consumer_offsets when the predecessor's commit was still being
// written, which held the group's offset fetches back for good; a crashed
// session's open transaction now holds them back until the
// [TransactionTimeout]. Each poll is
// one transaction (except polls that applied nothing: [PassedOverCommit]):
// the offsets of the poll and whatever handlers publish through
// [bus.DeliveryPublisher] (dead letters) commit together, or not at all —
// a poll that was not fully handled aborts, and the records come again, as
// does a poll during which the group rebalanced: a member that joins may
// handle records this one is still finishing (the inbox drops the repeat).
// A transaction that cannot end (the broker died) ends the session; Run
// starts a new one. Default off: offsets are committed on their own.
func GroupTransactions(prefix string) Option { return func(c *config) { c.groupTxnID = prefix } }

// PassedOverCommit bounds how long a transactional subscriber may keep the
// offsets of polls whose every message its handler passed over
// ([bus.PassOver]: another type on the same topic) before committing them.
// Such a poll applied nothing, so it opens no transaction of its own: its
// offsets go with the next poll's transaction, or are committed on their
// own once nothing came for d, or d after the first of them. A crash in
// between only delivers those messages again, to be passed over again.
// Default 100ms; 0 commits every poll in a transaction of its own.
func PassedOverCommit(d time.Duration) Option { return func(c *config) { c.carryFor = max(0, d) } }

// Metrics reports consumer lag per group and partition to m. Default none.
func Metrics(m *observe.Metrics) Option { return func(c *config) { c.metrics = m } }

// Publisher is a Kafka [bus.Publisher].
type Publisher struct {
	cfg    config
	mu     sync.Mutex // serialises transactions and guards cl
	cl     *kgo.Client
	closed bool
	// uncommitted is raised by the client's logger when franz-go ends a
	// transaction without committing it although a commit was asked.
	uncommitted atomic.Bool
	// beforeEnd, when set (tests), runs between Flush and EndTransaction.
	beforeEnd func()
}

var _ bus.Publisher = (*Publisher)(nil)

// NewPublisher connects a producer. It is idempotent; with [TransactionalID]
// it is transactional.
func NewPublisher(opts ...Option) (*Publisher, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	p := &Publisher{cfg: cfg}
	if p.cl, err = p.newClient(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Publisher) newClient() (*kgo.Client, error) {
	// Linger 0 and franz-go's default compression (snappy) were measured
	// against a 5 ms linger and no compression on the transactional path:
	// neither alternative was cheaper or faster (docs/performance.md, #13's
	// fourteenth step).
	opts := []kgo.Opt{
		kgo.SeedBrokers(p.cfg.seeds...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.WithLogger(txnLogger{kgoLogger{p.cfg.logger}, &p.uncommitted}),
	}
	if p.cfg.txnID != "" {
		opts = append(opts, kgo.TransactionalID(p.cfg.txnID), kgo.TransactionTimeout(p.cfg.txnTimeout))
	}
	opts = append(opts, p.cfg.extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	return cl, nil
}

// system is the OpenTelemetry messaging.system value for Kafka.
const system = "kafka"

// Capabilities reports atomic batches when the publisher is transactional.
func (p *Publisher) Capabilities() bus.Capabilities {
	return bus.Capabilities{System: system, AtomicBatches: p.cfg.txnID != "", OrderedByKey: true, Partitions: true}
}

// Publish writes msgs; with a transactional id, in one transaction.
func (p *Publisher) Publish(ctx context.Context, msgs ...*bus.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return bus.ErrClosed
	}
	if p.cfg.txnID == "" {
		if err := p.cl.ProduceSync(ctx, toRecords(msgs)...).FirstErr(); err != nil {
			return fmt.Errorf("produce %d records: %w", len(msgs), err)
		}
		return nil
	}
	err := p.publishTxn(ctx, msgs)
	if errors.Is(err, ErrNotCommitted) && !p.closed {
		// Nothing of that transaction is visible, and the client was
		// replaced: one more attempt, with records of its own.
		p.cfg.logger.Warn("kafka client ended the transaction without committing it; publishing again on a new client",
			"records", len(msgs), "transactional_id", p.cfg.txnID)
		err = p.publishTxn(ctx, msgs)
	}
	return err
}

func (p *Publisher) publishTxn(ctx context.Context, msgs []*bus.Message) error {
	recs := toRecords(msgs)
	if err := p.cl.BeginTransaction(); err != nil {
		p.reset()
		return fmt.Errorf("begin transaction: %w", err)
	}
	p.uncommitted.Store(false)
	var (
		errMu    sync.Mutex
		firstErr error
	)
	// One promise for the whole batch, not a closure per record.
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			errMu.Lock()
			if firstErr == nil {
				firstErr = err
			}
			errMu.Unlock()
		}
	}
	for _, r := range recs {
		p.cl.Produce(ctx, r, promise)
	}
	flushErr := p.cl.Flush(ctx)
	errMu.Lock()
	produceErr := errors.Join(firstErr, flushErr)
	errMu.Unlock()

	commit := kgo.TryCommit
	if produceErr != nil {
		commit = kgo.TryAbort
		// Records still buffered must be failed before the abort.
		if err := p.cl.AbortBufferedRecords(context.WithoutCancel(ctx)); err != nil {
			p.reset()
			return fmt.Errorf("produce in transaction: %w (abort buffered: %v)", produceErr, err)
		}
	}
	if p.beforeEnd != nil {
		p.beforeEnd()
	}
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.txnTimeout)
	defer cancel()
	if err := p.cl.EndTransaction(endCtx, commit); err != nil {
		// The producer state is unknown after a failed EndTxn: start over
		// with a fresh client, which fences and aborts what was open.
		p.reset()
		return fmt.Errorf("end transaction: %w", errors.Join(produceErr, err))
	}
	if produceErr != nil {
		return fmt.Errorf("produce in transaction (aborted): %w", produceErr)
	}
	if p.uncommitted.Load() {
		// franz-go can end a transaction whose records were all
		// acknowledged with an abort (or nothing) and still return nil:
		// it decides from its own record of the partitions added to the
		// transaction, which under load was seen missing (docs/reliability.md).
		// Returning nil would have the relay delete events that no reader
		// will ever see. The client's sequence state is suspect too: replace it.
		p.reset()
		return fmt.Errorf("end transaction: %w: %d acknowledged records", ErrNotCommitted, len(recs))
	}
	return nil
}

// ErrNotCommitted reports a transaction that the Kafka client ended
// without committing although every record in it was acknowledged and a
// commit was asked. Nothing of it is visible to readers; publish again.
var ErrNotCommitted = errors.New("transaction ended without a commit")

// txnLogger passes log lines on to the herald logger and raises flag when
// franz-go says it is ending a transaction without committing it on its own
// account. That log line is the only signal the client gives: its
// EndTransaction returns nil either way.
type txnLogger struct {
	kgoLogger
	flag *atomic.Bool
}

// Level asks for the client's info lines, where those decisions are
// logged; Log forwards only what the wrapped logger wants.
func (l txnLogger) Level() kgo.LogLevel { return max(l.kgoLogger.Level(), kgo.LogLevelInfo) }

func (l txnLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	if strings.HasPrefix(msg, "no produce succeeded in this transaction") ||
		strings.HasPrefix(msg, "no records were produced during the commit") {
		l.flag.Store(true)
	}
	if level <= l.kgoLogger.Level() {
		l.kgoLogger.Log(level, msg, keyvals...)
	}
}

// reset replaces the client after an unrecoverable transaction error. The
// caller holds p.mu.
func (p *Publisher) reset() {
	p.cl.Close()
	cl, err := p.newClient()
	if err != nil {
		p.cfg.logger.Error("kafka producer: re-create after failure", "err", err)
		p.closed = true
		return
	}
	p.cl = cl
}

// Close flushes nothing and closes the producer; an open transaction is
// aborted by the broker.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		p.cl.Close()
	}
	return nil
}

func toRecords(msgs []*bus.Message) []*kgo.Record {
	// One allocation for the records and at most one for the headers that
	// must be copied, as the relay publishes batches of hundreds.
	n := 0
	for _, m := range msgs {
		if needsID(m) {
			n += len(m.Headers) + 1
		}
	}
	var headers []kgo.RecordHeader
	if n > 0 {
		headers = make([]kgo.RecordHeader, 0, n)
	}
	recs := make([]kgo.Record, len(msgs))
	out := make([]*kgo.Record, len(msgs))
	for i, m := range msgs {
		headers = fillRecord(&recs[i], m, headers)
		out[i] = &recs[i]
	}
	return out
}

// toRecord turns a message into a record. Kafka has no message id of its
// own: an ID travels in the bus.HeaderID header, added when m has none.
func toRecord(m *bus.Message) *kgo.Record {
	r := &kgo.Record{}
	var buf []kgo.RecordHeader
	if needsID(m) {
		buf = make([]kgo.RecordHeader, 0, len(m.Headers)+1)
	}
	fillRecord(r, m, buf)
	return r
}

// needsID reports whether m's record needs a bus.HeaderID header that m's
// headers lack.
func needsID(m *bus.Message) bool { return m.ID != "" && !m.HasHeader(bus.HeaderID) }

// fillRecord sets r from m. The record shares m's headers when they are all
// it needs; otherwise it takes copies of them, and the ID header, from the
// free capacity of buf, and fillRecord returns buf grown by them.
func fillRecord(r *kgo.Record, m *bus.Message, buf []kgo.RecordHeader) []kgo.RecordHeader {
	r.Topic, r.Key, r.Value = m.Topic, m.Key, m.Value
	if !needsID(m) {
		r.Headers = recordHeaders(m.Headers)
		return buf
	}
	start := len(buf)
	for _, h := range m.Headers {
		buf = append(buf, kgo.RecordHeader(h))
	}
	buf = append(buf, kgo.RecordHeader{Key: bus.HeaderID, Value: []byte(m.ID)})
	r.Headers = buf[start:len(buf):len(buf)]
	return buf
}

// recordHeaders views hs as record headers, without copying them. A
// bus.Header and a kgo.RecordHeader have the same underlying type (the
// conversion below would not compile otherwise), so their slices have the
// same layout in memory. The client only reads a record's headers; a
// publisher's caller must not change a message while it is published.
func recordHeaders(hs []bus.Header) []kgo.RecordHeader {
	_ = kgo.RecordHeader(bus.Header{})
	if len(hs) == 0 {
		return nil
	}
	return unsafe.Slice((*kgo.RecordHeader)(unsafe.Pointer(unsafe.SliceData(hs))), len(hs))
}

func fromRecord(r *kgo.Record) *bus.Message {
	m := &bus.Message{
		Topic: r.Topic, Key: r.Key, Value: r.Value,
		Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp,
	}
	if len(r.Headers) > 0 {
		m.Headers = make([]bus.Header, len(r.Headers))
		for i, h := range r.Headers {
			m.Headers[i] = bus.Header{Key: h.Key, Value: h.Value}
		}
	}
	m.ID, _ = m.Header(bus.HeaderID)
	return m
}

// Subscriber is a Kafka [bus.Subscriber].
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

// Capabilities: ordered by key through partitions.
func (s *Subscriber) Capabilities() bus.Capabilities {
	return bus.Capabilities{System: system, AtomicBatches: true, OrderedByKey: true, Partitions: true}
}

// Run consumes until ctx is done. See [bus.Subscriber].
func (s *Subscriber) Run(ctx context.Context, group string, topics []string, h bus.Handler) error {
	// A consumer transaction that cannot end (the broker went away in the
	// middle of it, say) leaves franz-go's session unusable: no error of
	// End is retryable. Start a new session, which rejoins the group; the
	// aborted poll is delivered again.
	backoff := 100 * time.Millisecond
	for {
		err := s.run(ctx, group, topics, h)
		var broken *brokenSessionError
		if !errors.As(err, &broken) {
			return err
		}
		if ctx.Err() != nil {
			s.cfg.logger.Warn("kafka consumer transaction failed while stopping; its poll will be delivered again", "group", group, "err", broken.err)
			return nil
		}
		s.cfg.logger.Warn("kafka consumer transaction failed; starting a new session", "group", group, "err", broken.err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		// Capped low: a broken session usually means the broker went
		// away, and the first session after its return should not wait.
		backoff = min(backoff*2, 2*time.Second)
	}
}

// brokenSessionError ends one session of a transactional [Subscriber.Run].
type brokenSessionError struct{ err error }

func (e *brokenSessionError) Error() string { return "consumer transaction session: " + e.err.Error() }

func (s *Subscriber) run(ctx context.Context, group string, topics []string, h bus.Handler) error {
	log := s.cfg.logger.With("group", group)
	opts := []kgo.Opt{
		kgo.SeedBrokers(s.cfg.seeds...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Fetches keep franz-go's defaults: answered as soon as a byte
		// is ready. Holding them for 16 KB (10 ms at most) made polls
		// bigger but raised the saga's median at 50/s from 5-7 ms to
		// 15-18 ms (docs/performance.md, #13's fourteenth step).
		// Commit markers come with the records so that the committed
		// offset passes them: lag then reads 0 at rest, not 1.
		kgo.KeepControlRecords(),
		kgo.WithLogger(kgoLogger{s.cfg.logger}),
	}
	var (
		poller interface {
			PollRecords(context.Context, int) kgo.Fetches
		}
		sess *kgo.GroupTransactSession
		klog *sessionLogger // the session's client logger
		cl   *kgo.Client
		err  error
	)
	if s.cfg.groupTxnID != "" {
		// Every session gets a transactional id of its own, also with an
		// instance id. With one stable id per instance, a session that
		// started while its predecessor's commit was still being written
		// (a process killed during EndTxn and restarted at once, or the
		// broker killed then) twice left a transaction hanging on
		// __consumer_offsets: the coordinator said CompleteCommit, the
		// partition kept it open, and every later offset fetch of the
		// group (franz-go always requires stable offsets) waited for
		// good. A fresh id leaves the old transaction to the broker,
		// which aborts it at its timeout (DefaultTransactionTimeout);
		// the group's membership is what stays stable (below).
		var suffix [6]byte
		_, _ = rand.Read(suffix[:])
		session := fmt.Sprintf("%x", suffix)
		if s.cfg.instance != "" {
			session = s.cfg.instance + "-" + session
		}
		txnID := s.cfg.groupTxnID + group + "-" + session
		log = log.With("transactional_id", txnID)
		if s.cfg.instance != "" {
			// Static group membership (KIP-345) under the same stable
			// name. A member that went away without leaving the group
			// (its process was killed, or the broker was down when a
			// broken session closed) otherwise stays in it until its
			// session times out (45 s, counted again from a broker
			// restart), and the next session's join waits for it. That
			// wait, not the transactional id, is what stalled a restarted
			// consumer when the broker was killed soon after (reproduced:
			// 60 s; the first try of stable ids, which stalled without
			// end, also blocked rebalances on poll, since withdrawn).
			// With the same instance id the coordinator replaces the old
			// member at once and hands its partitions over without a
			// rebalance.
			opts = append(opts, kgo.InstanceID(s.cfg.instance))
			// A static member does not leave the group when its client
			// closes; a stop does it explicitly, after the close, so
			// that a stopped instance's partitions move on at once.
			defer func() {
				if ctx.Err() != nil {
					s.leaveGroup(log, group)
				}
			}()
		}
		opts = append(opts, kgo.TransactionalID(txnID), kgo.TransactionTimeout(s.cfg.txnTimeout),
			kgo.RequiredAcks(kgo.AllISRAcks()))
		// A rebalance does not wait for the poll in hand (franz-go's
		// option (b): it aborts the transaction). Blocking rebalances on
		// poll, option (a), would keep a joining member from records this
		// one is still finishing, but stalled consumers for good after
		// broker restarts in the chaos suite.
		klog = &sessionLogger{kgoLogger: kgoLogger{log}}
		defer context.AfterFunc(ctx, func() { klog.quiet.Store(true) })()
		opts = append(opts, kgo.WithLogger(klog))
		sess, err = kgo.NewGroupTransactSession(append(opts, s.cfg.extra...)...)
		if err == nil {
			cl, poller = sess.Client(), sess
			defer sess.Close()
		}
	} else {
		cl, err = kgo.NewClient(append(append(opts, kgo.BlockRebalanceOnPoll()), s.cfg.extra...)...)
		if err == nil {
			poller = cl
			defer cl.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("kafka consumer %s: %w", group, err)
	}
	log.Info("consumer started", "topics", topics, "transactional", sess != nil)

	// Handlers get a context that outlives ctx by the grace period, so a
	// shutdown finishes the poll in hand instead of abandoning it.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(s.cfg.grace, hcancel)
		context.AfterFunc(hctx, func() { t.Stop() })
	})
	defer stop()
	dctx := hctx
	pctx := ctx // what a poll waits under
	var (
		watch *stallWatch
		// passed counts the messages of the poll in hand that handlers
		// passed over; carried is set while a transaction is open with
		// only such polls in it, since carriedAt.
		passed    atomic.Int64
		carried   bool
		carriedAt time.Time
	)
	if sess != nil {
		dctx = bus.WithPassOverCount(bus.WithDeliveryPublisher(hctx, &sessionPublisher{cl: cl}), &passed)
		watch = newStallWatch(ctx, kadm.NewClient(cl), group, s.cfg.stallAfter)
		defer watch.stop()
		pctx = watch.ctx
	}

	// The keys' handlers run on long-lived workers: a goroutine per key
	// and poll started with a small stack and grew it again through the
	// handler's deep calls (SQLite, validation), 6% of the CPU in a
	// profile of herald dev.
	workers := newKeyPool(s.cfg.keyWorkers)
	defer workers.close()

	aborted := 0 // polls in a row whose transaction the session aborted
	for {
		watch.polling(true)
		wctx, wcancel := pctx, context.CancelFunc(func() {})
		if carried {
			// The carried offsets wait for the next poll's transaction
			// at most until carryFor after the first of them.
			wctx, wcancel = context.WithDeadline(pctx, carriedAt.Add(s.cfg.carryFor))
		}
		fetches := poller.PollRecords(wctx, s.cfg.maxPoll)
		wcancel()
		watch.polling(false)
		if fetches.IsClientClosed() {
			return nil
		}
		if err := watch.err(); err != nil && ctx.Err() == nil {
			return &brokenSessionError{err}
		}
		fetches.EachError(func(t string, p int32, err error) {
			if ctx.Err() == nil && !(carried && errors.Is(err, context.DeadlineExceeded)) {
				log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		if sess != nil && fetches.NumRecords() > 0 && !carried {
			if err := sess.Begin(); err != nil {
				return &brokenSessionError{fmt.Errorf("begin transaction: %w", err)}
			}
		}
		passed.Store(0)
		var (
			mu       sync.Mutex
			done     []*kgo.Record
			complete = true
			wg       sync.WaitGroup
		)
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			wg.Go(func() {
				last := s.handlePartition(dctx, log, p.Records, h, workers)
				mu.Lock()
				defer mu.Unlock()
				if last != p.Records[len(p.Records)-1] {
					complete = false
				}
				if last != nil {
					done = append(done, last)
					s.cfg.metrics.Lag(group, p.Topic, p.Partition, p.LastStableOffset-(last.Offset+1))
				}
			})
		})
		wg.Wait()
		if sess != nil && fetches.NumRecords() > 0 && complete && passed.Load() == int64(handlerCalls(fetches)) &&
			s.cfg.carryFor > 0 && (!carried || time.Since(carriedAt) < s.cfg.carryFor) {
			// Nothing applied, nothing published: the poll's offsets
			// stay in the open transaction for a later commit.
			if !carried {
				carried, carriedAt = true, time.Now()
			}
			if ctx.Err() == nil {
				continue
			}
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.commitAwait+s.cfg.txnTimeout)
		switch {
		case sess != nil && (fetches.NumRecords() > 0 || carried):
			carried = false
			// A transaction commits every polled offset, so only a fully
			// handled poll may commit; anything else aborts and the
			// records come again (the inbox drops what was applied).
			action := kgo.TryCommit
			if !complete {
				action = kgo.TryAbort
			}
			committed, err := sess.End(cctx, action)
			if err != nil {
				cancel()
				return &brokenSessionError{fmt.Errorf("end transaction: %w", err)}
			}
			switch {
			case committed:
				aborted = 0
				klog.reasons()
			case complete:
				aborted++
				log.Info("consumer transaction aborted (a rebalance, or the offset commit refused); records will be redelivered",
					"in_a_row", aborted, "client_said", klog.reasons())
				if aborted >= maxAbortedPolls {
					cancel()
					return &brokenSessionError{fmt.Errorf("%d polls in a row aborted", aborted)}
				}
			}
		case sess == nil && len(done) > 0:
			if err := cl.CommitRecords(cctx, done...); err != nil {
				// Not fatal: the records are redelivered and the inbox
				// makes their second delivery a no-op.
				log.Warn("commit offsets", "err", err)
			}
		}
		cancel()
		cl.AllowRebalance()
		if ctx.Err() != nil || (sess != nil && !complete) {
			log.Info("consumer stopped")
			return nil
		}
	}
}

// handlerCalls counts the records of fs that go to the handler: all but
// the commit markers.
func handlerCalls(fs kgo.Fetches) int {
	n := 0
	fs.EachRecord(func(r *kgo.Record) {
		if !r.Attrs.IsControl() {
			n++
		}
	})
	return n
}

// leaveGroup takes this static member out of group, as a dynamic member's
// client does when it closes.
func (s *Subscriber) leaveGroup(log *slog.Logger, group string) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.cfg.seeds...), kgo.WithLogger(kgoLogger{s.cfg.logger})}, s.cfg.extra...)...)
	if err != nil {
		log.Warn("leave consumer group", "err", err)
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).LeaveGroup(ctx, kadm.LeaveGroup(group).InstanceIDs(s.cfg.instance).Reason("herald consumer stopping"))
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		// Its partitions move when its session times out instead.
		log.Warn("leave consumer group", "instance", s.cfg.instance, "err", err)
	}
}

// sessionPublisher publishes inside the consumer's open transaction.
type sessionPublisher struct{ cl *kgo.Client }

func (p *sessionPublisher) Publish(ctx context.Context, msgs ...*bus.Message) error {
	if err := p.cl.ProduceSync(ctx, toRecords(msgs)...).FirstErr(); err != nil {
		return fmt.Errorf("produce %d records in the consumer transaction: %w", len(msgs), err)
	}
	return nil
}

func (p *sessionPublisher) Capabilities() bus.Capabilities {
	return bus.Capabilities{System: system, AtomicBatches: true, OrderedByKey: true, Partitions: true}
}

func (p *sessionPublisher) Close() error { return nil }

// keyPool runs the keys of a poll on a fixed set of goroutines.
type keyPool struct {
	jobs chan func()
	wg   sync.WaitGroup
}

func newKeyPool(n int) *keyPool {
	p := &keyPool{jobs: make(chan func())}
	for range n {
		p.wg.Go(func() {
			for job := range p.jobs {
				job()
			}
		})
	}
	return p
}

// run hands job to a free worker, waiting for one.
func (p *keyPool) run(job func()) { p.jobs <- job }

func (p *keyPool) close() {
	close(p.jobs)
	p.wg.Wait()
}

// handlePartition handles one partition's records: one key at a time per
// worker of the pool, each key in offset order. It returns the last record
// of the longest fully handled prefix, the one to commit.
func (s *Subscriber) handlePartition(ctx context.Context, log *slog.Logger, recs []*kgo.Record, h bus.Handler, workers *keyPool) *kgo.Record {
	byKey := map[string][]int{}
	var order []string
	handled := make([]bool, len(recs))
	for i, r := range recs {
		if r.Attrs.IsControl() {
			// A transaction's commit marker: nothing to handle, but
			// committing past it leaves the partition with no lag.
			handled[i] = true
			continue
		}
		k := string(r.Key)
		if _, ok := byKey[k]; !ok {
			order = append(order, k)
		}
		byKey[k] = append(byKey[k], i)
	}
	var wg sync.WaitGroup
	for _, k := range order {
		idx := byKey[k]
		wg.Add(1)
		workers.run(func() {
			defer wg.Done()
			for _, i := range idx {
				if !s.deliver(ctx, log, recs[i], h) {
					return
				}
				handled[i] = true
			}
		})
	}
	wg.Wait()
	var last *kgo.Record
	for i, ok := range handled {
		if !ok {
			break
		}
		last = recs[i]
	}
	return last
}

// deliver calls h until it succeeds or ctx ends; it reports success.
func (s *Subscriber) deliver(ctx context.Context, log *slog.Logger, r *kgo.Record, h bus.Handler) bool {
	wait := s.cfg.retryFloor
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			return false
		}
		err := h(ctx, fromRecord(r))
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		log.Warn("handler failed; will redeliver", "topic", r.Topic, "partition", r.Partition,
			"offset", r.Offset, "attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(wait*2, s.cfg.retryCeil)
	}
}

// EnsureTopics creates the topics that do not exist yet with the given
// partition count and replication factor (-1 for the broker default).
func EnsureTopics(ctx context.Context, partitions int32, replication int16, topics []string, opts ...Option) error {
	cfg, err := newConfig(opts)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.seeds...), kgo.WithLogger(kgoLogger{cfg.logger})}, cfg.extra...)...)
	if err != nil {
		return fmt.Errorf("kafka admin: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	resp, err := adm.CreateTopics(ctx, partitions, replication, nil, topics...)
	if err != nil {
		return fmt.Errorf("create topics %v: %w", topics, err)
	}
	for _, t := range resp.Sorted() {
		if t.Err != nil && !errors.Is(t.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", t.Topic, t.Err)
		}
	}
	return nil
}

// kgoLogger forwards franz-go's warnings and errors to slog.
type kgoLogger struct{ l *slog.Logger }

// Level passes the client's warnings and errors on; its debug lines
// (every request, every partition) only when the logger takes debug.
func (k kgoLogger) Level() kgo.LogLevel {
	if k.l.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelDebug
	}
	return kgo.LogLevelWarn
}

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	switch level {
	case kgo.LogLevelError:
		k.l.Error("kafka: "+msg, keyvals...)
	case kgo.LogLevelWarn:
		k.l.Warn("kafka: "+msg, keyvals...)
	default:
		k.l.Debug("kafka: "+msg, keyvals...)
	}
}

// Ping connects to the brokers once and reports the first error, such as a
// refused connection, a TLS failure or rejected SASL credentials.
func Ping(ctx context.Context, opts ...Option) error {
	cfg, err := newConfig(opts)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.seeds...), kgo.WithLogger(kgoLogger{cfg.logger}),
		kgo.RequestRetries(0)}, cfg.extra...)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka %v: cannot connect or authenticate (check the brokers, TLS and SASL settings): %w", cfg.seeds, err)
	}
	return nil
}

// PollErr joins the errors of a poll's fetches, leaving out the deadline a
// poll under a timeout ends with; nil when there are none. Readers that
// poll a topic to its end (the dead-letter tools, the console) use it.
func PollErr(fs kgo.Fetches) error {
	var err error
	fs.EachError(func(_ string, _ int32, ferr error) {
		if !errors.Is(ferr, context.DeadlineExceeded) {
			err = errors.Join(err, ferr)
		}
	})
	return err
}

// sessionLogger is the logger of a transactional consumer session. Besides
// franz-go's warnings it passes on, at info, the client's lines that say the
// group is in trouble (failed heartbeats and syncs, revoked or lost
// partitions, forced rejoins), which a steady group never prints, and it
// keeps those and the routine group lines (joins, syncs) as the reasons
// for the next transaction the client ends without a commit: franz-go's
// End returns only false then.
type sessionLogger struct {
	kgoLogger
	quiet atomic.Bool // the session is stopping: its revokes are no trouble
	mu    sync.Mutex
	why   []any // since the last reasons: the group lines, and the "session ending" line's values
}

// groupLine classifies franz-go's info lines about the group's life:
// routine ones (kept as reasons) and troubled ones (also logged).
func groupLine(msg string) (routine, trouble bool) {
	for _, p := range [...]string{"joining group", "joined", "synced", "new group session begun", "leaving group"} {
		if strings.HasPrefix(msg, p) {
			return true, false
		}
	}
	for _, p := range [...]string{
		"sync failed", "join returned", "heartbeat errored", "heartbeat hit retryable error",
		"heartbeat saw a change", "forced rejoin", "transact session in on_", "calling onRevoke",
		"fetch offsets failed", "offset commit returned",
	} {
		if strings.HasPrefix(msg, p) {
			return false, true
		}
	}
	return false, false
}

func (l *sessionLogger) Level() kgo.LogLevel { return max(l.kgoLogger.Level(), kgo.LogLevelInfo) }

func (l *sessionLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	if level == kgo.LogLevelInfo {
		switch {
		case msg == "transaction session ending":
			l.keep("session_ending", pairs(keyvals))
		default:
			routine, trouble := groupLine(msg)
			if routine || trouble {
				l.keep("group", msg)
			}
			if trouble && !l.quiet.Load() {
				// Logged here, at info, and not again below at debug.
				// The logger names the group already.
				l.kgoLogger.l.Info("kafka: "+msg, withoutKey(keyvals, "group")...)
				return
			}
		}
	}
	if level <= l.kgoLogger.Level() {
		l.kgoLogger.Log(level, msg, keyvals...)
	}
}

// pairs prints keyvals as "k=v k=v".
func pairs(keyvals []any) string {
	var b strings.Builder
	for i := 0; i+1 < len(keyvals); i += 2 {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%v=%v", keyvals[i], keyvals[i+1])
	}
	return b.String()
}

// withoutKey returns keyvals without the pairs whose key is key.
func withoutKey(keyvals []any, key string) []any {
	out := make([]any, 0, len(keyvals))
	for i := 0; i+1 < len(keyvals); i += 2 {
		if k, ok := keyvals[i].(string); !ok || k != key {
			out = append(out, keyvals[i], keyvals[i+1])
		}
	}
	return out
}

// keep adds a key and value to what reasons returns, keeping the last
// eight pairs: an idle session that never ends a transaction keeps no more.
func (l *sessionLogger) keep(k, v string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.why) >= 16 {
		l.why = append(l.why[:0], l.why[2:]...)
	}
	l.why = append(l.why, k, v)
}

// reasons returns what was kept since the last call and forgets it.
func (l *sessionLogger) reasons() []any {
	l.mu.Lock()
	defer l.mu.Unlock()
	why := l.why
	l.why = nil
	return why
}
