package rabbitbus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/herald-events/herald/platform/bus"
)

// DeadLetters reads the dead letters waiting in RabbitMQ without consuming
// them. Dead letters that no consumer group reads wait in their topic's
// unrouted queue ("<topic>.dlq.unrouted", see the package documentation);
// a reader gets them without acking, and closing its channel puts them
// back, in their order. AMQP cannot list queues, so the reader looks for
// the dead-letter topics of the topics it is given.
type DeadLetters struct {
	conn   *amqp.Connection
	topics []string
}

// NewDeadLetters connects a dead-letter reader for the dead-letter topics
// of topics (a topic that is itself a dead-letter topic stands for
// itself).
func NewDeadLetters(ctx context.Context, topics []string, opts ...Option) (*DeadLetters, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	conn, err := cfg.dial(ctx, "dlq", "")
	if err != nil {
		return nil, err
	}
	return &DeadLetters{conn: conn, topics: slices.Clone(topics)}, nil
}

// Close closes the connection.
func (d *DeadLetters) Close() error { return d.conn.Close() }

// Topics lists the dead-letter topics starting with prefix whose unrouted
// queue exists, sorted.
func (d *DeadLetters) Topics(ctx context.Context, prefix string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, t := range d.topics {
		dlq := t
		if !bus.IsDeadLetterTopic(t) {
			dlq = bus.DeadLetterTopic(t)
		}
		if seen[dlq] || !strings.HasPrefix(dlq, prefix) {
			continue
		}
		seen[dlq] = true
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		_, found, err := d.inspect(dlq)
		if err != nil {
			return nil, err
		}
		if found {
			out = append(out, dlq)
		}
	}
	slices.Sort(out)
	return out, nil
}

// inspect reports the message count of topic's unrouted queue and whether
// it exists. A passive declare of a missing queue closes its channel, so
// each check has a channel of its own.
func (d *DeadLetters) inspect(topic string) (int, bool, error) {
	ch, err := d.conn.Channel()
	if err != nil {
		return 0, false, fmt.Errorf("rabbitmq: open channel: %w", err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(UnroutedQueueName(topic), true, false, false, false, nil)
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) && amqpErr.Code == amqp.NotFound {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("inspect queue %s: %w", UnroutedQueueName(topic), err)
	}
	return q.Messages, true, nil
}

// Read returns the dead letters waiting for topic, oldest first, and
// leaves them in their queue. Each carries its position in the queue as
// Offset.
func (d *DeadLetters) Read(ctx context.Context, topic string) ([]*bus.Message, error) {
	if err := checkTopic(topic); err != nil {
		return nil, err
	}
	n, found, err := d.inspect(topic)
	if err != nil || !found || n == 0 {
		return nil, err
	}
	ch, err := d.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: open channel: %w", err)
	}
	// Closing the channel returns every message got without an ack.
	defer ch.Close()
	queue := UnroutedQueueName(topic)
	var out []*bus.Message
	for i := range n {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		dv, ok, err := ch.Get(queue, false)
		if err != nil {
			return nil, fmt.Errorf("get from %s: %w", queue, err)
		}
		if !ok {
			break
		}
		m := fromDelivery(topic, &dv)
		m.Offset = int64(i)
		out = append(out, m)
	}
	return out, nil
}
