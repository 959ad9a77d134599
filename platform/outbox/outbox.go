// Package outbox implements the transactional outbox.
//
// A service calls [Outbox.Add] inside the same [sqldb.Tx] as its business
// write, so the event exists exactly when the write does. [Outbox.Run] is the
// relay: it reads pending rows in id order, encodes them (Confluent framing,
// CloudEvents headers), publishes them and only then deletes them. On a
// bus with atomic batches (Kafka transactions) one batch is one transaction.
// The table holds pending events only: a row is gone once its event is on
// the bus, which keeps the table small.
//
// The relay wakes as soon as a transaction that added rows commits. On
// PostgreSQL one relay per outbox publishes (an advisory lock; the other
// instances stand by) and the others' commits wake it by NOTIFY; a poll
// remains as a fallback. A crash between publish and
// delete republishes the same events with the same ce_id, which consumers
// drop through their inbox: delivery is at least once, effects exactly once.
// Rows are relayed in id order by a single relay per database, so events of
// one key keep their order across restarts.
package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/contract"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/fault"
	"github.com/herald-events/herald/platform/observe"
	"github.com/herald-events/herald/platform/sqldb"
)

// Encoder frames an event value for a topic; [schema.Codec] is one.
//
// [schema.Codec]: github.com/herald-events/herald/platform/schema.Codec
type Encoder interface {
	Encode(topic string, msg proto.Message) ([]byte, error)
}

// Migrations creates the outbox table. Its sent_at column is set only by
// relays of earlier versions, which marked published rows instead of
// deleting them; the relay purges such rows.
func Migrations(d sqldb.Dialect) []sqldb.Migration {
	idCol, blob := "INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"
	if d == sqldb.Postgres {
		idCol, blob = "BIGSERIAL PRIMARY KEY", "BYTEA"
	}
	return []sqldb.Migration{{ID: "0001_outbox", SQL: []string{
		`CREATE TABLE IF NOT EXISTS herald_outbox (
			id ` + idCol + `,
			event_id TEXT NOT NULL UNIQUE,
			topic TEXT NOT NULL,
			msg_key TEXT NOT NULL,
			event_type TEXT NOT NULL,
			payload ` + blob + ` NOT NULL,
			source TEXT NOT NULL,
			event_time TEXT NOT NULL,
			traceparent TEXT NOT NULL,
			created_at TEXT NOT NULL,
			sent_at TEXT
		)`,
		`CREATE INDEX IF NOT EXISTS herald_outbox_pending ON herald_outbox (id) WHERE sent_at IS NULL`,
	}}}
}

// Config configures an [Outbox].
type Config struct {
	// DB holds the outbox table (see [Migrations]). Required.
	DB *sqldb.DB
	// Service is the service whose outbox this is (its metrics label).
	// Required.
	Service string
	// Source is the ce_source of every event, e.g. "herald/orders". Required.
	Source string
	// Publisher and Encoder are needed by Run only.
	Publisher bus.Publisher
	Encoder   Encoder
	// Namespace prefixes every topic (see [event.Namespaced]). Default none.
	Namespace string
	// Types resolves stored event types. Default [protoregistry.GlobalTypes].
	Types *protoregistry.Types
	// BatchSize bounds rows per publish (one transaction). Default 200.
	BatchSize int
	// PollInterval is the fallback wake-up for rows whose commit woke no
	// relay (the leading instance changed meanwhile). Default 200ms.
	PollInterval time.Duration
	// Logger defaults to [slog.Default].
	Logger *slog.Logger
	// Metrics counts published events; nil records nothing.
	Metrics *observe.Metrics
	// Tracing traces adds and publishes and carries the trace in the
	// traceparent header. Default [observe.LocalTracing].
	Tracing *observe.Tracing
	// Contract, when set, makes [Outbox.Add] refuse an event that breaks
	// its schema's rules (a *contract.Error), before anything is stored:
	// the business transaction fails with it. Default nil: no check.
	Contract *contract.Validator
	// BeforeMark, when set, runs after a batch is published and before its
	// rows are deleted; an error stops Run as a crash at that point would.
	// It exists for fault-injection tests.
	BeforeMark func(ids []int64) error
}

// Outbox writes events in business transactions and relays them to the bus.
type Outbox struct {
	cfg    Config
	wake   chan struct{}
	tracer trace.Tracer
	// lead and leading: see leader.go.
	lead    *leadership
	leading atomic.Bool
}

// New returns an outbox; Validate errors are returned as is.
func New(cfg Config) (*Outbox, error) {
	if cfg.DB == nil || cfg.Service == "" || cfg.Source == "" {
		return nil, errors.New("outbox: DB, Service and Source are required")
	}
	if cfg.Types == nil {
		cfg.Types = protoregistry.GlobalTypes
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 200
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 200 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Tracing == nil {
		cfg.Tracing = observe.LocalTracing()
	}
	return &Outbox{cfg: cfg, wake: make(chan struct{}, 1), tracer: cfg.Tracing.Tracer("herald/outbox"),
		lead: newLeadership(cfg.DB)}, nil
}

const timeLayout = time.RFC3339Nano

// Add stores msg, an event message, in tx. The event's trace continues the
// span carried by ctx. It returns the event's envelope (with its ce_id).
// With [Config].Contract it first checks msg against its schema's rules
// and stores nothing when it breaks them. The row is written with the
// other events of tx, in one statement just before tx commits (see
// [sqldb.Tx.Defer]), so an error of the insert is the commit's.
func (o *Outbox) Add(ctx context.Context, tx *sqldb.Tx, msg proto.Message) (*event.Envelope, error) {
	route, err := event.RouteOf(msg.ProtoReflect().Descriptor())
	if err != nil {
		return nil, fmt.Errorf("outbox add: %w", err)
	}
	if err := o.cfg.Contract.Validate(msg); err != nil {
		return nil, fmt.Errorf("outbox add: %w", err)
	}
	env, err := event.New(o.cfg.Source, msg)
	if err != nil {
		return nil, err
	}
	ctx, span := o.tracer.Start(ctx, "outbox.add "+env.Type(), trace.WithAttributes(
		attribute.String("cloudevents.event_id", env.ID), attribute.String("messaging.destination.name", route.Topic)))
	defer span.End()
	env.TraceParent = o.cfg.Tracing.Inject(ctx)
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("outbox add %s: %w", env.Type(), err)
	}
	b := tx.Defer(o, func() sqldb.Deferred { return &added{o: o} }).(*added)
	b.rows = append(b.rows, addedRow{env.ID, route.Topic, route.Key(msg), env.Type(), payload, env.Source,
		env.Time.Format(timeLayout), env.TraceParent, time.Now().UTC().Format(timeLayout)})
	return env, nil
}

// added holds the rows a transaction added to one outbox until just before
// it commits, and then inserts them in one statement (PostgreSQL) or one
// per addedChunk rows (SQLite): a shared transaction carries the events of
// several requests or consumed events, and a statement per event was a
// round trip each.
type added struct {
	o    *Outbox
	rows []addedRow
}

type addedRow struct {
	eventID, topic, key, typ string
	payload                  []byte
	source, eventTime, trace string
	created                  string
}

// addedChunk bounds the rows of one SQLite insert, so that its statement
// texts (one per row count) stay few enough to be kept prepared.
const addedChunk = 32

func (a *added) Flush(ctx context.Context, tx *sqldb.Tx) error {
	if len(a.rows) == 0 {
		return nil
	}
	if err := a.insert(ctx, tx); err != nil {
		return fmt.Errorf("outbox add %d events (first %s): %w", len(a.rows), a.rows[0].typ, err)
	}
	if err := a.o.notifyLeader(ctx, tx); err != nil {
		return fmt.Errorf("outbox add: %w", err)
	}
	tx.OnCommit(a.o.Notify)
	return nil
}

func (a *added) insert(ctx context.Context, tx *sqldb.Tx) error {
	const into = `INSERT INTO herald_outbox
		(event_id, topic, msg_key, event_type, payload, source, event_time, traceparent, created_at) `
	if tx.Dialect() == sqldb.Postgres {
		// One statement text for any number of rows, in the order added
		// (ids are drawn in that order, which keeps a key's events in
		// order for the relay).
		n := len(a.rows)
		ids, topics, keys, types := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		payloads := make([][]byte, n)
		sources, times, traces, created := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		for i, r := range a.rows {
			ids[i], topics[i], keys[i], types[i] = r.eventID, r.topic, r.key, r.typ
			payloads[i] = r.payload
			sources[i], times[i], traces[i], created[i] = r.source, r.eventTime, r.trace, r.created
		}
		_, err := tx.ExecContext(ctx, into+`SELECT e, t, k, y, p, s, et, tp, c
			FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::bytea[], ?::text[], ?::text[], ?::text[], ?::text[])
				WITH ORDINALITY AS r(e, t, k, y, p, s, et, tp, c, n)
			ORDER BY n`, ids, topics, keys, types, payloads, sources, times, traces, created)
		return err
	}
	for rows := a.rows; len(rows) > 0; {
		chunk := rows[:min(len(rows), addedChunk)]
		rows = rows[len(chunk):]
		args := make([]any, 0, 9*len(chunk))
		for _, r := range chunk {
			args = append(args, r.eventID, r.topic, r.key, r.typ, r.payload, r.source, r.eventTime, r.trace, r.created)
		}
		q := into + `VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)` + strings.Repeat(`, (?, ?, ?, ?, ?, ?, ?, ?, ?)`, len(chunk)-1)
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return err
		}
	}
	return nil
}

// Notify wakes the relay; Add arranges it after commit.
func (o *Outbox) Notify() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Pending counts rows not yet sent.
func (o *Outbox) Pending(ctx context.Context) (int, error) {
	var n int
	err := o.cfg.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM herald_outbox WHERE sent_at IS NULL`).Scan(&n)
	return n, err
}

// OldestPendingAge is how long the oldest unsent row has waited, or 0 when
// none is pending.
func (o *Outbox) OldestPendingAge(ctx context.Context) (time.Duration, error) {
	var created sql.NullString
	err := o.cfg.DB.QueryRowContext(ctx, `SELECT MIN(created_at) FROM herald_outbox WHERE sent_at IS NULL`).Scan(&created)
	if err != nil || !created.Valid {
		return 0, err
	}
	t, err := time.Parse(timeLayout, created.String)
	if err != nil {
		return 0, fmt.Errorf("outbox created_at %q: %w", created.String, err)
	}
	return time.Since(t), nil
}

// Run relays pending rows until ctx is done. It returns nil on
// cancellation and an error only from the BeforeMark hook.
//
// A failing round (the database or the bus unreachable) is retried with a
// backoff doubling from 100ms to 2s. The log gets one line when the relay
// starts failing (Warn for a transient error, see [fault.IsTransient],
// Error otherwise) and one when it recovers, with how long it failed; the
// attempts in between are logged at Debug level.
func (o *Outbox) Run(ctx context.Context) error {
	if o.cfg.Publisher == nil || o.cfg.Encoder == nil {
		return errors.New("outbox relay: Publisher and Encoder are required")
	}
	log := o.cfg.Logger.With("source", o.cfg.Source)
	if o.lead != nil {
		lctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			o.holdLead(lctx, log)
		}()
		defer func() { stop(); <-done }()
	}
	backoff := 100 * time.Millisecond
	lastPurge := time.Time{}
	var failing fault.Streak
	for {
		if !o.Leading() {
			// Another instance publishes; the lock holder wakes this
			// loop when it gets the lock.
			select {
			case <-ctx.Done():
				return nil
			case <-o.wake:
			}
			continue
		}
		n, err := o.relayOnce(ctx)
		var hookErr *hookError
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &hookErr):
			return hookErr.err
		case err != nil:
			failing.Fail(ctx, log, "outbox relay failing; retrying until it recovers", "outbox relay still failing", err, "retry_in", backoff)
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		failing.Recovered(log, "outbox relay recovered")
		backoff = 100 * time.Millisecond
		if time.Since(lastPurge) > time.Minute {
			o.purge(ctx, log)
			lastPurge = time.Now()
		}
		if n == o.cfg.BatchSize {
			continue // more rows are probably waiting
		}
		t := time.NewTimer(o.cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-o.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

type hookError struct{ err error }

func (h *hookError) Error() string { return h.err.Error() }

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

type row struct {
	id                                   int64
	eventID, topic, key, typ, source, tm string
	traceparent                          string
	payload                              []byte
}

// relayOnce publishes one batch and returns its size.
func (o *Outbox) relayOnce(ctx context.Context) (int, error) {
	rows, err := o.load(ctx)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	// The batch's messages are built in a few allocations: the messages in
	// one slice, their headers in another, and the bytes of their keys,
	// values and header values in one buffer, sized for the batch.
	size := 0
	for _, r := range rows {
		size += len(r.payload) + len(r.key) + frameRoom +
			event.HeadersLen(r.eventID, r.typ, r.source, r.tm, r.key, r.traceparent)
	}
	buf := make([]byte, 0, size)
	hs := make([]bus.Header, 0, event.HeaderCount*len(rows))
	ms := make([]bus.Message, len(rows))
	msgs := make([]*bus.Message, len(rows))
	ids := make([]int64, len(rows))
	spans := make([]trace.Span, 0, len(rows))
	defer func() {
		for _, sp := range spans {
			sp.End()
		}
	}()
	var rawTopic, topic string
	for i, r := range rows {
		if r.topic != rawTopic || i == 0 {
			rawTopic, topic = r.topic, event.Namespaced(o.cfg.Namespace, r.topic)
		}
		start := len(buf)
		buf, err = o.appendValue(buf, topic, r)
		if err != nil {
			return 0, fmt.Errorf("outbox row %d: %w", r.id, err)
		}
		value := buf[start:len(buf):len(buf)]
		start = len(buf)
		buf = append(buf, r.key...)
		m := &ms[i]
		*m = bus.Message{ID: r.eventID, Topic: topic, Key: buf[start:len(buf):len(buf)], Value: value}
		// The publish span continues the trace of the add; consumers
		// continue the publish span, whose traceparent replaces the stored one.
		attrs := append(observe.MessagingAttributes(o.cfg.Publisher.Capabilities().System, observe.OperationSend, "", m),
			attribute.String("cloudevents.event_id", r.eventID), attribute.String("cloudevents.event_type", r.typ))
		sctx, span := o.tracer.Start(o.cfg.Tracing.Extract(ctx, r.traceparent), observe.MessagingSpanName(observe.OperationSend, m.Topic),
			trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
		spans = append(spans, span)
		traceparent := r.traceparent
		if tp := o.cfg.Tracing.Inject(sctx); tp != "" {
			traceparent = tp
		}
		hs, m.Headers, buf = event.AppendHeaders(hs, buf, r.eventID, r.typ, r.source, r.tm, r.key, traceparent)
		msgs[i], ids[i] = m, r.id
	}
	begun := time.Now()
	if o.cfg.Publisher.Capabilities().AtomicBatches {
		if err := o.cfg.Publisher.Publish(ctx, msgs...); err != nil {
			return 0, fmt.Errorf("publish %d events: %w", len(msgs), err)
		}
	} else {
		// Without atomic batches, publish one at a time, so that a failed
		// publish repeats as little as possible: the events before it are
		// deleted (in one statement) before the error is returned.
		for i, m := range msgs {
			if err := o.cfg.Publisher.Publish(ctx, m); err != nil {
				err = fmt.Errorf("publish %s: %w", rows[i].eventID, err)
				if i > 0 {
					if merr := o.deletePublished(ctx, ids[:i]); merr != nil {
						return 0, errors.Join(err, merr)
					}
					o.count(rows[:i])
				}
				return i, err
			}
		}
	}
	if o.cfg.BeforeMark != nil {
		if err := o.cfg.BeforeMark(ids); err != nil {
			return 0, &hookError{err}
		}
	}
	done := time.Now()
	if err := o.deletePublished(ctx, ids); err != nil {
		return 0, err
	}
	o.count(rows)
	if o.cfg.Metrics != nil {
		times := make([]time.Time, len(rows))
		for i, r := range rows {
			times[i], _ = time.Parse(timeLayout, r.tm) // unparsable: zero, not observed
		}
		o.cfg.Metrics.Relayed(o.cfg.Service, done.Sub(begun), done, times)
	}
	return len(rows), nil
}

func (o *Outbox) count(rows []row) {
	if o.cfg.Metrics == nil {
		return
	}
	for _, r := range rows {
		o.cfg.Metrics.Published(o.cfg.Service, r.typ, 1)
	}
}

func (o *Outbox) load(ctx context.Context) ([]row, error) {
	rs, err := o.cfg.DB.QueryContext(ctx, `SELECT id, event_id, topic, msg_key, event_type, payload, source, event_time, traceparent
		FROM herald_outbox WHERE sent_at IS NULL ORDER BY id LIMIT ?`, o.cfg.BatchSize)
	if err != nil {
		return nil, fmt.Errorf("load outbox: %w", err)
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		var r row
		if err := rs.Scan(&r.id, &r.eventID, &r.topic, &r.key, &r.typ, &r.payload, &r.source, &r.tm, &r.traceparent); err != nil {
			return nil, fmt.Errorf("load outbox: %w", err)
		}
		out = append(out, r)
	}
	return out, rs.Err()
}

// frameRoom is what a batch's buffer holds per row beyond the row's own
// bytes: the value's framing (a magic byte, a schema id and message
// indexes: 6 bytes for a top-level message) and a traceparent injected
// where the row stored none.
const frameRoom = 64

// appendValue appends to dst the row's payload framed for topic: as it is
// stored when the encoder knows the framing already, else decoded and
// encoded.
func (o *Outbox) appendValue(dst []byte, topic string, r row) ([]byte, error) {
	name := protoreflect.FullName(r.typ)
	if f, ok := o.cfg.Encoder.(framer); ok {
		out, ok, err := f.AppendFrame(dst, topic, name, r.payload)
		if err != nil || ok {
			return out, err
		}
	}
	mt, err := o.cfg.Types.FindMessageByName(name)
	if err != nil {
		return dst, fmt.Errorf("event type %s: %w", r.typ, err)
	}
	msg := mt.New().Interface()
	if err := proto.Unmarshal(r.payload, msg); err != nil {
		return dst, err
	}
	value, err := o.cfg.Encoder.Encode(topic, msg)
	return append(dst, value...), err
}

// framer is an [Encoder] that can frame a stored payload without decoding
// it ([schema.Codec.AppendFrame]).
type framer interface {
	AppendFrame(dst []byte, topic string, name protoreflect.FullName, payload []byte) ([]byte, bool, error)
}

// deletePublished deletes the rows of a published batch. Deleting costs
// the database less than marking the rows sent and purging them later: on
// PostgreSQL an update that sets sent_at writes a new version of the row
// and new entries in its indexes (sent_at is in the pending index's
// predicate, so the update cannot be HOT), and the purge scanned the whole
// table each minute (docs/performance.md, "The outbox deletes what it has
// published").
func (o *Outbox) deletePublished(ctx context.Context, ids []int64) error {
	// PostgreSQL takes the ids as one array, so that every batch is the
	// same prepared statement; SQLite has no arrays.
	q, args := `DELETE FROM herald_outbox WHERE id = ANY(?)`, []any{ids}
	if o.cfg.DB.Dialect() != sqldb.Postgres {
		args = make([]any, 0, len(ids))
		for _, id := range ids {
			args = append(args, id)
		}
		q = `DELETE FROM herald_outbox WHERE id IN (?` + strings.Repeat(", ?", len(ids)-1) + `)`
	}
	// Deleting must not be skipped because the caller is shutting down:
	// the batch is already on the bus.
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := o.cfg.DB.ExecContext(mctx, q, args...); err != nil {
		return fmt.Errorf("delete %d published outbox rows: %w", len(ids), err)
	}
	return nil
}

// purge deletes rows that an earlier version of the relay marked sent
// (sent_at set) instead of deleting them. The column stays so that such a
// relay, still running beside this one during an upgrade, keeps working.
func (o *Outbox) purge(ctx context.Context, log *slog.Logger) {
	if _, err := o.cfg.DB.ExecContext(ctx, `DELETE FROM herald_outbox WHERE sent_at IS NOT NULL`); err != nil {
		log.Warn("purge outbox rows marked sent", "err", err)
	}
}
