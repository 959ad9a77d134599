package consumer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
)

func TestRetry(t *testing.T) {
	transient := errors.New("db busy")
	cases := []struct {
		name      string
		failures  int
		err       error
		wantCalls int
		wantErr   bool
	}{
		{"succeeds first time", 0, transient, 1, false},
		{"succeeds after transient failures", 2, transient, 3, false},
		{"gives up after max attempts", 10, transient, 4, true},
		{"does not retry permanent errors", 10, consumer.Permanent(errors.New("bad")), 1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			calls, retries := 0, 0
			h := consumer.Retry(consumer.RetryPolicy{MaxAttempts: 4, Floor: time.Millisecond, Ceil: 4 * time.Millisecond}, func(*bus.Message, int, error) { retries++ })(func(context.Context, *bus.Message) error {
				calls++
				if calls <= tc.failures {
					return tc.err
				}
				return nil
			})
			err := h(context.Background(), msg)
			if calls != tc.wantCalls || (err != nil) != tc.wantErr {
				t.Fatalf("calls = %d, err = %v; want %d calls, error %v", calls, err, tc.wantCalls, tc.wantErr)
			}
			if retries != calls-1 {
				t.Fatalf("onRetry called %d times for %d calls", retries, calls)
			}
			var ae *consumer.AttemptsError
			if tc.wantErr && (!errors.As(err, &ae) || ae.Attempts != calls) {
				t.Fatalf("err = %v, want AttemptsError with %d attempts", err, calls)
			}
		})
	}
}

func TestRetryStopsAtMaxElapsed(t *testing.T) {
	calls := 0
	h := consumer.Retry(consumer.RetryPolicy{MaxAttempts: 1000, MaxElapsed: 50 * time.Millisecond, Floor: 10 * time.Millisecond, Ceil: 10 * time.Millisecond},
		nil)(func(context.Context, *bus.Message) error {
		calls++
		return errors.New("still down")
	})
	start := time.Now()
	err := h(context.Background(), msg)
	var ae *consumer.AttemptsError
	if !errors.As(err, &ae) || calls < 2 || calls > 10 {
		t.Fatalf("err = %v after %d calls; want the time bound to stop a 1000-attempt policy after a few", err, calls)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("retrying took %s with a 50ms bound", took)
	}
}
