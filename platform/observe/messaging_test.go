package observe_test

import (
	"testing"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/observe"
)

// TestMessagingAttributes: each bus gets the attributes the OpenTelemetry
// messaging conventions define for it, and none of another system's.
func TestMessagingAttributes(t *testing.T) {
	m := &bus.Message{ID: "e-1", Topic: "herald.orders.v1", Key: []byte("o-1"), Partition: 2, Offset: 41}
	for _, tc := range []struct {
		system, op, group string
		want              map[string]string
		absent            []string
	}{
		{"kafka", observe.OperationProcess, "herald-inventory", map[string]string{
			"messaging.system": "kafka", "messaging.operation.name": "process", "messaging.operation.type": "process",
			"messaging.destination.name": "herald.orders.v1", "messaging.message.id": "e-1", "messaging.consumer.group.name": "herald-inventory",
			"messaging.kafka.message.key": "o-1", "messaging.destination.partition.id": "2", "messaging.kafka.offset": "41",
		}, []string{"messaging.rabbitmq.destination.routing_key"}},
		{"kafka", observe.OperationSend, "", map[string]string{
			"messaging.operation.name": "send", "messaging.operation.type": "send", "messaging.kafka.message.key": "o-1",
		}, []string{"messaging.consumer.group.name", "messaging.kafka.offset", "messaging.destination.partition.id"}},
		{"nats", observe.OperationProcess, "g", map[string]string{
			"messaging.system": "nats", "messaging.operation.name": "process", "messaging.message.id": "e-1", "messaging.consumer.group.name": "g",
		}, []string{"messaging.kafka.message.key", "messaging.kafka.offset", "messaging.destination.partition.id"}},
		{"rabbitmq", observe.OperationSend, "", map[string]string{
			"messaging.system": "rabbitmq", "messaging.operation.type": "send", "messaging.rabbitmq.destination.routing_key": "herald.orders.v1",
		}, []string{"messaging.kafka.message.key", "messaging.kafka.offset"}},
	} {
		t.Run(tc.system+"/"+tc.op, func(t *testing.T) {
			got := map[string]string{}
			for _, kv := range observe.MessagingAttributes(tc.system, tc.op, tc.group, m) {
				got[string(kv.Key)] = kv.Value.Emit()
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			for _, k := range tc.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s set on %s", k, tc.system)
				}
			}
		})
	}
	if n := observe.MessagingSpanName(observe.OperationProcess, "herald.orders.v1"); n != "process herald.orders.v1" {
		t.Errorf("span name %q", n)
	}
}
