package rabbitbus

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/herald-events/herald/platform/bus"
)

// The consumer package's dead-letter headers and error class (the package is
// not imported for a few strings; a test checks they agree).
const (
	headerDLQTopic    = "herald_dlq_topic"
	headerDLQGroup    = "herald_dlq_group"
	headerDLQClass    = "herald_dlq_error_class"
	headerDLQError    = "herald_dlq_error"
	headerDLQAttempts = "herald_dlq_attempts"
	headerDLQTime     = "herald_dlq_time"
	classExhausted    = "retries_exhausted"
)

// CloudEvents headers (Kafka protocol binding names, as herald's event
// package writes them) whose values also fill AMQP properties. The event
// package is not imported for two strings; a test checks they agree.
const (
	headerContentType = "content-type"
	headerType        = "ce_type"
)

// toPublishing turns a message into an AMQP publishing: headers as a table of
// strings (AMQP long strings carry any bytes), the first of headers with the
// same name winning as in [bus.Message.Header], the key in [KeyHeader], the
// ID ([bus.Message.MessageID]) as the message id and, when the message has
// no [bus.HeaderID] header, in one.
func toPublishing(m *bus.Message, now time.Time) amqp.Publishing {
	headers := make(amqp.Table, len(m.Headers)+1)
	for _, h := range m.Headers {
		if _, dup := headers[h.Key]; !dup {
			headers[h.Key] = string(h.Value)
		}
	}
	if len(m.Key) > 0 {
		headers[KeyHeader] = string(m.Key)
	} else {
		delete(headers, KeyHeader)
	}
	if _, ok := headers[bus.HeaderID]; !ok && m.ID != "" {
		headers[bus.HeaderID] = m.ID
	}
	p := amqp.Publishing{Headers: headers, DeliveryMode: amqp.Persistent, Timestamp: now, Body: m.Value}
	if id := m.MessageID(); len(id) <= 255 {
		p.MessageId = id
	}
	if ct, ok := m.Header(headerContentType); ok && len(ct) <= 255 {
		p.ContentType = ct
	}
	if typ, ok := m.Header(headerType); ok && len(typ) <= 255 {
		p.Type = typ
	}
	return p
}

// fromDelivery turns a delivery from topic's queue into a message. Header
// values that are not strings are formatted; nested tables and arrays (the
// broker's x-death) are left out, and summarised in herald_dlq_* headers
// when the broker dead-lettered the message.
func fromDelivery(topic string, d *amqp.Delivery) *bus.Message {
	m := &bus.Message{Topic: topic, Value: d.Body, Timestamp: d.Timestamp}
	names := make([]string, 0, len(d.Headers))
	for k := range d.Headers {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		v, ok := headerValue(d.Headers[k])
		if !ok {
			continue
		}
		if k == KeyHeader {
			m.Key = v
			continue
		}
		m.Headers = append(m.Headers, bus.Header{Key: k, Value: v})
	}
	if _, ok := m.Header(bus.HeaderID); !ok && d.MessageId != "" {
		m.SetHeader(bus.HeaderID, d.MessageId)
	}
	m.ID = d.MessageId
	if m.ID == "" {
		m.ID, _ = m.Header(bus.HeaderID)
	}
	if reason, ok := m.Header("x-first-death-reason"); ok {
		if _, ours := m.Header(headerDLQTopic); !ours {
			addDeathHeaders(m, d, reason)
		}
	}
	return m
}

func headerValue(v any) ([]byte, bool) {
	switch v := v.(type) {
	case string:
		return []byte(v), true
	case []byte:
		return append([]byte(nil), v...), true
	case nil:
		return []byte{}, true
	case amqp.Table, []any:
		return nil, false
	case time.Time:
		return []byte(v.UTC().Format(time.RFC3339)), true
	default:
		return []byte(fmt.Sprint(v)), true
	}
}

// addDeathHeaders describes a message the broker dead-lettered (rejected by
// Run past its delivery limit, or returned to the queue too often) with the
// headers the consumer package's DeadLetter middleware writes.
func addDeathHeaders(m *bus.Message, d *amqp.Delivery, reason string) {
	queue, _ := m.Header("x-first-death-queue")
	class := reason
	if reason == "rejected" || reason == "delivery_limit" {
		class = classExhausted
	}
	at := time.Now().UTC()
	count := int64(0)
	if deaths, ok := d.Headers["x-death"].([]any); ok && len(deaths) > 0 {
		if first, ok := deaths[len(deaths)-1].(amqp.Table); ok {
			if t, ok := first["time"].(time.Time); ok {
				at = t.UTC()
			}
		}
	}
	if n, ok := d.Headers["x-delivery-count"]; ok {
		if c, err := strconv.ParseInt(fmt.Sprint(n), 10, 64); err == nil {
			count = c + 1
		}
	}
	m.SetHeader(headerDLQTopic, strings.TrimSuffix(m.Topic, bus.DeadLetterSuffix))
	m.SetHeader(headerDLQGroup, groupOfQueue(queue))
	m.SetHeader(headerDLQClass, class)
	m.SetHeader(headerDLQError, fmt.Sprintf("rabbitmq dead-lettered the message from queue %s (%s)", queue, reason))
	if count > 0 {
		m.SetHeader(headerDLQAttempts, strconv.FormatInt(count, 10))
	}
	m.SetHeader(headerDLQTime, at.Format(time.RFC3339Nano))
}
