package natsbus_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/natsbus"
	"github.com/herald-events/herald/platform/event"
)

func TestNames(t *testing.T) {
	for in, want := range map[string]string{
		"herald.orders.v1":     "herald_orders_v1",
		"ns1.herald.orders.v1": "ns1_herald_orders_v1",
		"a b/c\\d*e>f":         "a_b_c_d_e_f",
	} {
		if got := natsbus.StreamName(in); got != want {
			t.Errorf("StreamName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := natsbus.ConsumerName("herald-orders"); got != "herald-orders" {
		t.Errorf("ConsumerName kept nothing: %q", got)
	}
	a, b := natsbus.ConsumerName("ns1.g"), natsbus.ConsumerName("ns1_g")
	if a == b || !strings.HasPrefix(a, "ns1_g_") || strings.ContainsAny(a, ".*> ") {
		t.Errorf("ConsumerName(ns1.g) = %q, ConsumerName(ns1_g) = %q: want distinct valid names", a, b)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := natsbus.NewSubscriber(); err == nil || !strings.Contains(err.Error(), "no server URL") {
		t.Errorf("no URL: %v", err)
	}
	if _, err := natsbus.NewSubscriber(natsbus.URL("nats://127.0.0.1:1"), natsbus.AckWait(time.Millisecond)); err == nil {
		t.Error("ack wait of 1ms accepted")
	}
}

func TestPingUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nobody listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err = natsbus.Ping(ctx, natsbus.URL("nats://"+addr), natsbus.Logger(quiet()))
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Ping of a closed port: %v", err)
	}
}

func TestPing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := natsbus.Ping(ctx, natsbus.URL(serverURL(t)), natsbus.Logger(quiet())); err != nil {
		t.Fatal(err)
	}
}

func TestEnsureStreams(t *testing.T) {
	j := js(t)
	tps := topics(t, "orders.v1")
	ctx := context.Background()
	for _, tp := range []string{tps[0], tps[0] + ".dlq"} {
		s, err := j.Stream(ctx, natsbus.StreamName(tp))
		if err != nil {
			t.Fatalf("stream for %s: %v", tp, err)
		}
		c := s.CachedInfo().Config
		if c.Storage != jetstream.FileStorage || c.Duplicates != 2*time.Minute || len(c.Subjects) != 1 || c.Subjects[0] != tp {
			t.Errorf("stream %s: %+v", c.Name, c)
		}
	}
	// Idempotent, also when the .dlq topic is passed explicitly.
	if err := natsbus.EnsureStreams(ctx, j, tps[0], tps[0]+".dlq"); err != nil {
		t.Fatal(err)
	}
	// Through the option-based form, with other limits: left alone.
	if err := natsbus.EnsureTopics(ctx, tps, natsbus.URL(serverURL(t)), natsbus.Logger(quiet()),
		natsbus.Streams(natsbus.StreamLimits{MaxAge: time.Hour, Duplicates: time.Minute})); err != nil {
		t.Fatal(err)
	}
	// Two topics that sanitize to the same stream name collide clearly.
	other := strings.Replace(tps[0], "orders.v1", "orders_v1", 1)
	err := natsbus.EnsureStreams(ctx, j, other)
	if err == nil || !strings.Contains(err.Error(), "exists for subjects") {
		t.Fatalf("colliding topic %s: %v", other, err)
	}
	if err := natsbus.EnsureStreams(ctx, j, "bad..topic"); err == nil {
		t.Fatal("invalid topic accepted")
	}
}

func TestPublishWithoutStream(t *testing.T) {
	p := publisher(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.Publish(ctx, &bus.Message{Topic: namespace(t) + ".nostream", Value: []byte("x")})
	if err == nil || !strings.Contains(err.Error(), "EnsureStreams") {
		t.Fatalf("publish without a stream: %v", err)
	}
}

func TestPublishRejectsReservedHeaders(t *testing.T) {
	tp := topics(t, "h")[0]
	p := publisher(t)
	for _, h := range []bus.Header{{Key: "Nats-Msg-Id", Value: []byte("1")}, {Key: natsbus.EncodedHeaderPrefix + "x", Value: []byte("1")},
		{Key: natsbus.KeyHeader, Value: []byte("k")}, {Key: "a:b", Value: []byte("v")}, {Key: "a b", Value: []byte("v")}} {
		err := p.Publish(context.Background(), &bus.Message{Topic: tp, Headers: []bus.Header{h}})
		if err == nil {
			t.Errorf("header %q=%q accepted", h.Key, h.Value)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(context.Background(), &bus.Message{Topic: tp}); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("publish after close: %v", err)
	}
}

// TestRoundTrip: topic, key (text and binary), value and headers come back
// as published, with the stream sequence and time; a repeated ce_id is
// stored once.
func TestRoundTrip(t *testing.T) {
	tp := topics(t, "rt")[0]
	p := publisher(t)
	if c := p.Capabilities(); c.AtomicBatches || c.Partitions {
		t.Fatalf("capabilities %+v", c)
	}
	m1 := &bus.Message{Topic: tp, Key: []byte("order-1"), Value: []byte("v1")}
	m1.SetHeader(event.HeaderID, "id-1")
	m1.SetHeader(event.HeaderType, "herald.orders.v1.OrderCreated")
	m1.SetHeader("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	m2 := &bus.Message{Topic: tp, Key: []byte{0, ' ', '\n', 0xff}, Value: nil}
	m2.SetHeader(event.HeaderID, "id-2")
	m2.SetHeader("stack", "handler panic: boom\ngoroutine 1 [running]:\n\tmain.go:1 ")
	m2.SetHeader("empty", "")
	m2.Headers = append(m2.Headers, bus.Header{Key: "multi", Value: []byte("1")}, bus.Header{Key: "multi", Value: []byte(" 2")})
	dup := &bus.Message{Topic: tp, Key: []byte("order-1"), Value: []byte("v1 again")}
	dup.SetHeader(event.HeaderID, "id-1")
	// The same id given as Message.ID only is a duplicate too.
	dupByID := &bus.Message{Topic: tp, Key: []byte("order-2"), Value: []byte("v2 again"), ID: "id-2"}
	before := time.Now().Add(-time.Second)
	if err := p.Publish(context.Background(), m1, m2, dup, dupByID); err != nil {
		t.Fatal(err)
	}

	var (
		mu  sync.Mutex
		got []*bus.Message
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := run(ctx, subscriber(t), "rt", []string{tp}, func(_ context.Context, m *bus.Message) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m)
		return nil
	})
	waitFor(10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= 2 })
	time.Sleep(300 * time.Millisecond) // a stored duplicate would show up now
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("consumed %d messages, want 2 (the duplicate ce_id dropped)", len(got))
	}
	byID := map[string]*bus.Message{}
	for _, m := range got {
		id, _ := m.Header(event.HeaderID)
		byID[id] = m
	}
	for _, want := range []*bus.Message{m1, m2} {
		id, _ := want.Header(event.HeaderID)
		m := byID[id]
		if m == nil {
			t.Fatalf("message %s not consumed", id)
		}
		if m.Topic != tp || !bytes.Equal(m.Key, want.Key) || !bytes.Equal(m.Value, want.Value) {
			t.Errorf("%s: got topic %s key %q value %q", id, m.Topic, m.Key, m.Value)
		}
		if m.ID != id {
			t.Errorf("%s: consumed ID %q", id, m.ID)
		}
		if len(m.Headers) != len(want.Headers) {
			t.Errorf("%s: headers %v, want %v", id, m.Headers, want.Headers)
		}
		for _, h := range want.Headers {
			if !slices.ContainsFunc(m.Headers, func(g bus.Header) bool { return g.Key == h.Key && bytes.Equal(g.Value, h.Value) }) {
				t.Errorf("%s: header %s = %q missing; got %v", id, h.Key, h.Value, m.Headers)
			}
		}
		if m.Offset < 1 || m.Timestamp.Before(before) || m.Timestamp.After(time.Now()) {
			t.Errorf("%s: offset %d timestamp %v", id, m.Offset, m.Timestamp)
		}
	}
}

// TestKeysInOrderAndConcurrent: messages of one key arrive in order, and
// different keys are handled at the same time, at most KeyConcurrency.
func TestKeysInOrderAndConcurrent(t *testing.T) {
	tp := topics(t, "t")[0]
	fill(t, tp, 8, 25)
	var (
		mu       sync.Mutex
		last     = map[string]int{}
		inflight atomic.Int32
		peak     atomic.Int32
		total    atomic.Int32
		bad      []string
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := run(ctx, subscriber(t, natsbus.KeyConcurrency(4), natsbus.FetchBatch(50)), "g", []string{tp}, func(_ context.Context, m *bus.Message) error {
		n := inflight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(2 * time.Millisecond)
		var v int
		fmt.Sscanf(string(m.Value), "%d", &v)
		mu.Lock()
		if prev, ok := last[string(m.Key)]; ok && v != prev+1 {
			bad = append(bad, fmt.Sprintf("%s: %d after %d", m.Key, v, prev))
		} else if !ok && v != 0 {
			bad = append(bad, fmt.Sprintf("%s: starts at %d", m.Key, v))
		}
		last[string(m.Key)] = v
		mu.Unlock()
		inflight.Add(-1)
		total.Add(1)
		return nil
	})
	waitFor(20*time.Second, func() bool { return total.Load() >= 200 })
	time.Sleep(200 * time.Millisecond)
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

// TestFailingMessageIsRedelivered: a handler error holds the message (and
// its key) back and delivers it again until it succeeds.
func TestFailingMessageIsRedelivered(t *testing.T) {
	tp := topics(t, "t")[0]
	fill(t, tp, 1, 3)
	var (
		mu       sync.Mutex
		attempts = map[string]int{}
		seen     []string
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := run(ctx, subscriber(t, natsbus.RetryBackoff(time.Millisecond, 5*time.Millisecond)), "g", []string{tp},
		func(_ context.Context, m *bus.Message) error {
			mu.Lock()
			defer mu.Unlock()
			attempts[string(m.Value)]++
			if string(m.Value) == "1" && attempts["1"] < 3 {
				return fmt.Errorf("transient")
			}
			seen = append(seen, string(m.Value))
			return nil
		})
	waitFor(10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 3 })
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(seen) != "[0 1 2]" || attempts["1"] != 3 {
		t.Fatalf("handled %v with %d attempts of message 1; want [0 1 2] and 3", seen, attempts["1"])
	}
}

// TestShutdownMidBatchLosesAndRepeatsNothing cancels a subscriber while it
// holds messages; within the grace it finishes and acks them, and a second
// subscriber of the group picks up the rest. Every message is handled
// exactly once.
func TestShutdownMidBatchLosesAndRepeatsNothing(t *testing.T) {
	tp := topics(t, "t")[0]
	fill(t, tp, 5, 60)
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
	sub := func() *natsbus.Subscriber {
		return subscriber(t, natsbus.FetchBatch(100), natsbus.ShutdownGrace(10*time.Second))
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	started := make(chan struct{})
	done1 := run(ctx1, sub(), "g", []string{tp}, handler(started))
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("first subscriber handled nothing")
	}
	cancel1()
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
	done2 := run(ctx2, sub(), "g", []string{tp}, handler(make(chan struct{})))
	waitFor(20*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(count) >= 300 })
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

// TestShutdownPastGraceHandsBackInOrder: what a subscriber could not finish
// within the grace is nak'd, so a successor gets it long before the ack
// wait, first, and in stream order per key.
func TestShutdownPastGraceHandsBackInOrder(t *testing.T) {
	tp := topics(t, "t")[0]
	fill(t, tp, 3, 10)
	opts := []natsbus.Option{natsbus.AckWait(time.Minute), natsbus.ShutdownGrace(100 * time.Millisecond), natsbus.KeyConcurrency(3)}

	var handled1 atomic.Int32
	ctx1, cancel1 := context.WithCancel(context.Background())
	block := make(chan struct{})
	done1 := run(ctx1, subscriber(t, opts...), "g", []string{tp}, func(ctx context.Context, m *bus.Message) error {
		if handled1.Add(1) > 2 {
			select { // hang past the grace
			case <-block:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	if !waitFor(10*time.Second, func() bool { return handled1.Load() >= 5 }) {
		t.Fatal("first subscriber did not get going")
	}
	cancel1()
	if err := <-done1; err != nil {
		t.Fatal(err)
	}
	close(block)

	var (
		mu   sync.Mutex
		last = map[string]int{}
		n    int
		bad  []string
	)
	begin := time.Now()
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := run(ctx2, subscriber(t, opts...), "g", []string{tp}, func(_ context.Context, m *bus.Message) error {
		var v int
		fmt.Sscanf(string(m.Value), "%d", &v)
		mu.Lock()
		defer mu.Unlock()
		if prev, ok := last[string(m.Key)]; ok && v != prev+1 {
			bad = append(bad, fmt.Sprintf("%s: %d after %d", m.Key, v, prev))
		}
		last[string(m.Key)] = v
		n++
		return nil
	})
	// 30 messages minus the 2 the first subscriber finished.
	ok := waitFor(10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return n >= 28 })
	took := time.Since(begin)
	cancel2()
	<-done2
	mu.Lock()
	defer mu.Unlock()
	if !ok {
		t.Fatalf("successor handled %d of 28 within 10s (ack wait 1m): the unfinished messages were not handed back", n)
	}
	if len(bad) > 0 {
		t.Fatalf("successor saw keys out of order: %v", bad)
	}
	t.Logf("successor finished in %s", took)
}

// TestConsumerLagAndMultipleTopics: one Run consumes several topics with
// one durable consumer each.
func TestMultipleTopics(t *testing.T) {
	tps := topics(t, "a", "b")
	fill(t, tps[0], 2, 5)
	fill(t, tps[1], 2, 5)
	var (
		mu  sync.Mutex
		got = map[string]int{}
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := run(ctx, subscriber(t), "ns.g", tps, func(_ context.Context, m *bus.Message) error {
		mu.Lock()
		defer mu.Unlock()
		got[m.Topic]++
		return nil
	})
	waitFor(10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return got[tps[0]] == 10 && got[tps[1]] == 10 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got[tps[0]] != 10 || got[tps[1]] != 10 {
		t.Fatalf("got %v, want 10 per topic", got)
	}
	j := js(t)
	if _, err := j.Consumer(context.Background(), natsbus.StreamName(tps[0]), natsbus.ConsumerName("ns.g")); err != nil {
		t.Fatalf("durable consumer: %v", err)
	}
}

func TestRunWithoutStream(t *testing.T) {
	err := subscriber(t).Run(context.Background(), "g", []string{namespace(t) + ".nostream"}, func(context.Context, *bus.Message) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "EnsureStreams") {
		t.Fatalf("Run on a topic without a stream: %v", err)
	}
}

// proxy forwards TCP connections to target until cut is called, which
// closes every connection open at that moment.
type proxy struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l}
	t.Cleanup(func() { l.Close(); p.cut() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = ioCopy(s, c); s.Close(); c.Close() }()
			go func() { _, _ = ioCopy(c, s); s.Close(); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestReconnectIsCountedAndTransparent cuts the connections of a publisher
// and a subscriber; both reconnect, the counter shows it, and nothing is
// lost.
func TestReconnectIsCountedAndTransparent(t *testing.T) {
	tp := topics(t, "t")[0]
	target := strings.TrimPrefix(serverURL(t), "nats://")
	px := newProxy(t, target)
	url := "nats://" + px.l.Addr().String()
	reg := prometheus.NewRegistry()
	opts := []natsbus.Option{natsbus.URL(url), natsbus.Logger(quiet()), natsbus.Registerer(reg),
		natsbus.ReconnectBackoff(10*time.Millisecond, 50*time.Millisecond)}
	p, err := natsbus.NewPublisher(opts...)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := natsbus.NewSubscriber(append(opts, natsbus.FetchWait(200*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		got = map[string]bool{}
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := run(ctx, sub, "g", []string{tp}, func(_ context.Context, m *bus.Message) error {
		mu.Lock()
		defer mu.Unlock()
		got[string(m.Value)] = true
		return nil
	})
	publish := func(i int) {
		t.Helper()
		m := &bus.Message{Topic: tp, Key: []byte("k"), Value: fmt.Appendf(nil, "%d", i)}
		m.SetHeader(event.HeaderID, fmt.Sprint(i))
		pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer pcancel()
		if err := p.Publish(pctx, m); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	for i := range 5 {
		publish(i)
	}
	waitFor(10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 5 })
	px.cut()
	ev := func(client, event string) float64 {
		var m dto.Metric
		if err := mustVec(t, reg).WithLabelValues(client, event).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	if !waitFor(10*time.Second, func() bool {
		return ev("publisher", "reconnected") >= 1 && ev("subscriber", "reconnected") >= 1
	}) {
		t.Fatalf("reconnects not counted: publisher %v, subscriber %v", ev("publisher", "reconnected"), ev("subscriber", "reconnected"))
	}
	for i := 5; i < 10; i++ {
		publish(i)
	}
	if !waitFor(15*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 10 }) {
		t.Fatalf("after the reconnect the subscriber got %d of 10", len(got))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	p.Close()
	if d := ev("publisher", "disconnected"); d < 1 {
		t.Errorf("publisher disconnects counted: %v", d)
	}
	if !waitFor(2*time.Second, func() bool { return ev("publisher", "closed") == 1 && ev("subscriber", "closed") == 1 }) {
		t.Errorf("closes counted: publisher %v, subscriber %v", ev("publisher", "closed"), ev("subscriber", "closed"))
	}
}

// mustVec finds the connection event counter in reg by registering an
// identical one.
func mustVec(t *testing.T, reg *prometheus.Registry) *prometheus.CounterVec {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_nats_connection_events_total",
		Help: "NATS connection state changes, by client (publisher, subscriber, admin) and event (disconnected, reconnected, closed, error).",
	}, []string{"client", "event"})
	err := reg.Register(vec)
	var dup prometheus.AlreadyRegisteredError
	if !errors.As(err, &dup) {
		t.Fatalf("counter not registered: %v", err)
	}
	return dup.ExistingCollector.(*prometheus.CounterVec)
}

// TestPingWithoutJetStream starts a nats-server without -js (when one is
// installed) and checks that Ping says what is wrong.
func TestPingWithoutJetStream(t *testing.T) {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Skip("nats-server not on PATH")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", port)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if !waitFor(10*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatal("nats-server without JetStream did not start")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = natsbus.Ping(ctx, natsbus.URL("nats://"+addr), natsbus.Logger(quiet()))
	if err == nil || !strings.Contains(err.Error(), "JetStream is not enabled") {
		t.Fatalf("Ping of a server without JetStream: %v", err)
	}
	t.Log(err)
}
