package kafkabus_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/kafkabus"
)

// TestPassedOverPollsShareATransaction: a poll whose every message the
// handler passed over opens no transaction; its offsets commit with the
// next poll's, or on their own once nothing else came for the
// PassedOverCommit delay. Nothing applied is ever left uncommitted.
func TestPassedOverPollsShareATransaction(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var ends atomic.Int64
	c.ControlKey(int16(kmsg.EndTxn), func(kmsg.Request) (kmsg.Response, error, bool) {
		ends.Add(1)
		return nil, nil, false // counted, then handled by the cluster
	})
	seeds := c.ListenAddrs()
	producer, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	adm := kadm.NewClient(producer)

	const carry = 2 * time.Second
	sub, err := kafkabus.NewSubscriber(kafkabus.Seeds(seeds...), kafkabus.Logger(quiet()),
		kafkabus.GroupTransactions("txn-"), kafkabus.PassedOverCommit(carry))
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sub.Run(ctx, "g", []string{"t"}, func(ctx context.Context, m *bus.Message) error {
			if strings.HasPrefix(string(m.Value), "skip") {
				bus.PassOver(ctx)
			}
			seen <- string(m.Value)
			return nil
		})
	}()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	defer stop()

	// send produces one record and waits until the handler has it, so
	// that every record is a poll of its own.
	send := func(v string) {
		t.Helper()
		if err := producer.ProduceSync(context.Background(), &kgo.Record{Topic: "t", Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-seen:
			if got != v {
				t.Fatalf("handler got %q, want %q", got, v)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q not delivered", v)
		}
	}
	committed := func() int64 {
		t.Helper()
		offs, err := adm.FetchOffsets(context.Background(), "g")
		if err != nil {
			t.Fatal(err)
		}
		o, _ := offs.Lookup("t", 0)
		return o.At
	}
	waitCommitted := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for committed() != want {
			if time.Now().After(deadline) {
				t.Fatalf("committed offset %d, want %d", committed(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// The group's first record is applied: a transaction of its own.
	send("apply-0")
	waitCommitted(1)
	base := ends.Load()

	// Two passed-over polls, then an applied one: one transaction commits
	// all three offsets.
	send("skip-1")
	send("skip-2")
	send("apply-3")
	waitCommitted(4)
	if n := ends.Load() - base; n != 1 {
		t.Errorf("%d transactions ended for two passed-over polls and an applied one, want 1", n)
	}

	// A passed-over poll with nothing after it: not committed at once, but
	// within the delay, in one transaction.
	base = ends.Load()
	send("skip-4")
	time.Sleep(300 * time.Millisecond)
	if got := committed(); got != 4 {
		t.Errorf("committed offset %d right after a passed-over poll, want it carried (4)", got)
	}
	waitCommitted(5)
	if n := ends.Load() - base; n != 1 {
		t.Errorf("%d transactions ended for an idle passed-over poll, want 1", n)
	}

	// A stop does not wait for the delay: what it carries is committed
	// before Run returns.
	send("skip-5")
	stop()
	if got := committed(); got != 6 {
		t.Errorf("committed offset %d after a stop that carried a passed-over poll, want 6", got)
	}
}
