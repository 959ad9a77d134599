// Package platform is the root of herald's shop-agnostic event platform.
//
// Its sub-packages know no business domain:
//   - [github.com/herald-events/herald/platform/event] reads the routing options on event messages and
//     names the CloudEvents headers every record carries;
//   - [github.com/herald-events/herald/platform/bus] is the publish/subscribe interface, with
//     [github.com/herald-events/herald/platform/bus/kafkabus] as its Kafka implementation;
//   - [github.com/herald-events/herald/platform/schema] frames values in the Confluent wire format
//     through a schema registry, and [github.com/herald-events/herald/platform/registry] is an embedded
//     Confluent-API registry;
//   - [github.com/herald-events/herald/platform/sqldb], [github.com/herald-events/herald/platform/outbox]
//     and [github.com/herald-events/herald/platform/inbox] give exactly-once effects on top of an
//     at-least-once bus;
//   - [github.com/herald-events/herald/platform/consumer] turns bus messages into typed events for
//     handlers, with dead-lettering of what cannot be processed.
//
// A service may import the platform; the platform never imports a service.
package platform
