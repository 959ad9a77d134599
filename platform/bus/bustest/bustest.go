// Package bustest is a conformance suite for [bus] backends.
//
// A backend's own _test.go file describes how to make topics, publishers
// and subscribers in a [Backend] and calls [Run]. The suite then checks,
// each in its own subtest with its own topics and groups, what the bus
// package promises and what herald builds on it:
//
//   - RoundTrip: key, value and headers survive; consumed messages carry
//     the published [bus.Message.ID] (or the id of the [bus.HeaderID]
//     header when none was set) and what [bus.Capabilities] says they
//     carry.
//   - PublishAfterClose: a closed publisher fails with [bus.ErrClosed].
//   - OrderPerKey: messages of one key are handled in publish order (only
//     when the subscriber reports OrderedByKey; otherwise it is skipped,
//     saying so).
//   - HandlerErrorRedelivery: a failing message is delivered again until
//     it succeeds, without blocking the rest for good.
//   - RedeliveryAfterCrash: what a subscriber stopped with no grace did not
//     finish goes to the next member of its group; nothing is lost.
//   - DeadLetter: the consumer package's DeadLetter middleware moves a
//     failing message to its [bus.DeadLetterTopic] with its reason, and the subscriber
//     goes on.
//   - Dedupe: the inbox applies an event delivered twice once.
//   - GracefulShutdown: a subscriber stopped with a generous grace loses
//     and repeats nothing: every message is handled exactly once across it
//     and its successor.
//   - HandoverDuringGrace: the same when the successor joins the group
//     while the stopped subscriber is still within its grace, as in a
//     rolling deploy.
//
// Every wait is bounded by [Backend].Timeout; no sleep is an assertion.
package bustest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/event"
)

// Backend is what a bus implementation hands the suite.
type Backend struct {
	// Name names the backend in logs.
	Name string
	// Prepare makes the topics (and their ".dlq" topics) exist. The suite
	// passes topic names unique per test, lower-case, with dots, for
	// example "bustest.3f9a0c1e.roundtrip.v1". Group names are unique per
	// test too and contain no dots ("bustest-3f9a0c1e-roundtrip-a").
	Prepare func(t *testing.T, topics ...string)
	// NewPublisher returns a publisher; the suite closes it.
	NewPublisher func(t *testing.T) bus.Publisher
	// NewSubscriber returns a subscriber whose Run, after its ctx is
	// cancelled, keeps handling the messages it already took for at most
	// grace, then stops WITHOUT acknowledging/committing the rest. The
	// suite calls Run once per subscriber.
	NewSubscriber func(t *testing.T, grace time.Duration) bus.Subscriber
	// Timeout bounds each wait of the suite: for deliveries, and for Run
	// to return after its grace. Default 90s, enough for a real broker's
	// group joins and rebalances; an in-memory backend can use less so
	// that failures are reported quickly.
	Timeout time.Duration
	// Limitations names subtests the backend is known to fail, each with
	// the reason; they are skipped with that reason in the log, so a
	// limitation is stated where it is, not silently missing.
	Limitations map[string]string
}

// Run runs the conformance suite against b, one subtest per property.
func Run(t *testing.T, b Backend) {
	t.Helper()
	if b.Prepare == nil || b.NewPublisher == nil || b.NewSubscriber == nil {
		t.Fatalf("bustest: backend %q: Prepare, NewPublisher and NewSubscriber are required", b.Name)
	}
	s := &suite{b: b, timeout: b.Timeout}
	if s.timeout <= 0 {
		s.timeout = 90 * time.Second
	}
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"RoundTrip", s.testRoundTrip},
		{"PublishAfterClose", s.testPublishAfterClose},
		{"OrderPerKey", s.testOrderPerKey},
		{"HandlerErrorRedelivery", s.testHandlerErrorRedelivery},
		{"RedeliveryAfterCrash", s.testRedeliveryAfterCrash},
		{"DeadLetter", s.testDeadLetter},
		{"Dedupe", s.testDedupe},
		{"GracefulShutdown", s.testGracefulShutdown},
		{"HandoverDuringGrace", s.testHandoverDuringGrace},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if why, ok := b.Limitations[tc.name]; ok {
				t.Skipf("known limitation of %s: %s", b.Name, why)
			}
			tc.fn(t)
		})
	}
}

// graceful is the grace the suite gives subscribers it stops on purpose.
const graceful = 10 * time.Second

type suite struct {
	b       Backend
	timeout time.Duration
}

// fixture is one subtest's topic, group prefix and helpers.
type fixture struct {
	t       *testing.T
	s       *suite
	topic   string
	prefix  string // group names are prefix + "-" + role
	timeout time.Duration
}

// setup names the subtest's topic and prepares it (and its dead-letter
// topic).
func (s *suite) setup(t *testing.T) *fixture {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random suffix: %v", err)
	}
	r, name := hex.EncodeToString(b[:]), slug(t.Name())
	f := &fixture{
		t: t, s: s, timeout: s.timeout,
		topic:  "bustest." + r + "." + name + ".v1",
		prefix: "bustest-" + r + "-" + name,
	}
	s.b.Prepare(t, f.topic)
	t.Logf("backend %s: topic %s", s.b.Name, f.topic)
	return f
}

// slug turns the last element of a test name into a short lower-case
// name of letters, digits and dashes.
func slug(name string) string {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
		if b.Len() >= 32 {
			break
		}
	}
	return strings.Trim(b.String(), "-")
}

func (f *fixture) group(role string) string { return f.prefix + "-" + role }

// publisher returns a publisher of the backend, closed when the test ends.
func (f *fixture) publisher() bus.Publisher {
	f.t.Helper()
	p := f.s.b.NewPublisher(f.t)
	if p == nil {
		f.t.Fatal("backend returned a nil publisher")
	}
	f.t.Cleanup(func() {
		if err := p.Close(); err != nil {
			f.t.Errorf("close publisher: %v", err)
		}
	})
	return p
}

// publish writes msgs in one Publish call.
func (f *fixture) publish(p bus.Publisher, msgs ...*bus.Message) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	if err := p.Publish(ctx, msgs...); err != nil {
		f.t.Fatalf("publish %d messages to %s: %v", len(msgs), f.topic, err)
	}
}

// message is a test message: key, value id, and CloudEvents id and type.
func message(topic, key, id string) *bus.Message {
	m := &bus.Message{Topic: topic, Key: []byte(key), Value: []byte(id)}
	m.SetHeader(bus.HeaderID, id)
	m.SetHeader(event.HeaderType, "bustest.v1.TestEvent")
	return m
}

// ref is where a test message stands in its key's sequence.
type ref struct {
	key string
	seq int
}

// interleaved makes keys×perKey messages, round by round (one message per
// key per round); rounds[i] is round i. Ids are "<key>/<seq>".
func interleaved(topic string, keys, perKey int) (rounds [][]*bus.Message, refs map[string]ref, order []string) {
	refs = map[string]ref{}
	for seq := range perKey {
		var round []*bus.Message
		for k := range keys {
			key := fmt.Sprintf("k%02d", k)
			id := fmt.Sprintf("%s/%03d", key, seq)
			round = append(round, message(topic, key, id))
			refs[id] = ref{key: key, seq: seq}
			order = append(order, id)
		}
		rounds = append(rounds, round)
	}
	return rounds, refs, order
}

// running is one subscriber's Run in the background.
type running struct {
	name   string
	grace  time.Duration
	cancel context.CancelFunc
	exited chan struct{}
	err    error // valid once exited is closed
}

// start runs a new subscriber of group on the fixture's topic with h. It is
// stopped, at the latest, when the test ends.
func (f *fixture) start(name, group string, grace time.Duration, h bus.Handler) *running {
	f.t.Helper()
	return f.startOn(f.topic, name, group, grace, h)
}

// startOn is start on another topic.
func (f *fixture) startOn(topic, name, group string, grace time.Duration, h bus.Handler) *running {
	f.t.Helper()
	sub := f.s.b.NewSubscriber(f.t, grace)
	if sub == nil {
		f.t.Fatal("backend returned a nil subscriber")
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{name: name, grace: grace, cancel: cancel, exited: make(chan struct{})}
	go func() {
		defer close(r.exited)
		r.err = sub.Run(ctx, group, []string{topic}, h)
	}()
	f.t.Cleanup(func() {
		r.cancel()
		select {
		case <-r.exited:
		case <-time.After(r.grace + f.timeout):
			f.t.Errorf("subscriber %s: Run did not return within %s of the end of the test", r.name, r.grace+f.timeout)
		}
	})
	return r
}

// stop cancels the subscriber's context and waits for Run to return, at
// most its grace plus the suite's timeout. Run must return nil (or the
// context's error).
func (f *fixture) stop(r *running) {
	f.t.Helper()
	r.cancel()
	limit := r.grace + f.timeout
	select {
	case <-r.exited:
	case <-time.After(limit):
		f.t.Fatalf("subscriber %s: Run did not return within %s of cancelling its context (grace %s)", r.name, limit, r.grace)
	}
	if r.err != nil && !errors.Is(r.err, context.Canceled) {
		f.t.Fatalf("subscriber %s: Run returned %v after its context was cancelled", r.name, r.err)
	}
}

// waitFor polls cond until it reports done, failing the test after the
// suite's timeout or as soon as one of the subscribers stops on its own.
// cond's progress text goes into the failure message.
func (f *fixture) waitFor(what string, cond func() (done bool, progress string), subs ...*running) {
	f.t.Helper()
	deadline := time.Now().Add(f.timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		done, progress := cond()
		if done {
			return
		}
		for _, r := range subs {
			select {
			case <-r.exited:
				f.t.Fatalf("waiting for %s: subscriber %s stopped on its own (Run returned %v); %s", what, r.name, r.err, progress)
			default:
			}
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out after %s waiting for %s; %s", f.timeout, what, progress)
		}
		<-tick.C
	}
}

// tally counts events per message id; safe for concurrent handlers.
type tally struct {
	mu sync.Mutex
	n  map[string]int
}

func newTally() *tally { return &tally{n: map[string]int{}} }

func (c *tally) add(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[id]++
	return c.n[id]
}

func (c *tally) get(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id]
}

// distinct is how many ids were counted at least once.
func (c *tally) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.n)
}

func (c *tally) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int, len(c.n))
	for k, v := range c.n {
		m[k] = v
	}
	return m
}

// idOf is the id the suite put in a message's value.
func idOf(m *bus.Message) string { return string(m.Value) }

// clone copies a consumed message, in case the backend reuses buffers.
func clone(m *bus.Message) *bus.Message {
	c := *m
	c.Key = append([]byte(nil), m.Key...)
	c.Value = append([]byte(nil), m.Value...)
	c.Headers = make([]bus.Header, len(m.Headers))
	for i, h := range m.Headers {
		c.Headers[i] = bus.Header{Key: h.Key, Value: append([]byte(nil), h.Value...)}
	}
	return &c
}

// fence proves that a group left nothing unacknowledged behind: a fresh
// subscriber of group is started, one fence message per key is published
// behind everything else, and once every fence came back the subscriber is
// stopped. Every other message it got was a redelivery: fence returns
// their ids, and counts them in seen as well. On a backend ordered by key
// a redelivery of key k comes before k's fence, so none can be missed.
func (f *fixture) fence(p bus.Publisher, group string, keys []string, seen *tally) []string {
	f.t.Helper()
	var (
		mu     sync.Mutex
		fences = map[string]bool{}
		extra  []string
	)
	r := f.start("fence", group, graceful, func(_ context.Context, m *bus.Message) error {
		id := idOf(m)
		mu.Lock()
		defer mu.Unlock()
		if strings.HasPrefix(id, "fence/") {
			fences[id] = true
			return nil
		}
		extra = append(extra, id)
		seen.add(id)
		return nil
	})
	msgs := make([]*bus.Message, len(keys))
	for i, k := range keys {
		msgs[i] = message(f.topic, k, "fence/"+k)
	}
	f.publish(p, msgs...)
	f.waitFor("the fence messages", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(fences) == len(keys), fmt.Sprintf("%d of %d fences back, %d redeliveries", len(fences), len(keys), len(extra))
	}, r)
	f.stop(r)
	mu.Lock()
	defer mu.Unlock()
	return append([]string(nil), extra...)
}
