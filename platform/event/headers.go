package event

import (
	"time"

	"github.com/herald-events/herald/platform/bus"
)

// TimeLayout is how ce_time is written.
const TimeLayout = time.RFC3339Nano

// Headers returns the CloudEvents attributes of one event as the headers of
// its bus message (the Kafka protocol binding's binary mode: "ce_" headers,
// the value is the event data): ce_id, ce_type, ce_source, ce_time
// (formatted with [TimeLayout]), ce_specversion, ce_subject (the key),
// content-type and traceparent, in that order and in one allocation. The
// outbox relay and the consumer-transaction unit both frame events with it.
func Headers(id, typ, source, at, key, traceparent string) []bus.Header {
	return []bus.Header{
		{Key: HeaderID, Value: []byte(id)},
		{Key: HeaderType, Value: []byte(typ)},
		{Key: HeaderSource, Value: []byte(source)},
		{Key: HeaderTime, Value: []byte(at)},
		{Key: HeaderSpecVersion, Value: []byte(SpecVersion)},
		{Key: HeaderSubject, Value: []byte(key)},
		{Key: HeaderContentType, Value: []byte(ContentType)},
		{Key: HeaderTraceParent, Value: []byte(traceparent)},
	}
}
