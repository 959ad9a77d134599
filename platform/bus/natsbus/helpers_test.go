package natsbus_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/natsbus"
	"github.com/herald-events/herald/platform/event"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serverURL returns the JetStream server of scripts/infra/nats.sh or skips.
func serverURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("HERALD_NATS_URL")
	if u == "" {
		t.Skip("HERALD_NATS_URL not set: start a server with `eval \"$(scripts/infra/nats.sh start)\"` to run the NATS tests")
	}
	return u
}

// js connects a plain JetStream client for test setup and inspection.
func js(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(serverURL(t))
	if err != nil {
		t.Fatalf("connect %s: %v", serverURL(t), err)
	}
	t.Cleanup(nc.Close)
	j, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// namespace is a fresh subject prefix, so that runs never share streams.
func namespace(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, t.Name())
	return fmt.Sprintf("t%x-%s", b, name)
}

// topics makes streams for fresh topics named after the test and deletes
// them (and their .dlq streams) at the end.
func topics(t testing.TB, names ...string) []string {
	t.Helper()
	j := js(t)
	ns := namespace(t)
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = ns + "." + n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := natsbus.EnsureStreams(ctx, j, out...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, tp := range out {
			for _, s := range []string{natsbus.StreamName(tp), natsbus.StreamName(tp + ".dlq")} {
				_ = j.DeleteStream(ctx, s)
			}
		}
	})
	return out
}

func publisher(t testing.TB, opts ...natsbus.Option) *natsbus.Publisher {
	t.Helper()
	p, err := natsbus.NewPublisher(append([]natsbus.Option{natsbus.URL(serverURL(t)), natsbus.Logger(quiet())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func subscriber(t testing.TB, opts ...natsbus.Option) *natsbus.Subscriber {
	t.Helper()
	s, err := natsbus.NewSubscriber(append([]natsbus.Option{natsbus.URL(serverURL(t)), natsbus.Logger(quiet()),
		natsbus.FetchWait(200 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fill publishes n messages per key for the given keys, interleaved, each
// with a ce_id; values count per key from 0.
func fill(t testing.TB, topic string, keys, n int) {
	t.Helper()
	p := publisher(t)
	var msgs []*bus.Message
	for i := range n {
		for k := range keys {
			m := &bus.Message{Topic: topic, Key: fmt.Appendf(nil, "k%d", k), Value: fmt.Appendf(nil, "%d", i)}
			m.SetHeader(event.HeaderID, fmt.Sprintf("%s/k%d/%d", topic, k, i))
			msgs = append(msgs, m)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

// run starts sub.Run in the background.
func run(ctx context.Context, sub *natsbus.Subscriber, group string, topics []string, h bus.Handler) chan error {
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx, group, topics, h) }()
	return done
}

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

func ioCopy(dst io.Writer, src io.Reader) (int64, error) { return io.Copy(dst, src) }
