package rabbitbus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/rabbitbus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/event"
)

func msg(topic, key, id string) *bus.Message {
	m := &bus.Message{Topic: topic, Key: []byte(key), Value: []byte(id)}
	m.SetHeader(event.HeaderID, id)
	return m
}

// collector records handled messages by value.
type collector struct {
	mu   sync.Mutex
	seen map[string]*bus.Message
	n    map[string]int
}

func newCollector() *collector {
	return &collector{seen: map[string]*bus.Message{}, n: map[string]int{}}
}

func (c *collector) add(m *bus.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[string(m.Value)] = m
	c.n[string(m.Value)]++
}

func (c *collector) has(ids ...string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if c.n[id] == 0 {
			return false
		}
	}
	return true
}

func (c *collector) get(id string) *bus.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[id]
}

func eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// run starts sub.Run in the background and stops it when the test ends.
func run(t *testing.T, sub bus.Subscriber, group string, topics []string, h bus.Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx, group, topics, h) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = errors.New("Run did not return within 30s")
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("subscriber: %v", err)
		}
	})
	return stop
}

func newPub(t *testing.T, url string, opts ...rabbitbus.Option) *rabbitbus.Publisher {
	t.Helper()
	p, err := rabbitbus.NewPublisher(append([]rabbitbus.Option{rabbitbus.URL(url), rabbitbus.Logger(quiet())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func newSub(t *testing.T, url string, opts ...rabbitbus.Option) *rabbitbus.Subscriber {
	t.Helper()
	s, err := rabbitbus.NewSubscriber(append([]rabbitbus.Option{rabbitbus.URL(url), rabbitbus.Logger(quiet()),
		rabbitbus.RetryBackoff(5*time.Millisecond, 20*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPing(t *testing.T) {
	url := serverURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rabbitbus.Ping(ctx, rabbitbus.URL(url)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	err := rabbitbus.Ping(ctx, rabbitbus.URL("amqp://guest:guest@127.0.0.1:1/"), rabbitbus.DialTimeout(time.Second))
	if err == nil || !strings.Contains(err.Error(), "check the URL") {
		t.Errorf("Ping of a closed port: %v", err)
	}
	bad := strings.Replace(url, "guest:guest@", "guest:wrong@", 1)
	err = rabbitbus.Ping(ctx, rabbitbus.URL(bad))
	if err == nil || strings.Contains(err.Error(), "wrong") {
		t.Errorf("Ping with a wrong password: %v (and the password must not show)", err)
	}
	t.Logf("wrong password: %v", err)
	if _, err := rabbitbus.NewSubscriber(); err == nil {
		t.Errorf("NewSubscriber without a URL: no error")
	}
}

// TestDeliveryLimitDeadLetters: with a delivery limit, a message that keeps
// failing is rejected and the broker dead-letters it to topic.dlq, where it
// arrives with herald_dlq_* headers next to a dead letter published by the
// consumer package's middleware; its key goes on.
func TestDeliveryLimitDeadLetters(t *testing.T) {
	url := serverURL(t)
	topic := "rabbitbus." + randomHex(t) + ".limit.v1"
	prepare(t, url, topic)
	pub := newPub(t, url)
	group := "limit-" + randomHex(t)

	dead := newCollector()
	run(t, newSub(t, url), "dlq-reader", []string{topic + ".dlq"}, func(_ context.Context, m *bus.Message) error {
		dead.add(m)
		return nil
	})
	var (
		mu       sync.Mutex
		attempts = map[string]int{}
	)
	good := newCollector()
	dlqPub := newPub(t, url)
	h := consumer.DeadLetter(dlqPub, group, ".dlq", quiet(), nil)(func(_ context.Context, m *bus.Message) error {
		id := string(m.Value)
		mu.Lock()
		attempts[id]++
		mu.Unlock()
		switch id {
		case "poison":
			return errors.New("always fails")
		case "permanent":
			return consumer.Permanent(errors.New("bad event"))
		}
		good.add(m)
		return nil
	})
	// The middleware dead-letters "permanent" itself; "poison" fails
	// (transient, so the middleware would retry forever) until the limit.
	inner := func(ctx context.Context, m *bus.Message) error {
		if string(m.Value) == "poison" {
			mu.Lock()
			attempts["poison"]++
			mu.Unlock()
			return errors.New("always fails")
		}
		return h(ctx, m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := rabbitbus.EnsureGroup(ctx, group, []string{topic}, rabbitbus.URL(url), rabbitbus.DeliveryLimit(3)); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, msg(topic, "k", "before"), msg(topic, "k", "poison"), msg(topic, "k", "permanent"), msg(topic, "k", "after")); err != nil {
		t.Fatal(err)
	}
	run(t, newSub(t, url, rabbitbus.DeliveryLimit(3)), group, []string{topic}, inner)
	eventually(t, "both dead letters and the good messages", 20*time.Second, func() bool {
		return dead.has("poison", "permanent") && good.has("before", "after")
	})
	mu.Lock()
	if attempts["poison"] != 3 {
		t.Errorf("poison attempted %d times, want 3", attempts["poison"])
	}
	mu.Unlock()
	for id, class := range map[string]string{"poison": consumer.ClassExhausted, "permanent": consumer.ClassPermanent} {
		d := dead.get(id)
		for k, want := range map[string]string{consumer.HeaderDLQTopic: topic, consumer.HeaderDLQGroup: group, consumer.HeaderDLQClass: class, event.HeaderID: id} {
			if v, _ := d.Header(k); v != want {
				t.Errorf("dead letter %s: %s = %q, want %q (headers %v)", id, k, v, want, d.Headers)
			}
		}
		if string(d.Key) != "k" || d.Topic != topic+".dlq" {
			t.Errorf("dead letter %s: key %q topic %q", id, d.Key, d.Topic)
		}
	}
}

// TestConflictingQueueArguments: Run fails at once, with a hint, when the
// group's queue exists with other arguments.
func TestConflictingQueueArguments(t *testing.T) {
	url := serverURL(t)
	topic := "rabbitbus." + randomHex(t) + ".conflict.v1"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := rabbitbus.EnsureGroup(ctx, "g", []string{topic}, rabbitbus.URL(url), rabbitbus.DeliveryLimit(5)); err != nil {
		t.Fatal(err)
	}
	err := newSub(t, url).Run(ctx, "g", []string{topic}, func(context.Context, *bus.Message) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "other arguments") {
		t.Fatalf("Run on a queue declared with another delivery limit: %v", err)
	}
}

// TestReconnect: the broker closes every connection twice while messages
// are published and consumed; publisher and subscriber reconnect, and
// every message arrives.
func TestReconnect(t *testing.T) {
	url := serverURL(t)
	rabbitmqctl(t, "list_connections", "name") // skips without the script's broker
	topic := "rabbitbus." + randomHex(t) + ".reconnect.v1"
	prepare(t, url, topic)
	reg := prometheus.NewRegistry()
	opts := []rabbitbus.Option{rabbitbus.Registerer(reg), rabbitbus.ReconnectBackoff(50*time.Millisecond, 500*time.Millisecond)}
	pub := newPub(t, url, opts...)
	got := newCollector()
	group := "reconnect-" + randomHex(t)
	run(t, newSub(t, url, opts...), group, []string{topic}, func(_ context.Context, m *bus.Message) error {
		time.Sleep(time.Millisecond)
		got.add(m)
		return nil
	})
	const total = 300
	var ids []string
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range total {
		id := fmt.Sprintf("m%03d", i)
		ids = append(ids, id)
		if err := pub.Publish(ctx, msg(topic, fmt.Sprintf("k%d", i%7), id)); err != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
		if i == total/3 || i == 2*total/3 {
			rabbitmqctl(t, "close_all_connections", "rabbitbus reconnect test")
		}
	}
	eventually(t, fmt.Sprintf("all %d messages after two forced disconnects", total), 60*time.Second, func() bool { return got.has(ids...) })
	for _, client := range []string{"publisher", "subscriber"} {
		if n := counter(t, reg, client, "reconnected"); n < 2 {
			t.Errorf("%s reconnected %v times, want at least 2", client, n)
		}
	}
}

func counter(t *testing.T, reg *prometheus.Registry, client, ev string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "herald_rabbitmq_connection_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["client"] == client && labels["event"] == ev {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
