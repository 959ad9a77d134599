package natsbus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/natsbus"
)

// TestLongHandlerKeepsItsMessage: a handler that runs for several ack waits
// (a consumer waiting out a database outage) keeps its message: the
// subscriber tells the server it is in progress, so a second subscriber of
// the group never gets it meanwhile.
func TestLongHandlerKeepsItsMessage(t *testing.T) {
	tp := topics(t, "t")[0]
	fill(t, tp, 1, 1)
	const ackWait = time.Second
	var (
		mu    sync.Mutex
		calls = map[string]int{}
	)
	handler := func(name string, hold time.Duration) bus.Handler {
		return func(ctx context.Context, _ *bus.Message) error {
			mu.Lock()
			calls[name]++
			mu.Unlock()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(hold):
			}
			return nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := run(ctx, subscriber(t, natsbus.AckWait(ackWait)), "g", []string{tp}, handler("first", 4*ackWait))
	if !waitFor(10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return calls["first"] == 1 }) {
		t.Fatal("the first subscriber never got the message")
	}
	second := run(ctx, subscriber(t, natsbus.AckWait(ackWait)), "g", []string{tp}, handler("second", 0))
	time.Sleep(5 * ackWait) // past the handler's end and several ack waits
	cancel()
	<-first
	<-second
	mu.Lock()
	defer mu.Unlock()
	if calls["first"] != 1 || calls["second"] != 0 {
		t.Fatalf("deliveries: %v; want the message handled once, by the first subscriber", calls)
	}
}
