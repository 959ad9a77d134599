// Package platform is the root of herald's shop-agnostic event platform.
//
// Its sub-packages know no business domain:
//   - [github.com/herald-events/herald/platform/event] reads the routing options on event messages and
//     names the CloudEvents headers every record carries;
//   - [github.com/herald-events/herald/platform/bus] is the publish/subscribe interface, with
//     [github.com/herald-events/herald/platform/bus/kafkabus] (Kafka),
//     [github.com/herald-events/herald/platform/bus/natsbus] (NATS JetStream) and
//     [github.com/herald-events/herald/platform/bus/rabbitbus] (RabbitMQ) as implementations and
//     [github.com/herald-events/herald/platform/bus/bustest] as the conformance suite they pass;
//   - [github.com/herald-events/herald/platform/schema] frames values in the Confluent wire format
//     through a schema registry, and [github.com/herald-events/herald/platform/registry] is an embedded
//     Confluent-API registry;
//   - [github.com/herald-events/herald/platform/sqldb], [github.com/herald-events/herald/platform/outbox]
//     and [github.com/herald-events/herald/platform/inbox] give exactly-once effects on top of an
//     at-least-once bus;
//   - [github.com/herald-events/herald/platform/consumer] turns bus messages into typed events for
//     handlers, with retry and dead-lettering of what cannot be processed, and
//     [github.com/herald-events/herald/platform/dlq] reads and replays dead letters;
//   - [github.com/herald-events/herald/platform/schema/compat] judges schema evolution with the
//     Confluent rules for protobuf;
//   - [github.com/herald-events/herald/platform/observe] holds the metrics and tracing setup,
//     [github.com/herald-events/herald/platform/grpcx] the gRPC server plumbing and
//     [github.com/herald-events/herald/platform/apperr] the errors it maps to status codes;
//   - [github.com/herald-events/herald/platform/devstack] runs the embedded Kafka and registry of
//     herald dev.
//
// A service may import the platform; the platform never imports a service.
package platform
