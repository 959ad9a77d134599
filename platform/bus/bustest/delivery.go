package bustest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/event"
)

// testRoundTrip: what is published is what is consumed, and the consumed
// messages carry what the subscriber's capabilities promise.
func (s *suite) testRoundTrip(t *testing.T) {
	f := s.setup(t)
	pub := f.publisher()
	sub := s.b.NewSubscriber(t, graceful)
	pc, sc := pub.Capabilities(), sub.Capabilities()
	t.Logf("publisher capabilities %+v, subscriber capabilities %+v", pc, sc)
	if pc.System == "" || pc.System != sc.System {
		t.Errorf("publisher reports system %q, subscriber %q: want the same messaging system name", pc.System, sc.System)
	}

	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	big := make([]byte, 128<<10)
	if _, err := rand.Read(big); err != nil {
		t.Fatalf("random value: %v", err)
	}
	full := &bus.Message{Topic: f.topic, Key: []byte("k-1"), Value: binary}
	for _, h := range [][2]string{
		{bus.HeaderID, "rt-1"},
		{event.HeaderType, "bustest.v1.TestEvent"},
		{event.HeaderSource, "herald/bustest"},
		{event.HeaderTime, "2026-01-02T03:04:05.123456789Z"},
		{event.HeaderSpecVersion, event.SpecVersion},
		{event.HeaderContentType, event.ContentType},
		{event.HeaderTraceParent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		{"X-Bustest-Mixed-Case", "Value with spaces, punctuation: ;=\"'"},
		{"bustest_empty", ""},
	} {
		full.SetHeader(h[0], h[1])
	}
	noKey := &bus.Message{Topic: f.topic, Value: []byte("no key")}
	noKey.SetHeader(bus.HeaderID, "rt-2")
	large := &bus.Message{Topic: f.topic, Key: []byte("k-big"), Value: big}
	large.SetHeader(bus.HeaderID, "rt-3")
	empty := &bus.Message{Topic: f.topic, Key: []byte("k-empty")}
	empty.SetHeader(bus.HeaderID, "rt-4")
	later := &bus.Message{Topic: f.topic, Key: []byte("k-1"), Value: []byte("second of k-1")}
	later.SetHeader(bus.HeaderID, "rt-5")
	// An ID and no header: the backend carries the ID itself.
	idOnly := &bus.Message{Topic: f.topic, Key: []byte("k-id"), Value: []byte("id only"), ID: "rt-6"}
	sent := []*bus.Message{full, noKey, large, empty, later, idOnly}

	var (
		mu  sync.Mutex
		got []*bus.Message
	)
	before := time.Now()
	f.publish(pub, full, noKey, large, empty, idOnly)
	f.publish(pub, later)
	after := time.Now()
	r := f.start("a", f.group("a"), graceful, func(_ context.Context, m *bus.Message) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, clone(m))
		return nil
	})
	f.waitFor("6 messages", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= len(sent), fmt.Sprintf("%d of %d received", len(got), len(sent))
	}, r)
	f.stop(r)

	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(sent) {
		t.Errorf("received %d messages, published %d", len(got), len(sent))
	}
	byID := map[string]*bus.Message{}
	pos := map[string]int{}
	for i, m := range got {
		id, ok := m.Header(bus.HeaderID)
		if !ok {
			t.Errorf("received message %s (key %q) without a %s header", m, m.Key, bus.HeaderID)
			continue
		}
		if _, dup := byID[id]; dup {
			t.Errorf("message %s received twice in a clean run", id)
		}
		byID[id], pos[id] = m, i
	}
	for _, want := range sent {
		id := want.MessageID()
		m, ok := byID[id]
		if !ok {
			t.Errorf("message %s was not received", id)
			continue
		}
		if m.Topic != f.topic {
			t.Errorf("message %s: topic %q, want %q", id, m.Topic, f.topic)
		}
		if m.ID != id {
			t.Errorf("message %s: ID %q, want %q (the published ID, or else its %s header)", id, m.ID, id, bus.HeaderID)
		}
		if !bytes.Equal(m.Key, want.Key) {
			t.Errorf("message %s: key %q, want %q", id, m.Key, want.Key)
		}
		if !bytes.Equal(m.Value, want.Value) {
			t.Errorf("message %s: value of %d bytes differs from the %d published", id, len(m.Value), len(want.Value))
		}
		for _, h := range want.Headers {
			v, ok := m.Header(h.Key)
			if !ok {
				t.Errorf("message %s: header %q lost", id, h.Key)
			} else if v != string(h.Value) {
				t.Errorf("message %s: header %q = %q, want %q", id, h.Key, v, h.Value)
			}
		}
		if extra := len(m.Headers) - len(want.Headers); extra > 0 {
			t.Logf("message %s: the backend added %d headers: %v", id, extra, m.Headers)
		}
		// Kafka's timestamps are the producer's clock; allow for skew.
		if m.Timestamp.IsZero() || m.Timestamp.Before(before.Add(-2*time.Minute)) || m.Timestamp.After(after.Add(2*time.Minute)) {
			t.Errorf("message %s: timestamp %v, want about the publish time %v", id, m.Timestamp, before)
		}
	}
	first, second := byID["rt-1"], byID["rt-5"]
	if first == nil || second == nil {
		return
	}
	if sc.OrderedByKey && pos["rt-5"] < pos["rt-1"] {
		t.Errorf("subscriber reports OrderedByKey, but the second message of key k-1 was handled before the first")
	}
	if !sc.Partitions {
		t.Logf("subscriber does not report Partitions: partitions and offsets not checked")
		return
	}
	type position struct {
		p int32
		o int64
	}
	seen := map[position]string{}
	for id, m := range byID {
		if m.Partition < 0 || m.Offset < 0 {
			t.Errorf("message %s: partition %d offset %d, want both set (subscriber reports Partitions)", id, m.Partition, m.Offset)
		}
		if other, dup := seen[position{m.Partition, m.Offset}]; dup {
			t.Errorf("messages %s and %s both at partition %d offset %d", id, other, m.Partition, m.Offset)
		}
		seen[position{m.Partition, m.Offset}] = id
	}
	if first.Partition != second.Partition || second.Offset <= first.Offset {
		t.Errorf("key k-1: first message at %d@%d, second at %d@%d; want the same partition, increasing offsets",
			first.Partition, first.Offset, second.Partition, second.Offset)
	}
}

// testPublishAfterClose: a closed publisher refuses with bus.ErrClosed.
func (s *suite) testPublishAfterClose(t *testing.T) {
	f := s.setup(t)
	pub := s.b.NewPublisher(t)
	if err := pub.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	err := pub.Publish(ctx, message(f.topic, "k", "after-close"))
	if !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("Publish after Close returned %v, want an error wrapping bus.ErrClosed", err)
	}
}

// testOrderPerKey: 20 keys × 25 messages, published interleaved, are
// handled in publish order per key.
func (s *suite) testOrderPerKey(t *testing.T) {
	const keys, perKey = 20, 25
	sub := s.b.NewSubscriber(t, graceful)
	if !sub.Capabilities().OrderedByKey {
		t.Skipf("backend %s: subscriber lacks the OrderedByKey capability; per-key order not checked", s.b.Name)
	}
	f := s.setup(t)
	pub := f.publisher()
	rounds, refs, _ := interleaved(f.topic, keys, perKey)
	for _, round := range rounds {
		f.publish(pub, round...)
	}
	var (
		mu     sync.Mutex
		seqs   = map[string][]int{}
		total  int
		strays []string
	)
	r := f.start("a", f.group("a"), graceful, func(_ context.Context, m *bus.Message) error {
		// Uneven handling times give a backend that handles one key
		// concurrently the chance to reorder it.
		time.Sleep(time.Duration(mrand.IntN(300)) * time.Microsecond)
		id := idOf(m)
		mu.Lock()
		defer mu.Unlock()
		rf, ok := refs[id]
		if !ok || string(m.Key) != rf.key {
			strays = append(strays, fmt.Sprintf("%q (key %q)", id, m.Key))
			return nil
		}
		seqs[rf.key] = append(seqs[rf.key], rf.seq)
		total++
		return nil
	})
	f.waitFor(fmt.Sprintf("%d messages", keys*perKey), func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return total >= keys*perKey, fmt.Sprintf("%d of %d handled", total, keys*perKey)
	}, r)
	f.stop(r)

	mu.Lock()
	defer mu.Unlock()
	if len(strays) > 0 {
		t.Errorf("messages that were not published or came with the wrong key: %v", strays)
	}
	want := make([]int, perKey)
	for i := range want {
		want[i] = i
	}
	for k := range keys {
		key := fmt.Sprintf("k%02d", k)
		if got := seqs[key]; !slices.Equal(got, want) {
			t.Errorf("key %s handled in the order %v, want %v", key, got, want)
		}
	}
}

// testHandlerErrorRedelivery: a message whose handler fails twice is
// delivered until it succeeds; the other messages are handled too, each
// once, and on a backend ordered by key the failing message holds back
// only its own key's later messages.
func (s *suite) testHandlerErrorRedelivery(t *testing.T) {
	const keys, perKey, failures = 3, 6, 2
	f := s.setup(t)
	pub := f.publisher()
	rounds, refs, order := interleaved(f.topic, keys, perKey)
	for _, round := range rounds {
		f.publish(pub, round...)
	}
	failing := order[len(order)/2] // in the middle of its key
	var (
		mu        sync.Mutex
		attempts  = map[string]int{}
		successes = map[string]int{}
		byKey     = map[string][]int{}
	)
	r := f.start("a", f.group("a"), graceful, func(_ context.Context, m *bus.Message) error {
		id := idOf(m)
		mu.Lock()
		defer mu.Unlock()
		attempts[id]++
		if id == failing && attempts[id] <= failures {
			return fmt.Errorf("bustest: induced failure %d of %d for %s", attempts[id], failures, id)
		}
		successes[id]++
		if rf, ok := refs[id]; ok {
			byKey[rf.key] = append(byKey[rf.key], rf.seq)
		}
		return nil
	})
	f.waitFor("every message handled successfully", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(successes) >= len(order), fmt.Sprintf("%d of %d handled; %s attempted %d times",
			len(successes), len(order), failing, attempts[failing])
	}, r)
	f.stop(r)

	mu.Lock()
	defer mu.Unlock()
	if n := attempts[failing]; n != failures+1 {
		t.Errorf("%s attempted %d times, want %d (%d failures, then one success)", failing, n, failures+1, failures)
	}
	var problems []string
	for _, id := range order {
		if successes[id] != 1 {
			problems = append(problems, fmt.Sprintf("%s succeeded %d times", id, successes[id]))
		}
		if id != failing && attempts[id] != 1 {
			problems = append(problems, fmt.Sprintf("%s attempted %d times", id, attempts[id]))
		}
	}
	for id := range successes {
		if _, ok := refs[id]; !ok {
			problems = append(problems, fmt.Sprintf("unknown message %q", id))
		}
	}
	if len(problems) > 0 {
		t.Errorf("in a run whose only failures were induced: %s", strings.Join(problems, "; "))
	}
	if !s.subscriberCapabilities(t).OrderedByKey {
		t.Logf("subscriber does not report OrderedByKey: holding back the failing key not checked")
		return
	}
	want := make([]int, perKey)
	for i := range want {
		want[i] = i
	}
	for k, seq := range byKey {
		if !slices.Equal(seq, want) {
			t.Errorf("key %s succeeded in the order %v, want %v: a failing message must hold back its key", k, seq, want)
		}
	}
}

// subscriberCapabilities returns the capabilities of a fresh subscriber of
// the backend.
func (s *suite) subscriberCapabilities(t *testing.T) bus.Capabilities {
	t.Helper()
	return s.b.NewSubscriber(t, graceful).Capabilities()
}
