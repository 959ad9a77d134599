package kafkabus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-events/herald/platform/bus"
)

// TestPublisherRefusesAnUncommittedEnd: when franz-go says it ends a
// transaction without the commit that was asked, Publish replaces the
// client and publishes again; when that happens twice in a row, Publish
// fails with ErrNotCommitted. The client's line is injected between Flush
// and EndTransaction, where the real one is logged.
func TestPublisherRefusesAnUncommittedEnd(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seeds := c.ListenAddrs()
	if err := EnsureTopics(ctx, 1, 1, []string{"t"}, Seeds(seeds...)); err != nil {
		t.Fatal(err)
	}
	p, err := NewPublisher(Seeds(seeds...), TransactionalID("t-relay"), Logger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })

	injected := 0
	inject := func(times int) {
		injected = 0
		p.beforeEnd = func() {
			if injected < times {
				injected++
				txnLogger{kgoLogger{slog.New(slog.DiscardHandler)}, &p.uncommitted}.Log(kgo.LogLevelInfo,
					"no produce succeeded in this transaction but produces were attempted; issuing an abort to clear any server-side partition registrations")
			}
		}
	}

	first := p.cl
	inject(2)
	err = p.Publish(ctx, &bus.Message{Topic: "t", Key: []byte("k"), Value: []byte("one")})
	if !errors.Is(err, ErrNotCommitted) || injected != 2 {
		t.Fatalf("Publish = %v after %d uncommitted ends, want ErrNotCommitted after 2", err, injected)
	}
	if p.cl == first {
		t.Fatal("the client was kept after an uncommitted end")
	}

	inject(1)
	two := &bus.Message{Topic: "t", Key: []byte("k"), Value: []byte("two")}
	err = p.Publish(ctx, two)
	if errors.Is(err, ErrNotCommitted) && injected == 1 {
		// One end was injected, so the retry's end was the client's own:
		// the new client's first transaction on the topic met franz-go's
		// race (docs/reliability.md; 2 and 4 in two sets of 1,200 runs
		// under -race and load). The relay publishes again, as here.
		t.Log("the retry's client ended its first transaction without a commit on its own; publishing again")
		p.beforeEnd = nil
		err = p.Publish(ctx, two)
	}
	if err != nil || injected != 1 {
		t.Fatalf("Publish with one uncommitted end = %v (%d injected), want it published again", err, injected)
	}
	// The second value is committed and readable.
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics("t"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("the published value never became readable")
		}
		found := false
		fs.EachRecord(func(r *kgo.Record) { found = found || bytes.Equal(r.Value, []byte("two")) })
		if found {
			return
		}
	}
}

func TestTxnLoggerRaisesOnlyOnUncommittedEnds(t *testing.T) {
	var buf bytes.Buffer
	var flag atomic.Bool
	l := txnLogger{kgoLogger{slog.New(slog.NewTextHandler(&buf, nil))}, &flag}
	if l.Level() < kgo.LogLevelInfo {
		t.Fatalf("Level = %v; the client's info lines are needed", l.Level())
	}
	l.Log(kgo.LogLevelInfo, "ending transaction", "commit", true)
	l.Log(kgo.LogLevelInfo, "beginning transaction")
	if flag.Load() {
		t.Fatal("flag raised by an ordinary line")
	}
	if buf.Len() != 0 {
		t.Fatalf("info lines reached a logger at warn: %q", buf.String())
	}
	l.Log(kgo.LogLevelWarn, "something odd")
	if !bytes.Contains(buf.Bytes(), []byte("kafka: something odd")) {
		t.Fatalf("warning not forwarded: %q", buf.String())
	}
	for _, msg := range []string{
		"no produce succeeded in this transaction but produces were attempted; issuing an abort to clear any server-side partition registrations",
		"no records were produced during the commit; thus no transaction was began; ending without doing anything",
	} {
		flag.Store(false)
		l.Log(kgo.LogLevelInfo, msg)
		if !flag.Load() {
			t.Fatalf("flag not raised by %q", msg)
		}
	}
}

func TestSessionLoggerKeepsWhyATransactionAborted(t *testing.T) {
	var buf bytes.Buffer
	l := &sessionLogger{kgoLogger: kgoLogger{slog.New(slog.NewTextHandler(&buf, nil))}}
	if l.Level() < kgo.LogLevelInfo {
		t.Fatalf("Level = %v; the client's info lines are needed", l.Level())
	}
	l.Log(kgo.LogLevelInfo, "beginning transaction", "transactional_id", "x")
	l.Log(kgo.LogLevelInfo, "synced", "group", "g", "assigned", "t[0]")
	l.Log(kgo.LogLevelInfo, "heartbeat errored", "group", "g", "err", "REBALANCE_IN_PROGRESS")
	l.Log(kgo.LogLevelInfo, "transaction session ending", "was_failed", true, "can_try_commit", false)
	why := fmt.Sprint(l.reasons()...)
	for _, want := range []string{"synced", "heartbeat errored", "was_failed=true can_try_commit=false"} {
		if !strings.Contains(why, want) {
			t.Errorf("reasons %q lack %q", why, want)
		}
	}
	if strings.Contains(why, "beginning transaction") {
		t.Errorf("reasons %q keep a routine line", why)
	}
	if got := l.reasons(); len(got) != 0 {
		t.Errorf("reasons not forgotten after a call: %v", got)
	}
	if log := buf.String(); !strings.Contains(log, "kafka: heartbeat errored") || strings.Contains(log, "group=g") ||
		strings.Contains(log, "beginning transaction") || strings.Contains(log, "synced") {
		t.Errorf("want the troubled group line passed on (without a second group attribute) and the routine ones not; log: %q", log)
	}
	for range 20 {
		l.Log(kgo.LogLevelInfo, "joining group", "group", "g")
	}
	if got := l.reasons(); len(got) != 16 {
		t.Errorf("kept %d values after 20 lines; want the last 16", len(got))
	}
}
