// Package bus is herald's publish/subscribe interface, independent of any
// broker.
//
// A [Publisher] writes [Message] values; a [Subscriber] delivers them to a
// [Handler] at least once, in order per partition. What a backend can promise
// beyond that is spelled out by [Capabilities], so that callers such as the
// outbox relay ask for a power (atomic batches) instead of assuming Kafka.
// The implementations are [github.com/herald-events/herald/platform/bus/kafkabus]
// (Kafka), [github.com/herald-events/herald/platform/bus/natsbus] (NATS
// JetStream) and [github.com/herald-events/herald/platform/bus/rabbitbus]
// (RabbitMQ); [github.com/herald-events/herald/platform/bus/bustest] is the
// conformance suite they pass (docs/transports.md compares them).
package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// DeadLetterSuffix ends the name of every dead-letter topic: the messages of
// topic T that its consumers could not handle go to T+".dlq". The consumer
// router, the dead-letter tools and the backends that declare dead-letter
// destinations (NATS streams, RabbitMQ routing keys) all name them this way.
const DeadLetterSuffix = ".dlq"

// DeadLetterTopic returns the dead-letter topic of topic: topic followed by
// [DeadLetterSuffix].
func DeadLetterTopic(topic string) string { return topic + DeadLetterSuffix }

// IsDeadLetterTopic reports whether topic is a dead-letter topic, that is
// whether it ends in [DeadLetterSuffix].
func IsDeadLetterTopic(topic string) bool { return strings.HasSuffix(topic, DeadLetterSuffix) }

// HeaderID is the header that carries a message's [Message.ID] on the wire:
// "ce_id", the id attribute of the CloudEvents Kafka protocol binding
// (binary content mode). Every backend writes it; NATS and RabbitMQ also
// put the id in their own message-id property.
const HeaderID = "ce_id"

// Header is one record header.
type Header struct {
	Key   string
	Value []byte
}

// Message is one record on the bus.
type Message struct {
	Topic string
	Key   []byte
	Value []byte
	// ID identifies the message uniquely: herald sets it to the event's
	// CloudEvents id, the same value as its [HeaderID] header. Publishers
	// write it in the [HeaderID] header when the message has none, and in
	// the broker's message-id property where there is one (NATS
	// Nats-Msg-Id, which JetStream deduplicates on; the AMQP message-id).
	// A message without ID is published with the id of its [HeaderID]
	// header, if any: see [Message.MessageID]. Consumed messages carry the
	// id the broker reports, or else the [HeaderID] header's.
	ID      string
	Headers []Header

	// Partition, Offset and Timestamp are set on consumed messages.
	Partition int32
	Offset    int64
	Timestamp time.Time
}

// Header returns the value of the first header named key.
func (m *Message) Header(key string) (string, bool) {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// HasHeader reports whether m has a header named key.
func (m *Message) HasHeader(key string) bool {
	for _, h := range m.Headers {
		if h.Key == key {
			return true
		}
	}
	return false
}

// MessageID returns the id a backend publishes the message under: m.ID, or
// when that is empty the value of the [HeaderID] header ("" when neither
// is set).
func (m *Message) MessageID() string {
	if m.ID != "" {
		return m.ID
	}
	id, _ := m.Header(HeaderID)
	return id
}

// SetHeader replaces or adds a header.
func (m *Message) SetHeader(key, value string) {
	for i := range m.Headers {
		if m.Headers[i].Key == key {
			m.Headers[i].Value = []byte(value)
			return
		}
	}
	m.Headers = append(m.Headers, Header{Key: key, Value: []byte(value)})
}

// String names the message's position for logs and errors.
func (m *Message) String() string {
	return fmt.Sprintf("%s/%d@%d", m.Topic, m.Partition, m.Offset)
}

// Capabilities states what a backend guarantees beyond at-least-once
// delivery.
type Capabilities struct {
	// System names the messaging system for telemetry, as the OpenTelemetry
	// messaging semantic conventions spell the messaging.system attribute:
	// "kafka", "rabbitmq"; "nats", which the conventions do not list yet.
	System string
	// AtomicBatches: every message passed to one Publish call becomes
	// visible to read-committed consumers together, or none does (Kafka
	// transactions). Without it a failed Publish may have written a prefix.
	AtomicBatches bool
	// OrderedByKey: messages with the same key are delivered in publish
	// order.
	OrderedByKey bool
	// Partitions: consumed messages carry a partition and offset.
	Partitions bool
}

// Publisher writes messages to the bus.
type Publisher interface {
	// Publish writes msgs and returns once the backend has them durably.
	// With Capabilities().AtomicBatches the batch is all-or-nothing.
	Publish(ctx context.Context, msgs ...*Message) error
	// Capabilities reports what Publish guarantees.
	Capabilities() Capabilities
	// Close releases the publisher.
	Close() error
}

// Handler processes one consumed message. Returning nil acknowledges it; an
// error makes the subscriber deliver the same message again (after a pause)
// and hold back the messages behind it, so nothing is skipped. Dead-lettering
// is a handler concern: see the consumer package.
type Handler func(ctx context.Context, msg *Message) error

// Subscriber delivers messages of a consumer group to a handler.
type Subscriber interface {
	// Run consumes topics as group until ctx is done or a fatal error
	// occurs. Messages of one partition are handled one at a time, in order;
	// different partitions run concurrently. A message is committed only
	// after the handler returned nil for it.
	Run(ctx context.Context, group string, topics []string, h Handler) error
	// Capabilities reports what delivery guarantees.
	Capabilities() Capabilities
}

// ErrClosed is returned by a publisher used after Close.
var ErrClosed = errors.New("bus: closed")

type deliveryKey struct{}

// WithDeliveryPublisher returns ctx carrying a publisher bound to the
// delivery in progress: on a backend with transactions, what it publishes
// commits or aborts together with the consumed offsets. Subscribers set it;
// handlers that publish on the bus (dead-lettering) prefer it.
func WithDeliveryPublisher(ctx context.Context, p Publisher) context.Context {
	return context.WithValue(ctx, deliveryKey{}, p)
}

// DeliveryPublisher returns the publisher set by [WithDeliveryPublisher].
func DeliveryPublisher(ctx context.Context) (Publisher, bool) {
	p, ok := ctx.Value(deliveryKey{}).(Publisher)
	return p, ok
}

type passOverKey struct{}

// PassOver tells the subscriber delivering ctx's message that its handler
// passed over it: nothing applied, nothing published (a type the handler
// does not handle, on a topic that carries several). A subscriber with
// transactions may then acknowledge it with a later transaction instead
// of one of its own. Handlers call it at most once per call, and only when
// they return nil.
func PassOver(ctx context.Context) {
	if n, ok := ctx.Value(passOverKey{}).(*atomic.Int64); ok {
		n.Add(1)
	}
}

// WithPassOverCount returns ctx in which [PassOver] adds one to n.
// Subscribers set it.
func WithPassOverCount(ctx context.Context, n *atomic.Int64) context.Context {
	return context.WithValue(ctx, passOverKey{}, n)
}
