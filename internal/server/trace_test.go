package server_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/observe"
)

// step is one span of the saga's trace: its name and the service that
// made it.
type step struct{ name, service string }

// TestOneTraceAcrossTheSaga follows an order from the gRPC call through the
// orders outbox, the Kafka record, inventory's handler and outbox, and the
// reply handled by orders: every span belongs to the trace the gRPC call
// started, each continuing the one before, each carrying the service.name
// of the service that made it and, for messaging spans, the OpenTelemetry
// messaging attributes. Risk's RiskAssessed, published in the consumer's
// transaction, has its own send span.
func TestOneTraceAcrossTheSaga(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tracing, err := observe.NewTracingWith(observe.Identity{Version: "v9.9.9-test", InstanceID: "trace-test"},
		func(string) string { return "" }, rec)
	if err != nil {
		t.Fatal(err)
	}
	s := startProcessWith(t, t.TempDir(), func(c *server.Config) {
		c.Tracing = tracing
		c.InstanceID = "trace-test"
	})
	s.setStock(t, "APPLE", 5)
	o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "alice", Items: []*ordersv1.LineItem{item("APPLE", 1)}})
	s.waitStatus(t, o.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)

	ordersTopic, inventoryTopic, riskTopic := s.topic("herald.orders.v1"), s.topic("herald.inventory.v1"), s.topic("herald.risk.v1")
	saga := []step{
		{"herald.orders.v1.OrderService/CreateOrder", "orders"},
		{"outbox.add herald.orders.v1.OrderCreated", "orders"},
		{"send " + ordersTopic, "orders"},
		{"process " + ordersTopic, "inventory"},
		{"outbox.add herald.inventory.v1.InventoryDeducted", "inventory"},
		{"send " + inventoryTopic, "inventory"},
		{"process " + inventoryTopic, "orders"},
		{"outbox.add herald.orders.v1.OrderConfirmed", "orders"},
	}
	// Risk handles OrderCreated and produces RiskAssessed through the
	// consumer's transaction: a send span, child of its process span.
	risk := append(append([]step{}, saga[:3]...), step{"process " + ordersTopic, "risk"}, step{"send " + riskTopic, "risk"})

	var root sdktrace.ReadOnlySpan
	eventually(t, 20*time.Second, func() bool {
		ended := rec.Ended()
		for _, r := range children(ended, saga[0], nil) {
			if follows(ended, r, saga[1:]) && follows(ended, r, risk[1:]) {
				root = r
				return true
			}
		}
		return false
	}, "the saga's spans, each the child of the one before, with risk's send span")

	var spans []sdktrace.ReadOnlySpan
	for _, sp := range rec.Ended() {
		if sp.SpanContext().TraceID() == root.SpanContext().TraceID() {
			spans = append(spans, sp)
		}
	}
	// The tree is intact: every span but the root has its parent in the
	// trace.
	ids := map[trace.SpanID]bool{}
	for _, sp := range spans {
		ids[sp.SpanContext().SpanID()] = true
	}
	services := map[string]bool{}
	for _, sp := range spans {
		if sp.SpanContext().SpanID() != root.SpanContext().SpanID() && !ids[sp.Parent().SpanID()] {
			t.Errorf("span %q (%s): parent %s is not in the trace", sp.Name(), serviceOf(sp), sp.Parent().SpanID())
		}
		res := resourceOf(sp)
		services[res["service.name"]] = true
		if res["service.version"] != "v9.9.9-test" || res["service.instance.id"] != "trace-test" || res["service.namespace"] != "herald" {
			t.Errorf("span %q: resource %v: want service.version, service.instance.id and service.namespace set", sp.Name(), res)
		}
		checkMessaging(t, sp)
	}
	for _, want := range []string{"orders", "inventory", "risk"} {
		if !services[want] {
			t.Errorf("no span of service %q in the trace (services: %v)", want, services)
		}
	}
}

// TestMessagingSpansOnEveryBus runs an order on NATS and RabbitMQ (when
// their servers and the real stack are in the environment) and checks the
// producer and consumer spans: named by the conventions, messaging.system
// of the bus, and no Kafka attributes.
func TestMessagingSpansOnEveryBus(t *testing.T) {
	if _, ok := realStack(); !ok {
		t.Skip("needs the real stack (HERALD_KAFKA_BROKERS, HERALD_SCHEMA_REGISTRY_URL, HERALD_DATABASE_URL) and HERALD_NATS_URL or HERALD_RABBITMQ_URL")
	}
	for _, b := range []struct{ bus, system, urlVar string }{
		{server.BusNATS, "nats", "HERALD_NATS_URL"},
		{server.BusRabbitMQ, "rabbitmq", "HERALD_RABBITMQ_URL"},
	} {
		t.Run(b.bus, func(t *testing.T) {
			url := os.Getenv(b.urlVar)
			if url == "" {
				t.Skipf("%s is not set", b.urlVar)
			}
			rec := tracetest.NewSpanRecorder()
			tracing, err := observe.NewTracingWith(observe.Identity{}, func(string) string { return "" }, rec)
			if err != nil {
				t.Fatal(err)
			}
			s := startProcessWith(t, t.TempDir(), func(c *server.Config) {
				c.Tracing, c.Bus = tracing, b.bus
				c.NATSURL, c.RabbitMQURL = "", ""
				if b.bus == server.BusNATS {
					c.NATSURL = url
				} else {
					c.RabbitMQURL = url
				}
				c.Services = []string{"orders", "inventory"}
			})
			s.setStock(t, "APPLE", 5)
			o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "alice", Items: []*ordersv1.LineItem{item("APPLE", 1)}})
			s.waitStatus(t, o.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)
			ordersTopic := s.topic("herald.orders.v1")
			eventually(t, 20*time.Second, func() bool {
				var send, process bool
				for _, sp := range rec.Ended() {
					send = send || (sp.Name() == "send "+ordersTopic && serviceOf(sp) == "orders")
					process = process || (sp.Name() == "process "+ordersTopic && serviceOf(sp) == "inventory")
				}
				return send && process
			}, "send and process spans of %s", ordersTopic)
			for _, sp := range rec.Ended() {
				if sp.SpanKind() != trace.SpanKindProducer && sp.SpanKind() != trace.SpanKindConsumer {
					continue
				}
				a := attrsOf(sp)
				if a["messaging.system"] != b.system {
					t.Errorf("span %q: messaging.system %q, want %q", sp.Name(), a["messaging.system"], b.system)
				}
				for _, k := range []string{"messaging.kafka.message.key", "messaging.kafka.offset", "messaging.destination.partition.id"} {
					if _, ok := a[k]; ok {
						t.Errorf("span %q on %s has %s", sp.Name(), b.system, k)
					}
				}
				op := strings.Fields(sp.Name())[0]
				if a["messaging.operation.name"] != op || a["messaging.operation.type"] != op || a["messaging.message.id"] == "" {
					t.Errorf("span %q: attributes %v", sp.Name(), a)
				}
			}
		})
	}
}

// checkMessaging checks a producer or consumer span against the
// OpenTelemetry messaging conventions (Kafka, as herald dev runs).
func checkMessaging(t *testing.T, sp sdktrace.ReadOnlySpan) {
	t.Helper()
	var op string
	switch sp.SpanKind() {
	case trace.SpanKindProducer:
		op = "send"
	case trace.SpanKindConsumer:
		op = "process"
	default:
		return
	}
	a := attrsOf(sp)
	dest := a["messaging.destination.name"]
	if sp.Name() != op+" "+dest {
		t.Errorf("%s span named %q, want %q", sp.SpanKind(), sp.Name(), op+" "+dest)
	}
	want := map[string]string{"messaging.system": "kafka", "messaging.operation.name": op, "messaging.operation.type": op}
	for k, v := range want {
		if a[k] != v {
			t.Errorf("span %q (%s): %s=%q, want %q", sp.Name(), serviceOf(sp), k, a[k], v)
		}
	}
	required := []string{"messaging.message.id", "messaging.kafka.message.key"}
	if op == "process" {
		required = append(required, "messaging.consumer.group.name", "messaging.destination.partition.id", "messaging.kafka.offset")
	}
	for _, k := range required {
		if a[k] == "" {
			t.Errorf("span %q (%s): no %s (attributes %v)", sp.Name(), serviceOf(sp), k, a)
		}
	}
	if op == "process" && !strings.HasSuffix(a["messaging.consumer.group.name"], serviceOf(sp)) {
		t.Errorf("span %q of %s: consumer group %q", sp.Name(), serviceOf(sp), a["messaging.consumer.group.name"])
	}
}

func attrsOf(sp sdktrace.ReadOnlySpan) map[string]string {
	return kvs(sp.Attributes())
}

func resourceOf(sp sdktrace.ReadOnlySpan) map[string]string {
	return kvs(sp.Resource().Attributes())
}

func kvs(attrs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range attrs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func serviceOf(sp sdktrace.ReadOnlySpan) string { return resourceOf(sp)["service.name"] }

// follows reports whether a chain of steps descends from parent.
func follows(spans []sdktrace.ReadOnlySpan, parent sdktrace.ReadOnlySpan, chain []step) bool {
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

// children returns the spans of step s whose parent is parent (any such
// span when parent is nil).
func children(spans []sdktrace.ReadOnlySpan, s step, parent sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, sp := range spans {
		if sp.Name() != s.name || serviceOf(sp) != s.service {
			continue
		}
		if parent == nil || (sp.Parent().SpanID() == parent.SpanContext().SpanID() &&
			sp.SpanContext().TraceID() == parent.SpanContext().TraceID()) {
			out = append(out, sp)
		}
	}
	return out
}
