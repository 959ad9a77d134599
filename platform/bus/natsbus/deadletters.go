package natsbus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-events/herald/platform/bus"
)

// DeadLetters reads dead-letter topics without consuming them: JetStream
// keeps a stream's messages whatever its consumers ack, so listing and
// reading leave them for the next reader (and for a replay).
type DeadLetters struct {
	cn *conn
}

// NewDeadLetters connects a dead-letter reader; it fails when no server
// answers.
func NewDeadLetters(opts ...Option) (*DeadLetters, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.connTimeout)
	defer cancel()
	cn, err := cfg.connect(ctx, "dlq", "")
	if err != nil {
		return nil, err
	}
	return &DeadLetters{cn: cn}, nil
}

// Close closes the connection.
func (d *DeadLetters) Close() error {
	d.cn.close()
	return nil
}

// Topics lists the dead-letter topics (subjects of the server's streams)
// that start with prefix, sorted.
func (d *DeadLetters) Topics(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	streams := d.cn.js.ListStreams(ctx)
	for info := range streams.Info() {
		for _, subj := range info.Config.Subjects {
			if bus.IsDeadLetterTopic(subj) && strings.HasPrefix(subj, prefix) && validTopic(subj) == nil {
				out = append(out, subj)
			}
		}
	}
	if err := streams.Err(); err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	slices.Sort(out)
	return out, nil
}

// Read returns the messages stored for topic, oldest first, up to the
// stream's last message as of the call; each carries its stream sequence
// as Offset. A topic without a stream has none.
func (d *DeadLetters) Read(ctx context.Context, topic string) ([]*bus.Message, error) {
	if err := validTopic(topic); err != nil {
		return nil, err
	}
	name, err := d.cn.js.StreamNameBySubject(ctx, topic)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream of %s: %w", topic, err)
	}
	stream, err := d.cn.js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	last, err := stream.Info(ctx, jetstream.WithSubjectFilter(topic))
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	if last.State.Msgs == 0 {
		return nil, nil
	}
	end := last.State.LastSeq
	// An ordered consumer reads without acks and leaves nothing behind on
	// the server.
	oc, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{topic}, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", topic, err)
	}
	var out []*bus.Message
	for {
		batch, err := oc.Fetch(100, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", topic, err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			m := fromNATS(msg)
			out = append(out, m)
			if uint64(m.Offset) >= end {
				return out, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("read %s: %w", topic, err)
		}
		if n == 0 {
			// Messages up to end were removed meanwhile (age limits): what
			// was read is all there is.
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}
