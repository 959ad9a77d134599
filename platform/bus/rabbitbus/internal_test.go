package rabbitbus

import (
	"bytes"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/event"
)

func TestExchangeName(t *testing.T) {
	for topic, want := range map[string]string{
		"herald.orders.v1":          "herald.orders",
		"herald.orders.v1.dlq":      "herald.orders",
		"ns1.herald.orders.v1":      "ns1.herald.orders",
		"ns1.herald.orders.v12.dlq": "ns1.herald.orders",
		"herald.orders":             "herald.orders",
		"audit":                     "audit",
		"v1":                        "v1",
		"herald.orders.vx":          "herald.orders.vx",
	} {
		if got := ExchangeName(topic); got != want {
			t.Errorf("ExchangeName(%q) = %q, want %q", topic, got, want)
		}
	}
	if g := groupOfQueue(QueueName("ns1.orders-projector", "ns1.herald.orders.v1")); g != "ns1.orders-projector" {
		t.Errorf("groupOfQueue: %q", g)
	}
}

func TestDLQHeadersMatchConsumer(t *testing.T) {
	for ours, theirs := range map[string]string{
		headerDLQTopic: consumer.HeaderDLQTopic, headerDLQGroup: consumer.HeaderDLQGroup,
		headerDLQClass: consumer.HeaderDLQClass, headerDLQError: consumer.HeaderDLQError,
		headerDLQAttempts: consumer.HeaderDLQAttempts, headerDLQTime: consumer.HeaderDLQTime,
		classExhausted: consumer.ClassExhausted,
	} {
		if ours != theirs {
			t.Errorf("%q differs from the consumer package's %q", ours, theirs)
		}
	}
}

func TestCloudEventsHeadersMatchEvent(t *testing.T) {
	for ours, theirs := range map[string]string{
		headerContentType: event.HeaderContentType, headerType: event.HeaderType, bus.HeaderID: event.HeaderID,
	} {
		if ours != theirs {
			t.Errorf("%q differs from the event package's %q", ours, theirs)
		}
	}
}

// TestMessageID: the ID becomes the AMQP message id and comes back as the
// consumed message's ID, whether the publisher set it or only the ce_id
// header; an ID alone is also written in the ce_id header.
func TestMessageID(t *testing.T) {
	byField := &bus.Message{Topic: "herald.orders.v1", ID: "id-field"}
	byHeader := &bus.Message{Topic: "herald.orders.v1"}
	byHeader.SetHeader(bus.HeaderID, "id-header")
	for _, m := range []*bus.Message{byField, byHeader} {
		want := m.MessageID()
		p := toPublishing(m, time.Now())
		if p.MessageId != want {
			t.Errorf("message id %q, want %q", p.MessageId, want)
		}
		if v, _ := p.Headers[bus.HeaderID].(string); v != want {
			t.Errorf("%s header %q, want %q", bus.HeaderID, v, want)
		}
		got := fromDelivery(m.Topic, &amqp.Delivery{Headers: p.Headers, MessageId: p.MessageId})
		if got.ID != want {
			t.Errorf("consumed ID %q, want %q", got.ID, want)
		}
	}
	// A delivery from another publisher: the message id alone.
	if got := fromDelivery("herald.orders.v1", &amqp.Delivery{MessageId: "foreign"}); got.ID != "foreign" {
		t.Errorf("consumed ID %q, want the AMQP message id", got.ID)
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	m := &bus.Message{Topic: "herald.orders.v1", Key: []byte{0, 1, 'k'}, Value: []byte("v")}
	m.SetHeader(event.HeaderID, "id-1")
	m.SetHeader(event.HeaderContentType, "application/protobuf")
	m.SetHeader("bin", "\x00\xff")
	m.SetHeader("empty", "")
	m.Headers = append(m.Headers, bus.Header{Key: "bin", Value: []byte("second")})
	now := time.Now()
	p := toPublishing(m, now)
	if p.MessageId != "id-1" || p.DeliveryMode != amqp.Persistent || p.ContentType != "application/protobuf" {
		t.Fatalf("publishing properties: %+v", p)
	}
	if err := p.Headers.Validate(); err != nil {
		t.Fatalf("header table: %v", err)
	}
	d := &amqp.Delivery{Headers: p.Headers, Body: p.Body, Timestamp: p.Timestamp, MessageId: p.MessageId}
	got := fromDelivery("herald.orders.v1", d)
	if !bytes.Equal(got.Key, m.Key) || string(got.Value) != "v" || got.Topic != m.Topic {
		t.Fatalf("got %+v", got)
	}
	for _, k := range []string{event.HeaderID, event.HeaderContentType, "bin", "empty"} {
		want, _ := m.Header(k)
		if v, ok := got.Header(k); !ok || v != want {
			t.Errorf("header %s = %q (%v), want %q", k, v, ok, want)
		}
	}
	if _, ok := got.Header(KeyHeader); ok {
		t.Errorf("the key header leaked into the message headers")
	}
}

func TestDeathHeaders(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d := &amqp.Delivery{Headers: amqp.Table{
		KeyHeader:              "k",
		"x-first-death-reason": "delivery_limit",
		"x-first-death-queue":  QueueName("g1", "herald.orders.v1"),
		"x-death":              []any{amqp.Table{"time": at, "reason": "delivery_limit"}},
		"x-delivery-count":     int64(3),
	}}
	m := fromDelivery("herald.orders.v1.dlq", d)
	for k, want := range map[string]string{
		consumer.HeaderDLQTopic: "herald.orders.v1", consumer.HeaderDLQGroup: "g1",
		consumer.HeaderDLQClass: consumer.ClassExhausted, consumer.HeaderDLQAttempts: "4",
		consumer.HeaderDLQTime: at.Format(time.RFC3339Nano),
	} {
		if v, _ := m.Header(k); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
	if _, ok := m.Header("x-death"); ok {
		t.Errorf("x-death (an array) should be left out")
	}
}
