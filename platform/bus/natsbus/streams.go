package natsbus

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-events/herald/platform/bus"
)

// StreamLimits are the settings of the streams [EnsureStreams] creates.
type StreamLimits struct {
	// MaxAge drops messages older than this; 0 keeps them forever.
	MaxAge time.Duration
	// MaxBytes drops the oldest messages beyond this size; -1 for no limit
	// other than the server's max_file_store.
	MaxBytes int64
	// MaxMsgSize rejects larger messages; -1 for the server's max_payload.
	MaxMsgSize int32
	// Duplicates is the window in which a second message with the same
	// Nats-Msg-Id (ce_id) is dropped.
	Duplicates time.Duration
	// Replicas is the number of copies in a cluster; 1 on a single server.
	Replicas int
}

// DefaultStreamLimits: seven days of messages, no size limit beyond the
// server's, a two-minute duplicate window, one replica.
func DefaultStreamLimits() StreamLimits {
	return StreamLimits{MaxAge: 7 * 24 * time.Hour, MaxBytes: -1, MaxMsgSize: -1, Duplicates: 2 * time.Minute, Replicas: 1}
}

// StreamName is the stream [EnsureStreams] creates for topic: the topic with
// every character a stream name may not contain ('.', '*', '>', path
// separators, whitespace and control characters) replaced by '_'.
func StreamName(topic string) string { return sanitize(topic) }

// ConsumerName is the durable consumer name of a group: the group
// sanitized like [StreamName] and, when that changed it, followed by a hash
// of the original, so that "ns1.g" and "ns1_g" stay distinct.
func ConsumerName(group string) string {
	s := sanitize(group)
	if s == group {
		return s
	}
	h := fnv.New32a()
	h.Write([]byte(group))
	return fmt.Sprintf("%s_%08x", s, h.Sum32())
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f || strings.ContainsRune(".*>/\\", r) {
			return '_'
		}
		return r
	}, s)
}

// validTopic reports whether topic is a literal subject: dot-separated
// non-empty tokens without wildcards or whitespace.
func validTopic(topic string) error {
	if topic == "" {
		return errors.New("empty topic")
	}
	for _, tok := range strings.Split(topic, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return fmt.Errorf("topic %q is not a literal NATS subject", topic)
		}
	}
	return nil
}

// withDLQ returns topics plus the ".dlq" topic of each that is not itself
// one, sorted and without duplicates.
func withDLQ(topics []string) []string {
	var all []string
	for _, t := range topics {
		all = append(all, t)
		if !bus.IsDeadLetterTopic(t) {
			all = append(all, bus.DeadLetterTopic(t))
		}
	}
	slices.Sort(all)
	return slices.Compact(all)
}

// EnsureStreams makes every topic, and the ".dlq" topic of each, stored in a
// stream with [DefaultStreamLimits]. See [EnsureStreamsWithLimits].
func EnsureStreams(ctx context.Context, js jetstream.JetStream, topics ...string) error {
	return EnsureStreamsWithLimits(ctx, js, DefaultStreamLimits(), topics...)
}

// EnsureStreamsWithLimits makes every topic, and the ".dlq" topic of each
// (topics that end in ".dlq" get none), stored in a stream. A topic some
// stream already stores is left alone, whatever that stream's layout or
// limits; otherwise the stream [StreamName] is created with file storage,
// limits retention (messages stay for every group until the limits drop
// them), discard-old and the given limits. It fails when a stream of that
// name exists for other subjects (two topics that differ only in characters
// that [StreamName] replaces).
func EnsureStreamsWithLimits(ctx context.Context, js jetstream.JetStream, l StreamLimits, topics ...string) error {
	for _, t := range withDLQ(topics) {
		if err := validTopic(t); err != nil {
			return fmt.Errorf("ensure stream: %w", err)
		}
		name, err := js.StreamNameBySubject(ctx, t)
		if err == nil {
			continue
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("look up stream for %s: %w", t, err)
		}
		name = StreamName(t)
		cfg := jetstream.StreamConfig{
			Name:        name,
			Description: "herald topic " + t,
			Subjects:    []string{t},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			Storage:     jetstream.FileStorage,
			MaxAge:      l.MaxAge,
			MaxBytes:    l.MaxBytes,
			MaxMsgs:     -1,
			MaxMsgSize:  l.MaxMsgSize,
			Duplicates:  l.Duplicates,
			Replicas:    max(1, l.Replicas),
		}
		_, err = js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Created concurrently with other settings, or a collision.
			s, serr := js.Stream(ctx, name)
			if serr != nil {
				return fmt.Errorf("create stream %s for %s: %w (and: %w)", name, t, err, serr)
			}
			if subj := s.CachedInfo().Config.Subjects; !slices.Contains(subj, t) {
				return fmt.Errorf("create stream %s for %s: a stream of that name exists for subjects %v; rename one of the topics", name, t, subj)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("create stream %s for %s: %w", name, t, err)
		}
	}
	return nil
}

// EnsureTopics is [EnsureStreamsWithLimits] over a connection of its own
// made from opts, with the limits of [Streams]: the counterpart of
// kafkabus.EnsureTopics.
func EnsureTopics(ctx context.Context, topics []string, opts ...Option) error {
	cfg, err := newConfig(opts)
	if err != nil {
		return err
	}
	cn, err := cfg.connect(ctx, "admin", "streams")
	if err != nil {
		return err
	}
	defer cn.nc.Close()
	if err := EnsureStreamsWithLimits(ctx, cn.js, cfg.limits, topics...); err != nil {
		return fmt.Errorf("nats %s: %w", cfg.redactedURLs(), err)
	}
	return nil
}
