// Package moduletest runs a module in a test without a broker: a schema
// codec on an embedded registry, a subscriber that hands the test's
// messages to the module's consumer one at a time, a publisher that keeps
// what it is given, and events framed as herald publishes them. Start the
// module with [module.Module.Start] and [Platform], run it with
// [module.Instance.Run] on a [Feed], and [Feed.Deliver] events.
package moduletest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/module"
	"github.com/herald-events/herald/platform/names"
	"github.com/herald-events/herald/platform/observe"
	"github.com/herald-events/herald/platform/registry"
	"github.com/herald-events/herald/platform/schema"
	"github.com/herald-events/herald/platform/sqldb"
)

// Quiet is a logger that writes nothing.
func Quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Codec is a codec on an embedded registry served for the test; it
// registers a schema the first time it encodes a value of it.
func Codec(t testing.TB) *schema.Codec {
	t.Helper()
	reg, err := registry.New(registry.Config{Logger: Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	cl, err := schema.NewClient(srv.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	codec, err := schema.NewCodec(cl, schema.AutoRegister(true))
	if err != nil {
		t.Fatal(err)
	}
	return codec
}

// Platform is what a process would give a module, for a test: codec, a
// SQLite database in the test's directory (every service shares it),
// relay and dead-letter [Recorder]s (the relay's with atomic batches, as
// on Kafka), and a quiet logger. Change fields as the test needs.
func Platform(t testing.TB, codec *schema.Codec) (module.Platform, *Recorder, *Recorder) {
	t.Helper()
	db, err := sqldb.OpenSQLite(filepath.Join(t.TempDir(), "module.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	relay, dead := &Recorder{Atomic: true}, &Recorder{}
	return module.Platform{
		Codec: codec, DeadLetter: dead, Logger: Quiet(),
		DB:    func(string) (*sqldb.DB, error) { return db, nil },
		Relay: func(names.Service) (bus.Publisher, error) { return relay, nil },
	}, relay, dead
}

// Recorder is a publisher that keeps what it is given.
type Recorder struct {
	// Atomic is what Capabilities reports as AtomicBatches.
	Atomic bool

	mu   sync.Mutex
	msgs []*bus.Message
}

// Publish keeps msgs.
func (r *Recorder) Publish(_ context.Context, msgs ...*bus.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msgs...)
	return nil
}

// Capabilities reports AtomicBatches as set.
func (r *Recorder) Capabilities() bus.Capabilities { return bus.Capabilities{AtomicBatches: r.Atomic} }

// Close does nothing.
func (r *Recorder) Close() error { return nil }

// Messages returns what was published so far.
func (r *Recorder) Messages() []*bus.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*bus.Message(nil), r.msgs...)
}

// WaitFor waits up to timeout for at least n messages and returns them.
func (r *Recorder) WaitFor(n int, timeout time.Duration) []*bus.Message {
	deadline := time.Now().Add(timeout)
	for len(r.Messages()) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return r.Messages()
}

// Feed is a bus.Subscriber that hands each delivered message to the
// consumer's handler, with Delivery (if set) as the delivery's publisher,
// as a transactional consumer's.
type Feed struct {
	Delivery bus.Publisher

	in      chan []*bus.Message
	out     chan error
	started chan []string
}

// NewFeed returns a feed; delivery may be nil.
func NewFeed(delivery bus.Publisher) *Feed {
	return &Feed{Delivery: delivery, in: make(chan []*bus.Message), out: make(chan error), started: make(chan []string, 1)}
}

// Run hands messages to h until ctx is done.
func (f *Feed) Run(ctx context.Context, _ string, topics []string, h bus.Handler) error {
	f.started <- topics
	for {
		select {
		case <-ctx.Done():
			return nil
		case poll := <-f.in:
			hctx := ctx
			if f.Delivery != nil {
				hctx = bus.WithDeliveryPublisher(ctx, f.Delivery)
			}
			// The messages of a poll are handled at once, as a
			// subscriber handles the records of different keys.
			errs := make([]error, len(poll))
			var wg sync.WaitGroup
			for i, m := range poll {
				wg.Go(func() { errs[i] = h(hctx, m) })
			}
			wg.Wait()
			f.out <- errors.Join(errs...)
		}
	}
}

// Capabilities reports none.
func (f *Feed) Capabilities() bus.Capabilities { return bus.Capabilities{} }

// Topics waits until the consumer runs and returns the topics it reads.
func (f *Feed) Topics() []string { return <-f.started }

// Deliver hands m to the consumer and fails the test when its handler
// (with the router's middleware: a dead-lettered message is handled)
// returns an error.
func (f *Feed) Deliver(t testing.TB, m *bus.Message) {
	t.Helper()
	f.in <- []*bus.Message{m}
	if err := <-f.out; err != nil {
		t.Fatalf("deliver %s: %v", m, err)
	}
}

// DeliverPoll hands msgs to the consumer all at once, as one poll of
// records with different keys, waits until every one is handled, and
// fails the test when a handler returns an error.
func (f *Feed) DeliverPoll(t testing.TB, msgs ...*bus.Message) {
	t.Helper()
	f.in <- msgs
	if err := <-f.out; err != nil {
		t.Fatalf("deliver a poll of %d: %v", len(msgs), err)
	}
}

// Frame encodes msg on its topic in namespace as herald publishes it,
// with ce_id id, ce_source source and a fixed sampled traceparent
// ([TraceParent]).
func Frame(t testing.TB, codec *schema.Codec, namespace, id, source string, msg proto.Message) *bus.Message {
	t.Helper()
	route, err := event.RouteOf(msg.ProtoReflect().Descriptor())
	if err != nil {
		t.Fatal(err)
	}
	topic := event.Namespaced(namespace, route.Topic)
	value, err := codec.Encode(topic, msg)
	if err != nil {
		t.Fatal(err)
	}
	key := route.Key(msg)
	return &bus.Message{ID: id, Topic: topic, Key: []byte(key), Value: value, Headers: event.Headers(id,
		string(msg.ProtoReflect().Descriptor().FullName()), source, time.Now().UTC().Format(event.TimeLayout), key, TraceParent)}
}

// TraceParent is the traceparent [Frame] sets.
const TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

// FailedEvents reads m's herald_events_failed_total of one class
// (conflict, outage, permanent...), summed over its other labels.
func FailedEvents(t testing.TB, m *observe.Metrics, class string) int {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	n := 0
	for line := range strings.SplitSeq(rec.Body.String(), "\n") {
		if strings.HasPrefix(line, "herald_events_failed_total{") && strings.Contains(line, `class="`+class+`"`) {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			n += int(v)
		}
	}
	return n
}

// Run runs in on a new feed until the test ends, waits until its consumer
// reads, and returns the feed; Run returning an error fails the test.
func Run(t testing.TB, in *module.Instance) *Feed {
	t.Helper()
	f := NewFeed(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, f) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	f.Topics()
	return f
}
