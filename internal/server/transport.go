package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/kafkabus"
	"github.com/herald-events/herald/platform/bus/natsbus"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/sqldb"
)

// transport is the message bus a process runs on: what the services need
// from it, whatever the broker.
type transport interface {
	// prepare checks that the bus answers and makes the topics exist.
	prepare(ctx context.Context, topics []string) error
	// relayPublisher is the publisher of one service's outbox relay
	// (transactional where the bus has transactions).
	relayPublisher(service string) (bus.Publisher, error)
	// publisher is a plain publisher (dead letters outside a delivery).
	publisher() (bus.Publisher, error)
	// subscriber consumes for every service of the process.
	subscriber() (bus.Subscriber, error)
	// String names the bus and its address for logs and errors.
	String() string
}

// kafkaTransport runs on Apache Kafka (or the embedded kfake).
type kafkaTransport struct {
	cfg     *Config
	p       *Process
	brokers []string
	opts    []kafkabus.Option
}

func (k *kafkaTransport) String() string { return "kafka " + strings.Join(k.brokers, ",") }

func (k *kafkaTransport) prepare(ctx context.Context, topics []string) error {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := kafkabus.Ping(pctx, k.opts...)
	cancel()
	if err != nil {
		return err
	}
	if err := kafkabus.EnsureTopics(ctx, k.cfg.Partitions, k.cfg.ReplicationFactor, topics, k.opts...); err != nil {
		return fmt.Errorf("%s: %w", k, err)
	}
	return nil
}

func (k *kafkaTransport) relayPublisher(service string) (bus.Publisher, error) {
	txnID := event.Namespaced(k.cfg.Namespace, "herald-"+service+"-outbox")
	return kafkabus.NewPublisher(append(k.opts, kafkabus.TransactionalID(txnID))...)
}

func (k *kafkaTransport) publisher() (bus.Publisher, error) {
	return kafkabus.NewPublisher(k.opts...)
}

// subscriber consumes in Kafka transactions: offsets and dead letters
// commit together.
func (k *kafkaTransport) subscriber() (bus.Subscriber, error) {
	opts := append(k.opts, kafkabus.Metrics(k.p.metrics), kafkabus.ShutdownGrace(k.cfg.ShutdownGrace),
		kafkabus.GroupTransactions(event.Namespaced(k.cfg.Namespace, "herald-consumer-")))
	if k.cfg.InstanceID != "" {
		opts = append(opts, kafkabus.InstanceID(k.cfg.InstanceID))
	}
	return kafkabus.NewSubscriber(opts...)
}

// natsTransport runs on NATS JetStream: one stream per topic, no
// transactions (the outbox publishes event by event; the inbox dedupes).
type natsTransport struct {
	cfg  *Config
	p    *Process
	opts []natsbus.Option
}

func (n *natsTransport) String() string { return "nats " + sqldb.Redact(n.cfg.NATSURL) }

func (n *natsTransport) prepare(ctx context.Context, topics []string) error {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := natsbus.Ping(pctx, n.opts...)
	cancel()
	if err != nil {
		return fmt.Errorf("%s: %w", Setting("nats-url"), err)
	}
	if err := natsbus.EnsureTopics(ctx, topics, n.opts...); err != nil {
		return fmt.Errorf("%s: %w", n, err)
	}
	return nil
}

func (n *natsTransport) relayPublisher(service string) (bus.Publisher, error) {
	return natsbus.NewPublisher(append(n.opts, natsbus.ClientName(event.Namespaced(n.cfg.Namespace, "herald-"+service+"-outbox")))...)
}

func (n *natsTransport) publisher() (bus.Publisher, error) {
	return natsbus.NewPublisher(append(n.opts, natsbus.ClientName("herald-dead-letters"))...)
}

func (n *natsTransport) subscriber() (bus.Subscriber, error) {
	return natsbus.NewSubscriber(append(n.opts, natsbus.Metrics(n.p.metrics), natsbus.ShutdownGrace(n.cfg.ShutdownGrace))...)
}
