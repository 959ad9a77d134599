package bustest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/inbox"
	"github.com/herald-events/herald/platform/sqldb"
)

// testDeadLetter: with the consumer package's DeadLetter, Retry and Recover
// middleware, a message that fails permanently, one that panics and one
// whose retries run out each land once on topic+".dlq" with the reason
// headers, and the subscriber goes on with the messages behind them.
func (s *suite) testDeadLetter(t *testing.T) {
	f := s.setup(t)
	pub, dlqPub := f.publisher(), f.publisher()
	group, dlqTopic := f.group("g"), bus.DeadLetterTopic(f.topic)
	type failure struct {
		class, reason string
		attempts      int
	}
	bad := map[string]failure{
		"k/001-permanent": {consumer.ClassPermanent, "bustest: permanent failure", 1},
		"k/003-panic":     {consumer.ClassPermanent, "handler panic: bustest: induced panic", 1},
		"k/005-flaky":     {consumer.ClassExhausted, "bustest: transient failure", 3},
	}
	ids := []string{"k/000", "k/001-permanent", "j/000", "k/002", "k/003-panic", "j/001", "k/004", "k/005-flaky", "k/006", "j/002"}
	sent := map[string]*bus.Message{}
	var msgs []*bus.Message
	for _, id := range ids {
		key, _, _ := strings.Cut(id, "/")
		m := message(f.topic, key, id)
		m.SetHeader(bus.HeaderID, "ce-"+id)
		sent[id] = m
		msgs = append(msgs, m)
	}
	f.publish(pub, msgs[:5]...)
	f.publish(pub, msgs[5:]...)

	type position struct {
		p int32
		o int64
	}
	var (
		mu        sync.Mutex
		attempts  = map[string]int{}
		positions = map[string]position{}
		handled   = map[string]int{}
	)
	inner := func(_ context.Context, m *bus.Message) error {
		id := idOf(m)
		mu.Lock()
		attempts[id]++
		positions[id] = position{m.Partition, m.Offset}
		mu.Unlock()
		switch {
		case strings.HasSuffix(id, "-permanent"):
			return consumer.Permanent(errors.New("bustest: permanent failure"))
		case strings.HasSuffix(id, "-panic"):
			panic("bustest: induced panic")
		case strings.HasSuffix(id, "-flaky"):
			return errors.New("bustest: transient failure")
		}
		mu.Lock()
		handled[id]++
		mu.Unlock()
		return nil
	}
	log := slog.New(slog.DiscardHandler)
	retry := consumer.Retry(consumer.RetryPolicy{MaxAttempts: 3, Floor: time.Millisecond, Ceil: 5 * time.Millisecond}, nil)
	h := consumer.DeadLetter(dlqPub, group, bus.DeadLetterSuffix, log, nil)(retry(consumer.Recover()(inner)))

	var (
		dlqMu   sync.Mutex
		letters = map[string][]*bus.Message{}
		fenced  bool
	)
	reader := f.startOn(dlqTopic, "dlq reader", f.group("dlq"), graceful, func(_ context.Context, m *bus.Message) error {
		dlqMu.Lock()
		defer dlqMu.Unlock()
		if idOf(m) == "fence/k" {
			fenced = true
			return nil
		}
		letters[idOf(m)] = append(letters[idOf(m)], clone(m))
		return nil
	})
	a := f.start("a", group, graceful, h)
	good := len(ids) - len(bad)
	f.waitFor("the good messages handled and 3 dead letters", func() (bool, string) {
		mu.Lock()
		n := len(handled)
		mu.Unlock()
		dlqMu.Lock()
		d := len(letters)
		dlqMu.Unlock()
		return n >= good && d >= len(bad), fmt.Sprintf("%d of %d good messages handled, %d of %d dead letters read", n, good, d, len(bad))
	}, a, reader)
	f.stop(a)
	// Behind a fence on the dead-letter topic, a duplicate dead letter
	// would have shown up too.
	f.publish(pub, message(dlqTopic, "k", "fence/k"))
	f.waitFor("the fence on the dead-letter topic", func() (bool, string) {
		dlqMu.Lock()
		defer dlqMu.Unlock()
		return fenced, ""
	}, reader)
	f.stop(reader)

	mu.Lock()
	defer mu.Unlock()
	dlqMu.Lock()
	defer dlqMu.Unlock()
	for _, id := range ids {
		if _, isBad := bad[id]; !isBad && handled[id] != 1 {
			t.Errorf("good message %s handled %d times, want 1", id, handled[id])
		}
	}
	for id := range letters {
		if _, isBad := bad[id]; !isBad {
			t.Errorf("message %q was dead-lettered but did not fail", id)
		}
	}
	caps := s.subscriberCapabilities(t)
	for id, want := range bad {
		if attempts[id] != want.attempts {
			t.Errorf("%s: handler called %d times, want %d", id, attempts[id], want.attempts)
		}
		got := letters[id]
		if len(got) != 1 {
			t.Errorf("%s: %d dead letters, want 1", id, len(got))
			continue
		}
		d, orig := got[0], sent[id]
		if !bytes.Equal(d.Key, orig.Key) || !bytes.Equal(d.Value, orig.Value) {
			t.Errorf("%s: dead letter key %q value %q, want the original %q %q", id, d.Key, d.Value, orig.Key, orig.Value)
		}
		if ceID, _ := d.Header(bus.HeaderID); ceID != "ce-"+id {
			t.Errorf("%s: dead letter %s = %q, want the original's %q", id, bus.HeaderID, ceID, "ce-"+id)
		}
		headers := map[string]string{
			consumer.HeaderDLQTopic:    f.topic,
			consumer.HeaderDLQGroup:    group,
			consumer.HeaderDLQClass:    want.class,
			consumer.HeaderDLQAttempts: strconv.Itoa(want.attempts),
		}
		if caps.Partitions {
			headers[consumer.HeaderDLQPartition] = strconv.Itoa(int(positions[id].p))
			headers[consumer.HeaderDLQOffset] = strconv.FormatInt(positions[id].o, 10)
		}
		for k, v := range headers {
			if got, ok := d.Header(k); got != v {
				t.Errorf("%s: dead letter header %s = %q (present %v), want %q", id, k, got, ok, v)
			}
		}
		if reason, _ := d.Header(consumer.HeaderDLQError); !strings.Contains(reason, want.reason) {
			t.Errorf("%s: dead letter reason %q does not contain %q", id, reason, want.reason)
		}
		if at, _ := d.Header(consumer.HeaderDLQTime); at == "" {
			t.Errorf("%s: dead letter has no %s header", id, consumer.HeaderDLQTime)
		} else if _, err := time.Parse(time.RFC3339Nano, at); err != nil {
			t.Errorf("%s: dead letter %s: %v", id, consumer.HeaderDLQTime, err)
		}
	}
}

// testDedupe: one event (one ce_id) published twice is applied once by a
// handler that claims it in the inbox (inbox.Claim) in the SQLite
// transaction of its effect, even though its first attempt fails after
// applying its effect (which rolls back and is redelivered); the second copy
// is seen as a duplicate. A different event is applied too.
func (s *suite) testDedupe(t *testing.T) {
	f := s.setup(t)
	ctx := context.Background()
	db, err := sqldb.OpenSQLite(filepath.Join(t.TempDir(), "inbox.db"))
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close sqlite: %v", err)
		}
	})
	migrations := append(inbox.Migrations(db.Dialect()), sqldb.Migration{ID: "0001_bustest_effects", SQL: []string{
		`CREATE TABLE bustest_effects (event_id TEXT NOT NULL, delivery INTEGER NOT NULL)`,
	}})
	if err := db.Migrate(ctx, "bustest", migrations); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	pub := f.publisher()
	dupID, otherID := f.prefix+"-e1", f.prefix+"-e2"
	newEvent := func(ceID, value string) *bus.Message {
		m := message(f.topic, "order-1", value)
		m.SetHeader(bus.HeaderID, ceID)
		return m
	}
	// Two Publish calls, as a relay retrying after a lost acknowledgement
	// would make them.
	f.publish(pub, newEvent(dupID, "order created"))
	f.publish(pub, newEvent(dupID, "order created"))
	f.publish(pub, newEvent(otherID, "order paid"))

	var (
		mu         sync.Mutex
		deliveries = map[string]int{} // handler calls
		successes  = map[string]int{} // handler returned nil
		duplicates = map[string]int{} // inbox said: seen before
		committed  = map[string]int{} // effect transactions committed
		problems   []string
	)
	h := func(ctx context.Context, m *bus.Message) error {
		id, _ := m.Header(bus.HeaderID)
		typ, _ := m.Header(event.HeaderType)
		if id != dupID && id != otherID {
			mu.Lock()
			problems = append(problems, fmt.Sprintf("message %q with %s %q", m.Value, bus.HeaderID, id))
			mu.Unlock()
			return nil
		}
		mu.Lock()
		deliveries[id]++
		n := deliveries[id]
		mu.Unlock()
		applied := false
		// The unit of work of a module with a database: the inbox claim and
		// the effect in one transaction.
		err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			fresh, err := inbox.Claim(ctx, tx, id, typ)
			if err != nil || !fresh {
				return err
			}
			applied = true
			if _, err := tx.ExecContext(ctx, `INSERT INTO bustest_effects (event_id, delivery) VALUES (?, ?)`, id, n); err != nil {
				return fmt.Errorf("apply %s: %w", id, err)
			}
			if id == dupID && n == 1 {
				return fmt.Errorf("bustest: induced failure after applying %s", id)
			}
			tx.OnCommit(func() {
				mu.Lock()
				committed[id]++
				mu.Unlock()
			})
			return nil
		})
		if err != nil {
			return fmt.Errorf("handle %s: %w", id, err)
		}
		mu.Lock()
		successes[id]++
		if !applied {
			duplicates[id]++
		}
		mu.Unlock()
		return nil
	}
	ordered := s.subscriberCapabilities(t).OrderedByKey
	a := f.start("a", f.group("g"), graceful, h)
	f.waitFor("both copies and the other event handled", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		progress := fmt.Sprintf("event 1: %d deliveries, %d successes; event 2: %d successes; unexpected: %v",
			deliveries[dupID], successes[dupID], successes[otherID], problems)
		if ordered {
			// The other event comes after both copies on the same key.
			return successes[otherID] >= 1, progress
		}
		return successes[otherID] >= 1 && successes[dupID] >= 1, progress
	}, a)
	if !ordered {
		// Unordered, a second copy may still be on its way, unless the
		// backend dropped it at publish (JetStream's Nats-Msg-Id): give it
		// time to come before counting. The counts below hold either way.
		quiet := 2 * time.Second
		last, since := -1, time.Now()
		for time.Since(since) < quiet {
			mu.Lock()
			n := deliveries[dupID]
			mu.Unlock()
			if n != last {
				last, since = n, time.Now()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	f.stop(a)

	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("unexpected messages: %v", problems)
	}
	effects := func(id string) int {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM bustest_effects WHERE event_id = ?`, id).Scan(&n); err != nil {
			t.Fatalf("count effects: %v", err)
		}
		return n
	}
	for _, id := range []string{dupID, otherID} {
		if n := effects(id); n != 1 || committed[id] != 1 {
			t.Errorf("event %s: %d effect rows, %d committed applications; want exactly 1", id, n, committed[id])
		}
		if seen, err := inbox.Seen(ctx, db, id); err != nil || !seen {
			t.Errorf("event %s: inbox.Seen = %v, %v; want true", id, seen, err)
		}
	}
	switch successes[dupID] {
	case 0:
		t.Errorf("event %s was never handled successfully", dupID)
	case 1:
		t.Logf("event %s was delivered once: the backend dropped the second copy itself", dupID)
	}
	if want := successes[dupID] - 1; duplicates[dupID] != want {
		t.Errorf("event %s: succeeded %d times but the inbox reported %d duplicates, want %d",
			dupID, successes[dupID], duplicates[dupID], want)
	}
	if want := successes[dupID] + 1; deliveries[dupID] != want {
		t.Errorf("event %s: %d deliveries, want %d (one failed attempt, then %d successes)", dupID, deliveries[dupID], want, successes[dupID])
	}
	if duplicates[otherID] != 0 || successes[otherID] != 1 {
		t.Errorf("event %s: %d successes, %d seen as duplicates; want 1 and 0", otherID, successes[otherID], duplicates[otherID])
	}
}
