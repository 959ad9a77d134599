package observe

import (
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"

	"github.com/herald-events/herald/platform/bus"
)

// Messaging operations, as the OpenTelemetry messaging conventions name
// them (messaging.operation.name and messaging.operation.type), and as a
// span's name begins: "send <destination>", "process <destination>".
const (
	OperationSend    = "send"
	OperationProcess = "process"
)

// MessagingSpanName is the conventional name of a messaging span:
// "<operation> <destination>".
func MessagingSpanName(operation, destination string) string {
	return operation + " " + destination
}

// MessagingAttributes are the messaging attributes of a span that sends
// (producer) or processes (consumer) m on a bus of the given system
// ("kafka", "nats", "rabbitmq"): operation name and type, destination,
// message id (the event's ce_id), and, where the system has them, the
// partition, the offset and the Kafka key (RabbitMQ: the routing key). group is the consumer group of
// a process span ("" for a send).
func MessagingAttributes(system, operation, group string, m *bus.Message) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKey.String(system),
		semconv.MessagingOperationName(operation),
		semconv.MessagingOperationTypeKey.String(operation),
		semconv.MessagingDestinationName(m.Topic),
	}
	if id := m.MessageID(); id != "" {
		attrs = append(attrs, semconv.MessagingMessageID(id))
	}
	if group != "" {
		attrs = append(attrs, semconv.MessagingConsumerGroupName(group))
	}
	switch system {
	case "rabbitmq":
		// herald routes every message by its full topic.
		attrs = append(attrs, semconv.MessagingRabbitMQDestinationRoutingKey(m.Topic))
	case "kafka":
		if len(m.Key) > 0 {
			attrs = append(attrs, semconv.MessagingKafkaMessageKey(string(m.Key)))
		}
		if operation == OperationProcess {
			attrs = append(attrs, semconv.MessagingDestinationPartitionID(strconv.Itoa(int(m.Partition))),
				semconv.MessagingKafkaOffset(int(m.Offset)))
		}
	}
	return attrs
}
