package kafkabus_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/kafkabus"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// cluster starts kfake with one single-partition topic filled with n
// records per key for the given keys, interleaved.
func cluster(t *testing.T, topic string, keys, n int) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := range n {
		for k := range keys {
			recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", k), Value: fmt.Appendf(nil, "%d", i)})
		}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return c.ListenAddrs()
}

// TestKeysInOrderAndConcurrent: messages of one key arrive in order, and
// different keys are handled at the same time, at most KeyConcurrency.
func TestKeysInOrderAndConcurrent(t *testing.T) {
	seeds := cluster(t, "t", 8, 25)
	sub, err := kafkabus.NewSubscriber(kafkabus.Seeds(seeds...), kafkabus.Logger(quiet()), kafkabus.KeyConcurrency(4))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		last     = map[string]int{}
		inflight atomic.Int32
		peak     atomic.Int32
		total    atomic.Int32
		bad      []string
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sub.Run(ctx, "g", []string{"t"}, func(_ context.Context, m *bus.Message) error {
			n := inflight.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(2 * time.Millisecond)
			var v int
			fmt.Sscanf(string(m.Value), "%d", &v)
			mu.Lock()
			if prev, ok := last[string(m.Key)]; ok && v != prev+1 {
				bad = append(bad, fmt.Sprintf("%s: %d after %d", m.Key, v, prev))
			}
			last[string(m.Key)] = v
			mu.Unlock()
			inflight.Add(-1)
			total.Add(1)
			return nil
		})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for total.Load() < 200 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if total.Load() != 200 {
		t.Fatalf("handled %d of 200", total.Load())
	}
	if len(bad) > 0 {
		t.Fatalf("out of order within a key: %v", bad)
	}
	if p := peak.Load(); p < 2 || p > 4 {
		t.Fatalf("peak concurrency %d, want between 2 and the bound 4", p)
	}
}

// TestShutdownMidBatchLosesAndRepeatsNothing cancels a subscriber while it
// is in the middle of a poll; a second subscriber of the group picks up
// the rest. Every message is handled exactly once.
func TestShutdownMidBatchLosesAndRepeatsNothing(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts []kafkabus.Option
	}{{"offset commits", nil}, {"group transactions", []kafkabus.Option{kafkabus.GroupTransactions("shutdown-test")}}} {
		t.Run(mode.name, func(t *testing.T) { testShutdown(t, mode.opts) })
	}
}

func testShutdown(t *testing.T, modeOpts []kafkabus.Option) {
	seeds := cluster(t, "t", 5, 60)
	var (
		mu    sync.Mutex
		count = map[string]int{}
	)
	handler := func(started chan<- struct{}) bus.Handler {
		var once sync.Once
		return func(_ context.Context, m *bus.Message) error {
			once.Do(func() { close(started) })
			time.Sleep(time.Millisecond)
			mu.Lock()
			count[fmt.Sprintf("%s/%d", m.Key, m.Offset)]++
			mu.Unlock()
			return nil
		}
	}
	run := func(ctx context.Context, h bus.Handler) chan error {
		sub, err := kafkabus.NewSubscriber(append([]kafkabus.Option{kafkabus.Seeds(seeds...), kafkabus.Logger(quiet()),
			kafkabus.MaxPollRecords(100), kafkabus.ShutdownGrace(10 * time.Second)}, modeOpts...)...)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- sub.Run(ctx, "g", []string{"t"}, h) }()
		return done
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	started := make(chan struct{})
	done1 := run(ctx1, handler(started))
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("first subscriber handled nothing")
	}
	cancel1() // mid-poll: the subscriber must finish and commit what it holds
	if err := <-done1; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	first := len(count)
	mu.Unlock()
	if first == 0 || first >= 300 {
		t.Fatalf("first subscriber handled %d of 300; the test needs a shutdown mid-stream", first)
	}

	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := run(ctx2, handler(make(chan struct{})))
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(count)
		mu.Unlock()
		if n >= 300 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // let any duplicate show up
	cancel2()
	<-done2
	mu.Lock()
	defer mu.Unlock()
	if len(count) != 300 {
		t.Fatalf("handled %d distinct messages, want 300", len(count))
	}
	for k, n := range count {
		if n != 1 {
			t.Fatalf("message %s handled %d times", k, n)
		}
	}
}

// TestFailingMessageIsRedelivered: a handler error holds the message (and
// its key) back and delivers it again until it succeeds.
func TestFailingMessageIsRedelivered(t *testing.T) {
	seeds := cluster(t, "t", 1, 3)
	sub, err := kafkabus.NewSubscriber(kafkabus.Seeds(seeds...), kafkabus.Logger(quiet()),
		kafkabus.RetryBackoff(time.Millisecond, 5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		attempts = map[string]int{}
		seen     []string
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- sub.Run(ctx, "g", []string{"t"}, func(_ context.Context, m *bus.Message) error {
			mu.Lock()
			defer mu.Unlock()
			attempts[string(m.Value)]++
			if string(m.Value) == "1" && attempts["1"] < 3 {
				return fmt.Errorf("transient")
			}
			seen = append(seen, string(m.Value))
			return nil
		})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == 3 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(seen) != "[0 1 2]" || attempts["1"] != 3 {
		t.Fatalf("handled %v with %d attempts of message 1; want [0 1 2] and 3", seen, attempts["1"])
	}
}

// TestDeadLetterCommitsWithTheOffsets: with group transactions, what a
// handler publishes through the delivery publisher (a dead letter) becomes
// visible only if the poll's offsets commit. An aborted poll leaves no dead
// letter behind; the redelivery writes it once.
func TestDeadLetterCommitsWithTheOffsets(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t", "t.dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seeds := c.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(),
		&kgo.Record{Topic: "t", Key: []byte("a"), Value: []byte("poison")},
		&kgo.Record{Topic: "t", Key: []byte("b"), Value: []byte("slow")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var slow atomic.Bool
	slow.Store(true)
	handler := func(ctx context.Context, m *bus.Message) error {
		if string(m.Value) == "poison" {
			pub, ok := bus.DeliveryPublisher(ctx)
			if !ok {
				return fmt.Errorf("no delivery publisher in a transactional subscriber")
			}
			return pub.Publish(ctx, &bus.Message{Topic: "t.dlq", Key: m.Key, Value: m.Value})
		}
		if slow.Load() {
			<-ctx.Done() // never finishes within the (zero) grace
			return ctx.Err()
		}
		return nil
	}
	run := func(grace time.Duration) (context.CancelFunc, chan error) {
		sub, err := kafkabus.NewSubscriber(kafkabus.Seeds(seeds...), kafkabus.Logger(quiet()),
			kafkabus.GroupTransactions("dlq-test"), kafkabus.ShutdownGrace(grace))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sub.Run(ctx, "g", []string{"t"}, handler) }()
		return cancel, done
	}
	readDLQ := func() int {
		rc, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics("t.dlq"),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n := 0
		for ctx.Err() == nil {
			n += rc.PollFetches(ctx).NumRecords()
		}
		return n
	}

	cancel, done := run(0)
	time.Sleep(time.Second) // the poison is handled, the slow one hangs
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := readDLQ(); n != 0 {
		t.Fatalf("%d dead letters visible after an aborted poll, want 0", n)
	}

	slow.Store(false)
	cancel, done = run(10 * time.Second)
	deadline := time.Now().Add(15 * time.Second)
	for readDLQ() == 0 && time.Now().Before(deadline) {
	}
	cancel()
	<-done
	if n := readDLQ(); n != 1 {
		t.Fatalf("%d dead letters after the redelivery, want exactly 1", n)
	}
}
