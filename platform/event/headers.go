package event

import (
	"time"

	"github.com/herald-events/herald/platform/bus"
)

// TimeLayout is how ce_time is written.
const TimeLayout = time.RFC3339Nano

// HeaderCount is how many headers [Headers] and [AppendHeaders] make.
const HeaderCount = 8

// Headers returns the CloudEvents attributes of one event as the headers of
// its bus message (the Kafka protocol binding's binary mode: "ce_" headers,
// the value is the event data): ce_id, ce_type, ce_source, ce_time
// (formatted with [TimeLayout]), ce_specversion, ce_subject (the key),
// content-type and traceparent, in that order and in one allocation for
// the values. The consumer-transaction unit frames events with it; the
// outbox relay, which frames batches, with [AppendHeaders].
func Headers(id, typ, source, at, key, traceparent string) []bus.Header {
	_, hs, _ := AppendHeaders(make([]bus.Header, 0, HeaderCount),
		make([]byte, 0, HeadersLen(id, typ, source, at, key, traceparent)),
		id, typ, source, at, key, traceparent)
	return hs
}

// AppendHeaders appends the headers [Headers] makes to hs, with their values
// appended to buf, and returns both grown, with the event's headers on
// their own: the last eight of hs, capped at their end, so that an append
// to one message's headers never writes into the next message's. Each
// value is capped at its own end in buf. A batch of events framed this way
// takes two allocations for all their headers when hs and buf have room
// for the batch ([HeadersLen]); without room they grow as append grows
// them, and the headers already returned stay valid.
func AppendHeaders(hs []bus.Header, buf []byte, id, typ, source, at, key, traceparent string) (all, own []bus.Header, _ []byte) {
	keys := [HeaderCount]string{HeaderID, HeaderType, HeaderSource, HeaderTime, HeaderSpecVersion,
		HeaderSubject, HeaderContentType, HeaderTraceParent}
	values := [HeaderCount]string{id, typ, source, at, SpecVersion, key, ContentType, traceparent}
	for i, v := range values {
		start := len(buf)
		buf = append(buf, v...)
		hs = append(hs, bus.Header{Key: keys[i], Value: buf[start:len(buf):len(buf)]})
	}
	return hs, hs[len(hs)-HeaderCount : len(hs) : len(hs)], buf
}

// HeadersLen is how many bytes of values [AppendHeaders] appends for an
// event with these attributes.
func HeadersLen(id, typ, source, at, key, traceparent string) int {
	return len(id) + len(typ) + len(source) + len(at) + len(SpecVersion) + len(key) + len(ContentType) + len(traceparent)
}
