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
	keys := [...]string{HeaderID, HeaderType, HeaderSource, HeaderTime, HeaderSpecVersion,
		HeaderSubject, HeaderContentType, HeaderTraceParent}
	values := [...]string{id, typ, source, at, SpecVersion, key, ContentType, traceparent}
	n := 0
	for _, v := range values {
		n += len(v)
	}
	// The values share one buffer; each is capped at its own end, so an
	// append to one never writes into the next.
	buf := make([]byte, 0, n)
	hs := make([]bus.Header, len(keys))
	for i, v := range values {
		start := len(buf)
		buf = append(buf, v...)
		hs[i] = bus.Header{Key: keys[i], Value: buf[start:len(buf):len(buf)]}
	}
	return hs
}
