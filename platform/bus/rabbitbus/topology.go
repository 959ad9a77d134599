package rabbitbus

import (
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/herald-events/herald/platform/bus"
)

// moveBatch is how many unrouted messages are moved per round trip.
const moveBatch = 256

// topology declares exchanges and queues on one channel, which is in
// confirm mode so that moving unrouted messages is safe. It remembers what
// it declared, for the life of its connection.
type topology struct {
	ch        *amqp.Channel
	cfg       *config
	exchanges map[string]bool
	topics    map[string]bool
}

func newTopology(conn *amqp.Connection, cfg *config) (*topology, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("rabbitmq: confirm mode: %w", err)
	}
	return &topology{ch: ch, cfg: cfg, exchanges: map[string]bool{}, topics: map[string]bool{}}, nil
}

func (t *topology) close() { _ = t.ch.Close() }

// ensureExchange declares a topic's exchange and its alternate exchange.
func (t *topology) ensureExchange(ex string) error {
	if t.exchanges[ex] {
		return nil
	}
	ae := unroutedExchange(ex)
	if err := t.ch.ExchangeDeclare(ae, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", ae, err)
	}
	if err := t.ch.ExchangeDeclare(ex, amqp.ExchangeTopic, true, false, false, false,
		amqp.Table{"alternate-exchange": ae}); err != nil {
		return fmt.Errorf("declare exchange %s: %w%s", ex, err, hint(err))
	}
	t.exchanges[ex] = true
	return nil
}

// ensureTopic declares what a topic and its dead-letter topic need before
// anything is published to them: the exchange and the unrouted queue.
func (t *topology) ensureTopic(topic string) error {
	if t.topics[topic] {
		return nil
	}
	if err := checkTopic(topic); err != nil {
		return err
	}
	all := []string{topic}
	if !bus.IsDeadLetterTopic(topic) {
		all = append(all, bus.DeadLetterTopic(topic))
	}
	for _, tp := range all {
		if t.topics[tp] {
			continue
		}
		ex := ExchangeName(tp)
		if err := t.ensureExchange(ex); err != nil {
			return err
		}
		q := UnroutedQueueName(tp)
		if _, err := t.ch.QueueDeclare(q, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeClassic}); err != nil {
			return fmt.Errorf("declare queue %s: %w%s", q, err, hint(err))
		}
		if err := t.ch.QueueBind(q, tp, unroutedExchange(ex), false, nil); err != nil {
			return fmt.Errorf("bind queue %s to %s: %w", q, unroutedExchange(ex), err)
		}
		t.topics[tp] = true
	}
	return nil
}

// queueArgs are the arguments of a group's queue for topic.
func (c *config) queueArgs(topic string) amqp.Table {
	args := amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum, amqp.SingleActiveConsumerArg: true}
	if !bus.IsDeadLetterTopic(topic) {
		// Dead letters of a dead-letter queue would only come back to it.
		args["x-dead-letter-exchange"] = ExchangeName(topic)
		args["x-dead-letter-routing-key"] = bus.DeadLetterTopic(topic)
		if c.limit > 0 {
			args["x-delivery-limit"] = int64(c.limit)
		}
	}
	return args
}

// ensureQueue declares the group's queue for topic, hands it the messages
// waiting in the topic's unrouted queue, and binds it.
func (t *topology) ensureQueue(group, topic string) (amqp.Queue, error) {
	if group == "" {
		return amqp.Queue{}, errors.New("empty consumer group")
	}
	if err := t.ensureTopic(topic); err != nil {
		return amqp.Queue{}, err
	}
	name := QueueName(group, topic)
	if len(name) > 255 {
		return amqp.Queue{}, fmt.Errorf("queue name %q: longer than 255 bytes", name)
	}
	q, err := t.ch.QueueDeclare(name, true, false, false, false, t.cfg.queueArgs(topic))
	if err != nil {
		return q, fmt.Errorf("declare queue %s: %w%s", name, err, hint(err))
	}
	// Move before binding, so that the early messages come first; then
	// once more for those published while binding.
	moved, err := t.moveUnrouted(topic, name)
	if err != nil {
		return q, err
	}
	if err := t.ch.QueueBind(name, topic, ExchangeName(topic), false, nil); err != nil {
		return q, fmt.Errorf("bind queue %s to %s: %w", name, ExchangeName(topic), err)
	}
	more, err := t.moveUnrouted(topic, name)
	if err != nil {
		return q, err
	}
	if n := moved + more; n > 0 {
		t.cfg.logger.Info("moved messages published before any group subscribed", "topic", topic, "queue", name, "messages", n)
		q.Messages += n
	}
	return q, nil
}

// moveUnrouted moves the messages of topic's unrouted queue to queue,
// preserving their order; each batch is acked only once the broker
// confirmed its copies.
func (t *topology) moveUnrouted(topic, queue string) (int, error) {
	src := UnroutedQueueName(topic)
	moved := 0
	for {
		var batch []amqp.Delivery
		for len(batch) < moveBatch {
			d, ok, err := t.ch.Get(src, false)
			if err != nil {
				return moved, fmt.Errorf("get from %s: %w", src, err)
			}
			if !ok {
				break
			}
			batch = append(batch, d)
		}
		if len(batch) == 0 {
			return moved, nil
		}
		confirms := make([]*amqp.DeferredConfirmation, 0, len(batch))
		for _, d := range batch {
			dc, err := t.ch.PublishWithDeferredConfirm("", queue, false, false, republish(d))
			if err != nil {
				return moved, fmt.Errorf("move %s to %s: %w", src, queue, err)
			}
			confirms = append(confirms, dc)
		}
		for _, dc := range confirms {
			if !dc.Wait() {
				return moved, fmt.Errorf("move %s to %s: the broker did not confirm a copy", src, queue)
			}
		}
		if err := t.ch.Ack(batch[len(batch)-1].DeliveryTag, true); err != nil {
			return moved, fmt.Errorf("move %s to %s: ack: %w", src, queue, err)
		}
		moved += len(batch)
	}
}

// republish copies a delivery into a publishing.
func republish(d amqp.Delivery) amqp.Publishing {
	return amqp.Publishing{
		Headers: d.Headers, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding,
		DeliveryMode: amqp.Persistent, Priority: d.Priority, CorrelationId: d.CorrelationId,
		ReplyTo: d.ReplyTo, Expiration: d.Expiration, MessageId: d.MessageId, Timestamp: d.Timestamp,
		Type: d.Type, UserId: d.UserId, AppId: d.AppId, Body: d.Body,
	}
}

// hint explains a declaration refused because it differs from what exists.
func hint(err error) string {
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed {
		return " (it exists with other arguments: delete it, or keep the options it was declared with)"
	}
	return ""
}
