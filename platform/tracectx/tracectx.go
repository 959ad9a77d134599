// Package tracectx carries a W3C trace context (the traceparent header)
// through a context, so an event published while serving a request, or while
// handling another event, continues the same trace.
package tracectx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
)

// SpanContext is the part of a traceparent that identifies a span.
type SpanContext struct {
	TraceID [16]byte
	SpanID  [8]byte
	Flags   byte
}

// New starts a new sampled trace.
func New() SpanContext {
	var sc SpanContext
	_, _ = rand.Read(sc.TraceID[:])
	_, _ = rand.Read(sc.SpanID[:])
	sc.Flags = 1
	return sc
}

// Child returns a new span in the same trace.
func (sc SpanContext) Child() SpanContext {
	c := sc
	_, _ = rand.Read(c.SpanID[:])
	return c
}

// String formats the traceparent header value (version 00).
func (sc SpanContext) String() string {
	return fmt.Sprintf("00-%s-%s-%02x", hex.EncodeToString(sc.TraceID[:]), hex.EncodeToString(sc.SpanID[:]), sc.Flags)
}

// TraceIDString returns the trace id in hex.
func (sc SpanContext) TraceIDString() string { return hex.EncodeToString(sc.TraceID[:]) }

// Parse reads a traceparent header value.
func Parse(s string) (SpanContext, error) {
	var sc SpanContext
	parts := strings.Split(strings.TrimSpace(s), "-")
	if len(parts) < 4 || len(parts[0]) != 2 || parts[0] == "ff" || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		return sc, fmt.Errorf("traceparent %q: malformed", s)
	}
	if parts[0] == "00" && len(parts) != 4 {
		return sc, fmt.Errorf("traceparent %q: malformed", s)
	}
	if _, err := hex.Decode(sc.TraceID[:], []byte(parts[1])); err != nil {
		return sc, fmt.Errorf("traceparent %q: trace id: %w", s, err)
	}
	if _, err := hex.Decode(sc.SpanID[:], []byte(parts[2])); err != nil {
		return sc, fmt.Errorf("traceparent %q: span id: %w", s, err)
	}
	var f [1]byte
	if _, err := hex.Decode(f[:], []byte(parts[3])); err != nil {
		return sc, fmt.Errorf("traceparent %q: flags: %w", s, err)
	}
	sc.Flags = f[0]
	if sc.TraceID == [16]byte{} || sc.SpanID == [8]byte{} {
		return sc, fmt.Errorf("traceparent %q: zero id", s)
	}
	return sc, nil
}

type key struct{}

// With returns ctx carrying sc.
func With(ctx context.Context, sc SpanContext) context.Context {
	return context.WithValue(ctx, key{}, sc)
}

// From returns the span context of ctx, if any.
func From(ctx context.Context) (SpanContext, bool) {
	sc, ok := ctx.Value(key{}).(SpanContext)
	return sc, ok
}

// ChildOf returns a child of ctx's span, or a new trace when ctx has none.
func ChildOf(ctx context.Context) SpanContext {
	if sc, ok := From(ctx); ok {
		return sc.Child()
	}
	return New()
}
