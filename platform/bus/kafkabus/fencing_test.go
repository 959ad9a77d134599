package kafkabus_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/kafkabus"
)

// longTimeout is the transaction timeout of the fencing tests: far longer
// than they wait, so only fencing can end an abandoned transaction in time.
const longTimeout = 5 * time.Minute

// emptyCluster starts kfake with single-partition topics.
func emptyCluster(t *testing.T, topics ...string) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// abandonTransaction opens a transaction as txnID, produces one record
// ("abandoned") to topic in it and leaves it open, as a process killed in
// the middle of a transaction does. The client is only closed when the
// test ends.
func abandonTransaction(t *testing.T, seeds []string, txnID, topic string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.TransactionalID(txnID), kgo.TransactionTimeout(longTimeout))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Value: []byte("abandoned")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// committedReader reads topic at read_committed from the start.
type committedReader struct {
	cl   *kgo.Client
	seen []string
}

func newCommittedReader(t *testing.T, seeds []string, topic string) *committedReader {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &committedReader{cl: cl}
}

// waitFor reads until want was seen or d passed; it reports whether it was.
func (r *committedReader) waitFor(want string, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		for _, v := range r.seen {
			if v == want {
				return true
			}
		}
		if ctx.Err() != nil {
			return false
		}
		r.cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) { r.seen = append(r.seen, string(rec.Value)) })
	}
}

// TestRestartedPublisherFencesItsAbandonedTransaction: a relay killed in
// the middle of a transaction holds read-committed readers of its
// partitions back; the restarted relay, with the same transactional id and
// instance, fences it, and readers see its next record at once instead of
// after the transaction timeout. Another instance's publisher cannot.
func TestRestartedPublisherFencesItsAbandonedTransaction(t *testing.T) {
	seeds := emptyCluster(t, "t")
	abandonTransaction(t, seeds, "relay-i1", "t")
	reader := newCommittedReader(t, seeds, "t")

	publish := func(instance, value string) {
		t.Helper()
		pub, err := kafkabus.NewPublisher(kafkabus.Seeds(seeds...), kafkabus.Logger(quiet()),
			kafkabus.TransactionalID("relay"), kafkabus.InstanceID(instance), kafkabus.TransactionTimeout(longTimeout))
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		if err := pub.Publish(context.Background(), &bus.Message{Topic: "t", Value: []byte(value)}); err != nil {
			t.Fatal(err)
		}
	}

	publish("i2", "other instance")
	if reader.waitFor("other instance", 2*time.Second) {
		t.Fatal("a record committed behind an open transaction was readable: the test cannot tell fencing apart")
	}
	publish("i1", "restarted")
	if !reader.waitFor("restarted", 5*time.Second) {
		t.Fatalf("the restarted publisher's record was not readable within 5s (seen %q): the abandoned transaction was not fenced", reader.seen)
	}
	if !reader.waitFor("other instance", time.Second) {
		t.Fatalf("the other instance's record stayed hidden after the fence (seen %q)", reader.seen)
	}
	for _, v := range reader.seen {
		if v == "abandoned" {
			t.Fatal("the abandoned transaction's record became visible")
		}
	}
}

// TestHandlerWaitInConsumerTransaction shows what a handler that waits far
// longer than the transaction timeout (a database outage) does to the
// poll's transaction. Before anything was produced, the broker has no
// transaction open, so the wait breaks nothing: every record is handled
// once and committed. After a dead letter was produced in the poll's
// transaction, the broker aborts it at the timeout: the session ends, the
// poll comes again, and the dead letter is visible once, from the retry.
func TestHandlerWaitInConsumerTransaction(t *testing.T) {
	const timeout = time.Second
	for _, tc := range []struct {
		name       string
		deadLetter bool // the poll's first record is dead-lettered
		wantFirst  int  // deliveries of the first record
	}{
		{"nothing produced before the wait", false, 1},
		{"dead letter produced before the wait", true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seeds := emptyCluster(t, "in", "in.dlq")
			prod, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
			if err != nil {
				t.Fatal(err)
			}
			defer prod.Close()
			// One key, so the second record is handled after the first
			// in the same poll.
			if err := prod.ProduceSync(context.Background(),
				&kgo.Record{Topic: "in", Key: []byte("k"), Value: []byte("first")},
				&kgo.Record{Topic: "in", Key: []byte("k"), Value: []byte("slow")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			var (
				mu     sync.Mutex
				counts = map[string]int{}
				waited atomic.Bool
			)
			handler := func(ctx context.Context, m *bus.Message) error {
				mu.Lock()
				counts[string(m.Value)]++
				mu.Unlock()
				switch string(m.Value) {
				case "first":
					if tc.deadLetter {
						pub, _ := bus.DeliveryPublisher(ctx)
						return pub.Publish(ctx, &bus.Message{Topic: "in.dlq", Value: []byte("dead letter")})
					}
				case "slow":
					if !waited.Swap(true) {
						time.Sleep(3 * timeout) // the database is away
					}
				}
				return nil
			}
			sub, err := kafkabus.NewSubscriber(kafkabus.Seeds(seeds...), kafkabus.Logger(quiet()),
				kafkabus.GroupTransactions("herald-consumer-"), kafkabus.InstanceID("i1"), kafkabus.TransactionTimeout(timeout))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- sub.Run(ctx, "g", []string{"in"}, handler) }()

			committed := func() int64 {
				adm, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
				if err != nil {
					t.Fatal(err)
				}
				defer adm.Close()
				return committedOffset(t, adm, "g", "in")
			}
			deadline := time.Now().Add(20 * time.Second)
			for committed() < 2 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if off := committed(); off != 2 {
				t.Fatalf("committed offset %d, want 2", off)
			}
			mu.Lock()
			defer mu.Unlock()
			if counts["first"] != tc.wantFirst {
				t.Fatalf("first record delivered %d times, want %d (deliveries %v)", counts["first"], tc.wantFirst, counts)
			}
			if tc.deadLetter {
				reader := newCommittedReader(t, seeds, "in.dlq")
				reader.waitFor("", 2*time.Second) // read everything there is
				if len(reader.seen) != 1 {
					t.Fatalf("%d dead letters visible, want exactly 1: %q", len(reader.seen), reader.seen)
				}
			}
		})
	}
}

// committedOffset is group's committed offset of topic's partition 0, -1
// when there is none (or it cannot be read now).
func committedOffset(t *testing.T, cl *kgo.Client, group, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	offs, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		return -1
	}
	o, ok := offs.Lookup(topic, 0)
	if !ok || o.Err != nil {
		return -1
	}
	return o.At
}

// TestRestartedConsumerReplacesItsDeadMember: a consumer killed without
// leaving its group stays a member until its session times out, and a new
// member's join waits for it. The same instance restarted replaces it at
// once (static membership under the instance id); another instance has to
// wait.
func TestRestartedConsumerReplacesItsDeadMember(t *testing.T) {
	for _, tc := range []struct {
		instance string
		want     bool // handles the record within the wait
	}{{"i1", true}, {"i2", false}} {
		t.Run(tc.instance, func(t *testing.T) {
			seeds := emptyCluster(t, "in")
			dead, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("in"),
				kgo.InstanceID("i1"), kgo.SessionTimeout(10*time.Second), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
			if err != nil {
				t.Fatal(err)
			}
			if err := dead.ProduceSync(context.Background(), &kgo.Record{Topic: "in", Value: []byte("r")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
			n := dead.PollFetches(pctx).NumRecords()
			pcancel()
			if n != 1 {
				t.Fatalf("the first member polled %d records, want 1", n)
			}
			dead.Close() // a static member does not leave: as if killed

			sub, err := kafkabus.NewSubscriber(kafkabus.Seeds(seeds...), kafkabus.Logger(quiet()),
				kafkabus.GroupTransactions("c-"), kafkabus.InstanceID(tc.instance))
			if err != nil {
				t.Fatal(err)
			}
			handled := make(chan struct{}, 1)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- sub.Run(ctx, "g", []string{"in"}, func(context.Context, *bus.Message) error {
					select {
					case handled <- struct{}{}:
					default:
					}
					return nil
				})
			}()
			var got bool
			select {
			case <-handled:
				got = true
			case <-time.After(5 * time.Second):
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("instance %s handled the dead member's record within 5s: %v, want %v", tc.instance, got, tc.want)
			}
		})
	}
}

// TestStoppedConsumerLeavesItsGroup: static membership must not keep a
// stopped instance's partitions from the others until its session times
// out; a stop leaves the group.
func TestStoppedConsumerLeavesItsGroup(t *testing.T) {
	seeds := emptyCluster(t, "in")
	prod, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	produce := func(v string) {
		if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: "in", Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	run := func(instance string, handled chan<- string) (context.CancelFunc, <-chan error) {
		sub, err := kafkabus.NewSubscriber(kafkabus.Seeds(seeds...), kafkabus.Logger(quiet()),
			kafkabus.GroupTransactions("c-"), kafkabus.InstanceID(instance))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- sub.Run(ctx, "g", []string{"in"}, func(_ context.Context, m *bus.Message) error {
				handled <- string(m.Value)
				return nil
			})
		}()
		return cancel, done
	}
	wait := func(handled <-chan string, want string) {
		t.Helper()
		select {
		case v := <-handled:
			if v != want {
				t.Fatalf("handled %q, want %q", v, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%q not handled within 5s", want)
		}
	}
	first := make(chan string, 10)
	produce("one")
	cancel, done := run("i1", first)
	wait(first, "one")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	second := make(chan string, 10)
	cancel, done = run("i2", second)
	defer func() {
		cancel()
		<-done
	}()
	produce("two")
	wait(second, "two")
}
