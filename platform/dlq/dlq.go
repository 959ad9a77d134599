// Package dlq reads, summarises and replays dead-letter topics: the
// `<topic>.dlq` topics where the consumer router puts messages it could not
// handle, with headers naming their origin and the reason.
//
// [Replay] republishes messages to the topic they came from with their
// original key, value and CloudEvents headers (so the same ce_id), minus the
// dead-letter headers. Consumers deduplicate by ce_id in their inbox, so a
// message replayed twice, or replayed after all, has one effect. A record
// that came without CloudEvents headers is replayed with the id the
// consumer derived from its original position (consumer.DerivedID) as its
// ce_id, for the same reason.
package dlq

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-events/herald/platform/bus/kafkabus"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
)

// HeaderReplayedFrom is added to replayed messages: "<dlq topic>/<partition>@<offset>".
const HeaderReplayedFrom = "herald_replayed_from"

func header(m *bus.Message, key string) string {
	v, _ := m.Header(key)
	return v
}

// Source is where a bus keeps its dead letters: its dead-letter topics, and
// their messages read without consuming them. [Kafka] reads Kafka; natsbus
// and rabbitbus have their own (natsbus.DeadLetters, rabbitbus.DeadLetters).
// Replays go through the bus's [bus.Publisher].
type Source interface {
	// Topics lists the dead-letter topics whose names start with prefix.
	Topics(ctx context.Context, prefix string) ([]string, error)
	// Read returns a dead-letter topic's messages, oldest first, and
	// leaves them there.
	Read(ctx context.Context, topic string) ([]*bus.Message, error)
}

// Kafka is the [Source] of a Kafka cluster: [Topics] and [Read] with its
// seed brokers and client options.
type Kafka struct {
	Seeds []string
	Opts  []kgo.Opt
}

// Topics lists the cluster's dead-letter topics starting with prefix.
func (k Kafka) Topics(ctx context.Context, prefix string) ([]string, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(k.Seeds...)}, k.Opts...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	return Topics(ctx, cl, prefix)
}

// Read returns a topic's committed messages (see [Read]).
func (k Kafka) Read(ctx context.Context, topic string) ([]*bus.Message, error) {
	return Read(ctx, k.Seeds, k.Opts, topic)
}

// Topics lists the dead-letter topics of the cluster whose names start with
// prefix (a namespace followed by a dot, or "").
func Topics(ctx context.Context, cl *kgo.Client, prefix string) ([]string, error) {
	td, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	var out []string
	for _, t := range td.Sorted() {
		if bus.IsDeadLetterTopic(t.Topic) && strings.HasPrefix(t.Topic, prefix) {
			out = append(out, t.Topic)
		}
	}
	return out, nil
}

// Read returns every committed message of a topic, from the start to its
// end as of the call, in partition and offset order. Dead letters written in
// an aborted transaction are skipped.
func Read(ctx context.Context, seeds []string, extra []kgo.Opt, topic string) ([]*bus.Message, error) {
	admin, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, extra...)...)
	if err != nil {
		return nil, err
	}
	// The last stable offsets: the end as a read-committed reader sees it.
	ends, err := kadm.NewClient(admin).ListCommittedOffsets(ctx, topic)
	admin.Close()
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	want := map[int32]int64{}
	parts := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
			parts[o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	if len(want) == 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts})}, extra...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	byPart := map[int32][]*bus.Message{}
	next := map[int32]int64{}
	for polls := 0; !reached(next, want); polls++ {
		// Transaction markers (and aborted records) take offsets no record
		// reaches; a quiet poll after the first means the end.
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", topic, err)
		}
		if ferr := kafkabus.PollErr(fs); ferr != nil {
			return nil, fmt.Errorf("read %s: %w", topic, ferr)
		}
		if fs.NumRecords() == 0 && polls > 0 {
			break
		}
		fs.EachRecord(func(r *kgo.Record) {
			byPart[r.Partition] = append(byPart[r.Partition], message(r))
			next[r.Partition] = r.Offset + 1
		})
	}
	var out []*bus.Message
	for p := int32(0); len(out) < count(byPart); p++ {
		out = append(out, byPart[p]...)
	}
	return out, nil
}

func reached(next, want map[int32]int64) bool {
	for p, end := range want {
		if next[p] < end {
			return false
		}
	}
	return true
}

func count(m map[int32][]*bus.Message) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
}

// Message is a record of a dead-letter topic as [Replay] takes it, for a
// reader that chose its own records (the console reads bounded windows).
func Message(r *kgo.Record) *bus.Message { return message(r) }

func message(r *kgo.Record) *bus.Message {
	m := &bus.Message{Topic: r.Topic, Key: r.Key, Value: r.Value, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp}
	for _, h := range r.Headers {
		m.Headers = append(m.Headers, bus.Header{Key: h.Key, Value: h.Value})
	}
	m.ID, _ = m.Header(bus.HeaderID)
	return m
}

// Filter selects dead letters; empty fields match everything.
type Filter struct {
	// ID matches the message's id, its ce_id ([bus.Message.MessageID]).
	ID string
	// Class matches the error class (permanent, retries_exhausted, contract,
	// routing).
	Class string
}

// Match reports whether m passes the filter.
func (f Filter) Match(m *bus.Message) bool {
	if f.ID != "" {
		if m.MessageID() != f.ID {
			return false
		}
	}
	if f.Class != "" {
		if c, _ := m.Header(consumer.HeaderDLQClass); c != f.Class {
			return false
		}
	}
	return true
}

// Summary describes one dead-letter topic.
type Summary struct {
	Topic string
	Count int
	// Newest are up to three of the newest reasons, newest first, as
	// "class: error".
	Newest []string
}

// Summarize counts the messages and collects the newest reasons.
func Summarize(topic string, msgs []*bus.Message) Summary {
	s := Summary{Topic: topic, Count: len(msgs)}
	sorted := append([]*bus.Message(nil), msgs...)
	// Newest first by broker timestamp.
	for i := 1; i < len(sorted); i++ {
		for j := i; j > 0 && sorted[j].Timestamp.After(sorted[j-1].Timestamp); j-- {
			sorted[j], sorted[j-1] = sorted[j-1], sorted[j]
		}
	}
	for _, m := range sorted[:min(3, len(sorted))] {
		class, _ := m.Header(consumer.HeaderDLQClass)
		reason, _ := m.Header(consumer.HeaderDLQError)
		if len(reason) > 200 {
			reason = reason[:200] + "…"
		}
		s.Newest = append(s.Newest, class+": "+reason)
	}
	return s
}

// Replay republishes the messages that pass filter to the topic each came
// from, one at a time, and returns how many it sent.
func Replay(ctx context.Context, pub bus.Publisher, msgs []*bus.Message, filter Filter) (int, error) {
	n := 0
	for _, m := range msgs {
		if !filter.Match(m) {
			continue
		}
		origin, _ := m.Header(consumer.HeaderDLQTopic)
		if origin == "" {
			return n, fmt.Errorf("dead letter %s has no %s header", m, consumer.HeaderDLQTopic)
		}
		id := m.MessageID()
		if id == "" {
			// A record from a producer without CloudEvents headers: the
			// consumer knew it by its position (consumer.DerivedID). The
			// replay carries that id as its ce_id, so it stays the same
			// event however often it is replayed.
			part, perr := strconv.ParseInt(header(m, consumer.HeaderDLQPartition), 10, 32)
			off, oerr := strconv.ParseInt(header(m, consumer.HeaderDLQOffset), 10, 64)
			if perr != nil || oerr != nil {
				return n, fmt.Errorf("dead letter %s has no id and no origin position", m)
			}
			id = consumer.DerivedID(origin, int32(part), off)
		}
		out := &bus.Message{Topic: origin, Key: m.Key, Value: m.Value, ID: id}
		for _, h := range m.Headers {
			if !strings.HasPrefix(h.Key, "herald_dlq_") && h.Key != HeaderReplayedFrom {
				out.Headers = append(out.Headers, h)
			}
		}
		out.SetHeader(HeaderReplayedFrom, m.String())
		if err := pub.Publish(ctx, out); err != nil {
			return n, fmt.Errorf("replay %s to %s: %w", m, origin, err)
		}
		n++
	}
	return n, nil
}
