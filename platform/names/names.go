// Package names is the one place where herald derives the names a service
// has outside its own code: its consumer group, the CloudEvents source of
// what it publishes, the transactional ids of its Kafka clients, the client
// names it shows a broker, and its topics under a namespace. Every name
// follows from three inputs: the namespace (a prefix that lets several
// herald deployments share one cluster), the service's name, and the
// instance id (which process of the service this is).
//
// Dead-letter topic names are the bus's: see bus.DeadLetterTopic.
package names

import "github.com/herald-events/herald/platform/event"

// Service names one service of one process.
type Service struct {
	// Namespace prefixes topics, groups and transactional ids; "" for
	// none. See [event.Namespaced].
	Namespace string
	// Name is the service's name, e.g. "orders".
	Name string
	// Instance tells the processes running the service apart, e.g. the
	// host name. It ends the transactional ids, so that a restarted
	// process takes over (and fences) its predecessor's, while two
	// instances never fence each other.
	Instance string
}

// sourcePrefix starts every herald ce_source.
const sourcePrefix = "herald/"

// Group is the service's consumer group: "herald-<name>", namespaced.
func (s Service) Group() string { return event.Namespaced(s.Namespace, "herald-"+s.Name) }

// Source is the ce_source of the events the service publishes:
// "herald/<name>". It is not namespaced: the topic already is.
func (s Service) Source() string { return sourcePrefix + s.Name }

// Topic is topic in the service's namespace.
func (s Service) Topic(topic string) string { return event.Namespaced(s.Namespace, topic) }

// RelayClient names the outbox relay's client on the bus:
// "herald-<name>-outbox", namespaced.
func (s Service) RelayClient() string {
	return event.Namespaced(s.Namespace, "herald-"+s.Name+"-outbox")
}

// RelayTransactionalID is the Kafka transactional id of the service's
// outbox relay: [Service.RelayClient] followed by "-<instance>". It is
// stable across restarts of one instance: a restarted relay fences its
// predecessor, and the broker aborts what that one left open at once.
func (s Service) RelayTransactionalID() string {
	if s.Instance == "" {
		return s.RelayClient()
	}
	return s.RelayClient() + "-" + s.Instance
}

// ConsumerTransactionPrefix starts the transactional ids of the Kafka
// consumer sessions of a namespace ("herald-consumer-", namespaced); the
// consumer adds the group and a session id (see kafkabus.GroupTransactions).
func ConsumerTransactionPrefix(namespace string) string {
	return event.Namespaced(namespace, "herald-consumer-")
}

// DeadLetterClient names the process's client that publishes dead letters
// outside a consumer transaction.
const DeadLetterClient = "herald-dead-letters"
