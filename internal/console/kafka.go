package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/herald-events/herald/platform/bus/kafkabus"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/dlq"
)

// span is a range of offsets [From, To) of one partition.
type span struct {
	Partition int32
	From, To  int64
}

// readSpans reads the committed records of the spans of a topic, each
// bounded by the caller, and returns them in partition and offset order.
// It stops when every span is read or, once records have come, when a poll
// brings nothing for quiet (transaction markers take offsets no record
// reaches, so the end of a span is not always seen).
func (c *Console) readSpans(ctx context.Context, topic string, spans []span) ([]*kgo.Record, error) {
	parts := map[int32]kgo.Offset{}
	want := map[int32]int64{}
	for _, s := range spans {
		if s.To > s.From {
			parts[s.Partition] = kgo.NewOffset().At(s.From)
			want[s.Partition] = s.To
		}
	}
	if len(parts) == 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.cfg.Brokers...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(20 * time.Millisecond),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts})}, c.cfg.KafkaOptions...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var out []*kgo.Record
	next := map[int32]int64{}
	done := func() bool {
		for p, end := range want {
			if next[p] < end {
				return false
			}
		}
		return true
	}
	// The first poll connects and says how quickly the broker answers;
	// after it, a poll that brings nothing for twice that long (at least
	// 50 ms, at most 500 ms) ends the read.
	quiet := time.Duration(0)
	for !done() {
		wait := 3 * time.Second
		if quiet > 0 {
			wait = quiet
		}
		t0 := time.Now()
		pctx, cancel := context.WithTimeout(ctx, wait)
		fs := cl.PollFetches(pctx)
		cancel()
		if quiet == 0 {
			quiet = min(max(2*time.Since(t0), 50*time.Millisecond), 500*time.Millisecond)
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", topic, err)
		}
		if ferr := kafkabus.PollErr(fs); ferr != nil {
			return nil, fmt.Errorf("read %s: %w", topic, ferr)
		}
		if fs.NumRecords() == 0 {
			break
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < want[r.Partition] {
				out = append(out, r)
			}
			next[r.Partition] = r.Offset + 1
		})
	}
	slices.SortFunc(out, func(a, b *kgo.Record) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return int(a.Offset - b.Offset)
	})
	return out, nil
}

// offsets are a topic's partitions with their first and last stable
// (read-committed end) and high-water offsets.
type offsets struct {
	Start, Stable, End map[int32]int64
}

func (c *Console) offsetsOf(ctx context.Context, topics ...string) (map[string]offsets, error) {
	starts, err := c.adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("start offsets: %w", err)
	}
	stable, err := c.adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("stable offsets: %w", err)
	}
	ends, err := c.adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("end offsets: %w", err)
	}
	out := map[string]offsets{}
	get := func(t string) offsets {
		o, ok := out[t]
		if !ok {
			o = offsets{Start: map[int32]int64{}, Stable: map[int32]int64{}, End: map[int32]int64{}}
			out[t] = o
		}
		return o
	}
	starts.Each(func(l kadm.ListedOffset) {
		if l.Err == nil {
			get(l.Topic).Start[l.Partition] = l.Offset
		}
	})
	stable.Each(func(l kadm.ListedOffset) {
		if l.Err == nil {
			get(l.Topic).Stable[l.Partition] = l.Offset
		}
	})
	ends.Each(func(l kadm.ListedOffset) {
		if l.Err == nil {
			get(l.Topic).End[l.Partition] = l.Offset
		}
	})
	return out, nil
}

// tail is the span of the last n committed records of a partition.
func (o offsets) tail(p int32, n int) span {
	to := o.Stable[p]
	return span{Partition: p, From: max(o.Start[p], to-int64(n)), To: to}
}

// kv is a header as a page shows it.
type kv struct{ Key, Value string }

// record is one record as a page shows it.
type record struct {
	Topic       string
	Partition   int32
	Offset      int64
	Time        time.Time
	Key         string
	ID, Type    string
	Source      string
	Subject     string
	Traceparent string
	TraceID     string
	Headers     []kv
	JSON        string
	DecodeError string
	// Dead-letter fields, set for a record of a dead-letter topic.
	DeadLetter bool
	Origin     string
	Group      string
	Class      string
	Reason     string
	Attempts   string
	// ReplayedFrom is the dead letter a replayed record came from.
	ReplayedFrom string
	// Timeline fields.
	Step       time.Duration
	HasStep    bool
	ConsumedBy []string
	PendingFor []string
	Ref        string // topic/partition@offset
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// view decodes a record for display: its value through the registry (for a
// dead letter, as its origin topic's), its CloudEvents and dead-letter
// headers.
func (c *Console) view(r *kgo.Record) *record {
	v := &record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Time: r.Timestamp, Key: string(r.Key),
		ID: header(r, bus.HeaderID), Type: header(r, "ce_type"), Source: header(r, "ce_source"),
		Subject: header(r, "ce_subject"), Traceparent: header(r, "traceparent"),
		Ref: r.Topic + "/" + strconv.Itoa(int(r.Partition)) + "@" + strconv.FormatInt(r.Offset, 10)}
	if parts := strings.Split(v.Traceparent, "-"); len(parts) == 4 {
		v.TraceID = parts[1]
	}
	for _, h := range r.Headers {
		v.Headers = append(v.Headers, kv{Key: h.Key, Value: string(h.Value)})
	}
	v.ReplayedFrom = header(r, dlq.HeaderReplayedFrom)
	decodeTopic := r.Topic
	if bus.IsDeadLetterTopic(r.Topic) {
		v.DeadLetter = true
		v.Origin = header(r, consumer.HeaderDLQTopic)
		v.Group = header(r, consumer.HeaderDLQGroup)
		v.Class = header(r, consumer.HeaderDLQClass)
		v.Reason = header(r, consumer.HeaderDLQError)
		v.Attempts = header(r, consumer.HeaderDLQAttempts)
		if v.Origin != "" {
			decodeTopic = v.Origin
		}
	}
	msg, err := c.cfg.Codec.Decode(decodeTopic, r.Value)
	if err != nil {
		v.DecodeError = err.Error()
		return v
	}
	b, err := protojson.Marshal(msg)
	if err != nil {
		v.DecodeError = err.Error()
		return v
	}
	// protojson varies its spacing on purpose; the page shows one layout.
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		v.DecodeError = err.Error()
		return v
	}
	v.JSON = out.String()
	if v.Type == "" {
		v.Type = protoName(msg)
	}
	return v
}

// partitionOf is the partition a key goes to on a topic of n partitions,
// with the partitioner herald's producers use (Kafka's murmur2).
func partitionOf(topic, key string, n int) int32 {
	p := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
	return int32(p.Partition(&kgo.Record{Topic: topic, Key: []byte(key)}, n))
}
