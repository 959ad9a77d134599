package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/kafkabus"
	"github.com/herald-events/herald/platform/bus/natsbus"
	"github.com/herald-events/herald/platform/bus/rabbitbus"
	"github.com/herald-events/herald/platform/names"
	"github.com/herald-events/herald/platform/sqldb"
)

// transport is the message bus a process runs on: what the services need
// from it, whatever the broker.
type transport interface {
	// prepare checks that the bus answers and makes the topics exist.
	prepare(ctx context.Context, topics []string) error
	// relayPublisher is the publisher of one service's outbox relay
	// (transactional where the bus has transactions).
	relayPublisher(n names.Service) (bus.Publisher, error)
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

// relayPublisher is transactional, with the id of names.Service.RelayTransactionalID.
func (k *kafkaTransport) relayPublisher(n names.Service) (bus.Publisher, error) {
	return kafkabus.NewPublisher(append(slices.Clip(k.opts), kafkabus.TransactionalID(n.RelayTransactionalID()))...)
}

func (k *kafkaTransport) publisher() (bus.Publisher, error) {
	return kafkabus.NewPublisher(k.opts...)
}

// subscriber consumes in Kafka transactions: offsets and dead letters
// commit together. Each group's transactional id is
// "herald-consumer-<group>-<instance>" (namespaced), stable per instance for
// the same reason as the relay's.
func (k *kafkaTransport) subscriber() (bus.Subscriber, error) {
	opts := append(slices.Clip(k.opts), kafkabus.Metrics(k.p.metrics), kafkabus.ShutdownGrace(k.cfg.ShutdownGrace),
		kafkabus.GroupTransactions(names.ConsumerTransactionPrefix(k.cfg.Namespace)),
		kafkabus.InstanceID(k.cfg.InstanceID))
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

func (n *natsTransport) relayPublisher(s names.Service) (bus.Publisher, error) {
	return natsbus.NewPublisher(append(n.opts, natsbus.ClientName(s.RelayClient()))...)
}

func (n *natsTransport) publisher() (bus.Publisher, error) {
	return natsbus.NewPublisher(append(n.opts, natsbus.ClientName(names.DeadLetterClient))...)
}

func (n *natsTransport) subscriber() (bus.Subscriber, error) {
	return natsbus.NewSubscriber(append(n.opts, natsbus.Metrics(n.p.metrics), natsbus.ShutdownGrace(n.cfg.ShutdownGrace))...)
}

// rabbitTransport runs on RabbitMQ: a topic exchange per domain, a quorum
// queue per consumer group and topic, publisher confirms, no transactions
// (the outbox publishes event by event; the inbox dedupes).
type rabbitTransport struct {
	cfg  *Config
	p    *Process
	opts []rabbitbus.Option
}

func (r *rabbitTransport) String() string { return "rabbitmq " + sqldb.Redact(r.cfg.RabbitMQURL) }

// prepare declares the exchanges and, since RabbitMQ keeps nothing for a
// queue that does not exist yet, the queue of every herald consumer group,
// whichever process runs it: an event published before its consumers first
// start waits in their queues.
func (r *rabbitTransport) prepare(ctx context.Context, topics []string) error {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := rabbitbus.Ping(pctx, r.opts...)
	cancel()
	if err != nil {
		return fmt.Errorf("%s: %w", Setting("rabbitmq-url"), err)
	}
	if err := rabbitbus.EnsureTopologyWith(ctx, topics, r.opts...); err != nil {
		return fmt.Errorf("%s: %w", r, err)
	}
	for group, read := range subscriptions(r.cfg.modules(), r.cfg.Namespace) {
		if err := rabbitbus.EnsureGroup(ctx, group, read, r.opts...); err != nil {
			return fmt.Errorf("%s: queues of %s: %w", r, group, err)
		}
	}
	return nil
}

func (r *rabbitTransport) relayPublisher(s names.Service) (bus.Publisher, error) {
	return rabbitbus.NewPublisher(append(r.opts, rabbitbus.ClientName(s.RelayClient()))...)
}

func (r *rabbitTransport) publisher() (bus.Publisher, error) {
	return rabbitbus.NewPublisher(append(r.opts, rabbitbus.ClientName(names.DeadLetterClient))...)
}

func (r *rabbitTransport) subscriber() (bus.Subscriber, error) {
	return rabbitbus.NewSubscriber(append(r.opts, rabbitbus.Metrics(r.p.metrics), rabbitbus.ShutdownGrace(r.cfg.ShutdownGrace))...)
}
