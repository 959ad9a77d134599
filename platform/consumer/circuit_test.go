package consumer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/fault"
	"github.com/herald-events/herald/platform/observe"
)

// syncBuffer is a log sink safe for concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// metricLine returns the exposition line of a series, "" when absent.
func metricLine(t *testing.T, m *observe.Metrics, series string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for line := range strings.SplitSeq(rec.Body.String(), "\n") {
		if strings.HasPrefix(line, series+" ") {
			return line
		}
	}
	return ""
}

func TestCircuit(t *testing.T) {
	down := fault.Transient("database", errors.New("connection refused"))
	cases := []struct {
		name      string
		errs      []error // one per call; nil afterwards
		cancelAt  int     // cancel the context during this call (0: never)
		wantCalls int
		wantErr   func(error) bool
	}{
		{"success", nil, 0, 1, func(err error) bool { return err == nil }},
		{"transient failures are retried until the dependency is back", []error{down, down, down, down}, 0, 5,
			func(err error) bool { return err == nil }},
		{"a network error is transient too", []error{fmt.Errorf("query: %w", &netErr{})}, 0, 2,
			func(err error) bool { return err == nil }},
		{"a permanent error passes at once", []error{consumer.Permanent(errors.New("bad"))}, 0, 1, consumer.IsPermanent},
		{"an unclassified error passes at once", []error{errors.New("odd")}, 0, 1,
			func(err error) bool { return err != nil && !fault.IsTransient(err) && !consumer.IsPermanent(err) }},
		{"shutdown returns the transient error", []error{down, down, down, down, down, down}, 3, 3, fault.IsTransient},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			calls := 0
			h := consumer.Circuit(consumer.CircuitPolicy{Group: "g", Floor: time.Millisecond, Ceil: 4 * time.Millisecond, Logger: nopLogger()})(
				func(context.Context, *bus.Message) error {
					calls++
					if calls == tc.cancelAt {
						cancel()
					}
					if calls <= len(tc.errs) {
						return tc.errs[calls-1]
					}
					return nil
				})
			err := h(ctx, msg)
			if calls != tc.wantCalls || !tc.wantErr(err) {
				t.Fatalf("calls = %d, err = %v; want %d calls", calls, err, tc.wantCalls)
			}
		})
	}
}

// TestCircuitRunsAConflictAgainAtOnce: a handler failing with a conflict
// (a deadlock the database broke) is called again at once, without pausing
// the group: the circuit stays closed and no backoff is waited. A conflict
// that persists past consumer.ConflictRetries opens the circuit as an
// outage would, and the message is still never given up.
func TestCircuitRunsAConflictAgainAtOnce(t *testing.T) {
	deadlock := fault.Conflict("database", errors.New("deadlock detected (SQLSTATE 40P01)"))
	for _, tc := range []struct {
		name      string
		conflicts int
		wantOpen  string
	}{
		{"conflicts within the retries", consumer.ConflictRetries, "0"},
		{"conflicts past the retries", consumer.ConflictRetries + 2, "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := observe.New()
			var logs syncBuffer
			// A floor of a minute: any wait of the circuit's would hold
			// the test far past its bound.
			h := consumer.Circuit(consumer.CircuitPolicy{Group: "g", Floor: time.Minute, Ceil: time.Minute, Metrics: m,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			calls := 0
			var opened string
			handler := h(func(context.Context, *bus.Message) error {
				calls++
				if calls == tc.conflicts+1 {
					opened = metricLine(t, m, `herald_consumer_circuit_transitions_total{group="g",state="open"}`) // before the success
				}
				if calls <= tc.conflicts {
					return deadlock
				}
				return nil
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- handler(ctx, msg) }()
			series := `herald_consumer_circuit_transitions_total{group="g",state="open"}`
			openLine := series + " "
			if tc.wantOpen == "1" {
				// It pauses (a minute's floor): wait for the pause,
				// then shut down.
				for deadline := time.Now().Add(10 * time.Second); metricLine(t, m, series) != openLine+"1"; {
					if time.Now().After(deadline) {
						t.Fatal("a conflict past the retries did not pause the group")
					}
					time.Sleep(5 * time.Millisecond)
				}
				cancel()
				err := <-done
				if calls != consumer.ConflictRetries+1 || !fault.IsConflict(err) || !strings.Contains(logs.String(), "consumer paused") {
					t.Fatalf("%d calls before the pause, err %v, logs %q; want %d, the conflict, the pause logged",
						calls, err, logs.String(), consumer.ConflictRetries+1)
				}
				return
			}
			select {
			case err := <-done:
				if err != nil || calls != tc.conflicts+1 || opened != openLine+"0" {
					t.Fatalf("err %v, %d calls, before the last %q; want nil, %d calls, never opened", err, calls, opened, tc.conflicts+1)
				}
				if strings.Contains(logs.String(), "consumer paused") {
					t.Fatalf("a conflict within the retries was logged as an outage: %s", logs.String())
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("the circuit held a conflict within the retries after %d calls", calls)
			}
		})
	}
}

type netErr struct{}

func (*netErr) Error() string   { return "i/o timeout" }
func (*netErr) Timeout() bool   { return true }
func (*netErr) Temporary() bool { return true }

// TestCircuitHoldsTheGroup: while the dependency is down, the group's
// deliveries wait and at most one calls the handler at a time; the first
// success releases them all. The state changes are logged and counted
// once each, however many attempts failed.
func TestCircuitHoldsTheGroup(t *testing.T) {
	var logs syncBuffer
	m := observe.New()
	mw := consumer.Circuit(consumer.CircuitPolicy{Group: "g", Floor: time.Millisecond, Ceil: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Metrics: m})
	if got := metricLine(t, m, `herald_consumer_circuit_open{group="g"}`); !strings.HasSuffix(got, " 0") {
		t.Fatalf("before any failure: %q, want the gauge at 0", got)
	}

	var up atomic.Bool
	var inFlight, maxInFlight, calls, downCalls atomic.Int32
	h := mw(func(context.Context, *bus.Message) error {
		calls.Add(1)
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			old := maxInFlight.Load()
			if n <= old || maxInFlight.CompareAndSwap(old, n) {
				break
			}
		}
		time.Sleep(200 * time.Microsecond)
		if !up.Load() {
			downCalls.Add(1)
			return fault.Transient("database", errors.New("connection refused"))
		}
		return nil
	})

	// The first delivery opens the circuit.
	first := make(chan error, 1)
	go func() { first <- h(context.Background(), msg) }()
	deadline := time.Now().Add(5 * time.Second)
	for metricLine(t, m, `herald_consumer_circuit_open{group="g"}`) != `herald_consumer_circuit_open{group="g"} 1` {
		if time.Now().After(deadline) {
			t.Fatal("the circuit did not open")
		}
		time.Sleep(time.Millisecond)
	}
	// Eight more deliveries arrive while it is open.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() { errs <- h(context.Background(), msg) })
	}
	time.Sleep(100 * time.Millisecond)
	if n := maxInFlight.Load(); n != 1 {
		t.Fatalf("%d calls at once while the circuit was open, want 1", n)
	}
	if n := downCalls.Load(); n > 100 {
		t.Fatalf("%d calls in 100ms against a dependency that is down: the backoff is not applied", n)
	}
	up.Store(true)
	wg.Wait()
	close(errs)
	if err := <-first; err != nil {
		t.Fatalf("first delivery: %v", err)
	}
	for err := range errs {
		if err != nil {
			t.Fatalf("delivery: %v", err)
		}
	}
	if got := metricLine(t, m, `herald_consumer_circuit_open{group="g"}`); !strings.HasSuffix(got, " 0") {
		t.Fatalf("after recovery: %q, want 0", got)
	}
	for _, state := range []string{"open", "closed"} {
		series := `herald_consumer_circuit_transitions_total{group="g",state="` + state + `"}`
		if got := metricLine(t, m, series); got != series+" 1" {
			t.Errorf("%q, want one transition to %s", got, state)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "level=WARN"); n != 1 || !strings.Contains(out, "dependency=database") {
		t.Errorf("want one Warn line naming the dependency, got:\n%s", out)
	}
	if n := strings.Count(out, "level=INFO"); n != 1 || !strings.Contains(out, "open_for=") {
		t.Errorf("want one Info line with the time open, got:\n%s", out)
	}
	if downCalls.Load() < 2 {
		t.Errorf("%d failed calls; the test did not exercise retries", downCalls.Load())
	}
}

// TestRouterPublishesItsCircuit: a router's circuit series exist, closed
// and with no transitions, as soon as the router is built.
func TestRouterPublishesItsCircuit(t *testing.T) {
	m := observe.New()
	if _, err := consumer.NewRouter(consumer.Config{Group: "ns.g", Namespace: "ns", Decoder: plainDecoder{}, DeadLetter: &recorder{},
		Metrics: m, Logger: nopLogger()}); err != nil {
		t.Fatal(err)
	}
	for series, want := range map[string]string{
		`herald_consumer_circuit_open{group="ns.g"}`:                             "0",
		`herald_consumer_circuit_transitions_total{group="ns.g",state="open"}`:   "0",
		`herald_consumer_circuit_transitions_total{group="ns.g",state="closed"}`: "0",
	} {
		if got := metricLine(t, m, series); got != series+" "+want {
			t.Errorf("%q, want %s %s", got, series, want)
		}
	}
}
