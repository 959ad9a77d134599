package natsbus

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-events/herald/platform/bus"
)

// Header names this package adds to NATS messages. Consumers remove them
// again: a consumed [bus.Message] has the key and headers that were
// published.
const (
	// KeyHeader carries the message key.
	KeyHeader = "herald_key"
	// EncodedHeaderPrefix marks a header whose value a NATS header would
	// not keep as it is (CR or LF, as in a panic's stack trace, or blanks
	// at either end, which nats.go trims): it travels base64-encoded
	// (standard encoding) under this prefix and its own name, the key as
	// "herald_b64_herald_key".
	EncodedHeaderPrefix = "herald_b64_"
)

// Publisher is a JetStream [bus.Publisher].
type Publisher struct {
	cfg    config
	cn     *conn
	mu     sync.RWMutex // guards closed; Close waits for publishes in flight
	closed bool
}

var _ bus.Publisher = (*Publisher)(nil)

// NewPublisher connects a publisher; it fails when no server answers.
func NewPublisher(opts ...Option) (*Publisher, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.connTimeout)
	defer cancel()
	cn, err := cfg.connect(ctx, "publisher", "")
	if err != nil {
		return nil, err
	}
	return &Publisher{cfg: cfg, cn: cn}, nil
}

// Capabilities: no atomic batches (the outbox publishes one event at a
// time and the inbox deduplicates), no key-order promise and no partitions
// (see the package documentation).
func (p *Publisher) Capabilities() bus.Capabilities { return capabilities }

var capabilities = bus.Capabilities{System: system, AtomicBatches: false, OrderedByKey: false, Partitions: false}

// system is the messaging.system name for NATS: the OpenTelemetry
// conventions list none, this is the one in common use.
const system = "nats"

// Publish sends msgs in order and waits for each one's PubAck before the
// next, so on error the stream holds a prefix of msgs. A message whose
// id ([bus.Message.MessageID]) the stream saw within its duplicate window is acknowledged without
// being stored again. Without a deadline in ctx each message waits at most
// 5s for its ack.
func (p *Publisher) Publish(ctx context.Context, msgs ...*bus.Message) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return bus.ErrClosed
	}
	for _, m := range msgs {
		nm, err := toNATS(m)
		if err != nil {
			return fmt.Errorf("publish %s: %w", m.Topic, err)
		}
		var opts []jetstream.PublishOpt
		if id := m.MessageID(); id != "" {
			opts = append(opts, jetstream.WithMsgID(id))
		}
		ack, err := p.cn.js.PublishMsg(ctx, nm, opts...)
		switch {
		case errors.Is(err, jetstream.ErrNoStreamResponse):
			return fmt.Errorf("publish %s: no stream stores this subject (create it with natsbus.EnsureStreams): %w", m.Topic, err)
		case err != nil:
			return fmt.Errorf("publish %s: %w", m.Topic, err)
		case ack.Duplicate:
			p.cfg.logger.Debug("nats publish: duplicate dropped by the stream", "subject", m.Topic, "stream", ack.Stream, "seq", ack.Sequence)
		}
	}
	return nil
}

// Close flushes what is buffered and closes the connection. Publishes in
// flight finish first.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		p.cn.close()
	}
	return nil
}

// headerSafe reports whether v passes through a NATS header unchanged:
// nats.go trims blanks around values and replaces CR and LF.
func headerSafe(v string) bool {
	return !strings.ContainsAny(v, "\r\n") && strings.TrimSpace(v) == v
}

// reservedHeader reports header names this package or the server own.
func reservedHeader(k string) bool {
	return k == KeyHeader || strings.HasPrefix(k, EncodedHeaderPrefix) || strings.HasPrefix(k, "Nats-")
}

// setHeader adds a header to h, encoded when NATS would alter its value.
func setHeader(h nats.Header, k, v string) {
	if !headerSafe(v) {
		k, v = EncodedHeaderPrefix+k, base64.StdEncoding.EncodeToString([]byte(v))
	}
	h[k] = append(h[k], v)
}

func toNATS(m *bus.Message) (*nats.Msg, error) {
	if err := validTopic(m.Topic); err != nil {
		return nil, err
	}
	nm := &nats.Msg{Subject: m.Topic, Data: m.Value, Header: nats.Header{}}
	for _, h := range m.Headers {
		switch {
		case reservedHeader(h.Key):
			return nil, fmt.Errorf("header %q: the name is reserved by natsbus or NATS", h.Key)
		case h.Key == "" || strings.ContainsFunc(h.Key, func(r rune) bool { return r <= ' ' || r == ':' || r >= 0x7f }):
			return nil, fmt.Errorf("header %q: not a valid NATS header name", h.Key)
		}
		setHeader(nm.Header, h.Key, string(h.Value))
	}
	if len(m.Key) > 0 {
		setHeader(nm.Header, KeyHeader, string(m.Key))
	}
	if _, ok := m.Header(bus.HeaderID); !ok && m.ID != "" {
		setHeader(nm.Header, bus.HeaderID, m.ID)
	}
	return nm, nil
}

// fromNATS turns a consumed message into a bus message; the headers are
// sorted by name (NATS does not keep their order), the ID is the
// Nats-Msg-Id the message was published with, or else its bus.HeaderID
// header.
func fromNATS(msg jetstream.Msg) *bus.Message {
	m := &bus.Message{Topic: msg.Subject(), Value: msg.Data()}
	hdr := msg.Headers()
	keys := make([]string, 0, len(hdr))
	for k := range hdr {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		name, encoded := strings.CutPrefix(k, EncodedHeaderPrefix)
		if !encoded && strings.HasPrefix(k, "Nats-") {
			continue
		}
		for _, v := range hdr[k] {
			val := []byte(v)
			if encoded {
				dec, err := base64.StdEncoding.DecodeString(v)
				if err != nil {
					continue
				}
				val = dec
			}
			if name == KeyHeader {
				m.Key = val
				continue
			}
			m.Headers = append(m.Headers, bus.Header{Key: name, Value: val})
		}
	}
	m.ID = hdr.Get(jetstream.MsgIDHeader)
	if m.ID == "" {
		m.ID, _ = m.Header(bus.HeaderID)
	}
	if md, err := msg.Metadata(); err == nil {
		m.Offset = int64(md.Sequence.Stream)
		m.Timestamp = md.Timestamp
	}
	return m
}
