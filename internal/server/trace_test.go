package server_test

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/observe"
)

// TestOneTraceAcrossTheSaga follows an order from the gRPC call through the
// orders outbox, the Kafka record, inventory's handler and outbox, and the
// reply handled by orders: every span belongs to the trace the gRPC call
// started, each continuing the one before.
func TestOneTraceAcrossTheSaga(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	s := startProcessWith(t, t.TempDir(), func(c *server.Config) {
		c.Tracing = &observe.Tracing{Provider: tp, Propagator: propagation.TraceContext{}}
	})
	s.setStock(t, "APPLE", 5)
	o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "alice", Items: []*ordersv1.LineItem{item("APPLE", 1)}})
	s.waitStatus(t, o.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)

	chain := []string{
		"herald.orders.v1.OrderService/CreateOrder",
		"outbox.add herald.orders.v1.OrderCreated",
		"publish " + s.topic("herald.orders.v1"),
		"handle herald.orders.v1.OrderCreated",
		"outbox.add herald.inventory.v1.InventoryDeducted",
		"publish " + s.topic("herald.inventory.v1"),
		"handle herald.inventory.v1.InventoryDeducted",
		"outbox.add herald.orders.v1.OrderConfirmed",
	}
	// Walk the chain: each step is a child of the one before. Other
	// subscribers handle the same events with spans of the same names, so
	// every candidate child is tried.
	eventually(t, 20*time.Second, func() bool {
		ended := rec.Ended()
		for _, root := range children(ended, chain[0], nil) {
			if follows(ended, root, chain[1:]) {
				return true
			}
		}
		return false
	}, "the saga's spans, each the child of the one before")
}

// follows reports whether a chain of span names descends from parent.
func follows(spans []sdktrace.ReadOnlySpan, parent sdktrace.ReadOnlySpan, chain []string) bool {
	if len(chain) == 0 {
		return true
	}
	for _, c := range children(spans, chain[0], parent) {
		if follows(spans, c, chain[1:]) {
			return true
		}
	}
	return false
}

// children returns the spans named name whose parent is parent (any span
// of that name when parent is nil).
func children(spans []sdktrace.ReadOnlySpan, name string, parent sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, sp := range spans {
		if sp.Name() != name {
			continue
		}
		if parent == nil || (sp.Parent().SpanID() == parent.SpanContext().SpanID() &&
			sp.SpanContext().TraceID() == parent.SpanContext().TraceID()) {
			out = append(out, sp)
		}
	}
	return out
}
