package consumer_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
)

type recorder struct {
	mu   sync.Mutex
	msgs []*bus.Message
	err  error
}

func (r *recorder) Publish(_ context.Context, msgs ...*bus.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.msgs = append(r.msgs, msgs...)
	return nil
}
func (r *recorder) Capabilities() bus.Capabilities { return bus.Capabilities{} }
func (r *recorder) Close() error                   { return nil }

var msg = &bus.Message{Topic: "t", Key: []byte("k"), Value: []byte("v"), Partition: 2, Offset: 41}

func TestRecover(t *testing.T) {
	h := consumer.Recover()(func(context.Context, *bus.Message) error { panic("boom") })
	err := h(context.Background(), msg)
	if !consumer.IsPermanent(err) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err = %v, want a permanent error naming the panic", err)
	}
}

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
			h := consumer.Retry(4, time.Millisecond, 4*time.Millisecond, func(*bus.Message, int, error) { retries++ })(func(context.Context, *bus.Message) error {
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

func TestDeadLetter(t *testing.T) {
	rec := &recorder{}
	fail := func(err error) bus.Handler {
		return func(context.Context, *bus.Message) error { return err }
	}
	dl := consumer.DeadLetter(rec, "g", ".dlq", nopLogger(), nil)

	if err := dl(fail(nil))(context.Background(), msg); err != nil || len(rec.msgs) != 0 {
		t.Fatalf("success path: err %v, %d dead letters", err, len(rec.msgs))
	}
	err := dl(fail(&consumer.AttemptsError{Attempts: 3, Err: consumer.Permanent(errors.New("no such order"))}))(context.Background(), msg)
	if err != nil {
		t.Fatalf("dead-lettered message not acknowledged: %v", err)
	}
	if len(rec.msgs) != 1 {
		t.Fatalf("%d dead letters, want 1", len(rec.msgs))
	}
	d := rec.msgs[0]
	want := map[string]string{
		consumer.HeaderDLQTopic: "t", consumer.HeaderDLQPartition: "2", consumer.HeaderDLQOffset: "41",
		consumer.HeaderDLQGroup: "g", consumer.HeaderDLQClass: consumer.ClassPermanent, consumer.HeaderDLQAttempts: "3",
	}
	for k, v := range want {
		if got, _ := d.Header(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if reason, _ := d.Header(consumer.HeaderDLQError); !strings.Contains(reason, "no such order") {
		t.Errorf("reason = %q", reason)
	}
	if d.Topic != "t.dlq" || string(d.Value) != "v" || string(d.Key) != "k" {
		t.Errorf("dead letter = %s key %s value %s", d.Topic, d.Key, d.Value)
	}

	// Exhausted transient errors are dead-lettered with their own class.
	_ = dl(fail(&consumer.AttemptsError{Attempts: 5, Err: errors.New("timeout")}))(context.Background(), msg)
	if c, _ := rec.msgs[1].Header(consumer.HeaderDLQClass); c != consumer.ClassExhausted {
		t.Errorf("class = %q, want %q", c, consumer.ClassExhausted)
	}

	// If the dead-letter topic cannot be written, the message is not acknowledged.
	rec.err = errors.New("broker down")
	if err := dl(fail(consumer.Permanent(errors.New("x"))))(context.Background(), msg); err == nil {
		t.Fatal("a failed dead-letter publish acknowledged the message")
	}

	// Shutting down is not a reason to dead-letter.
	rec.err = nil
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	before := len(rec.msgs)
	if err := dl(fail(context.Canceled))(ctx, msg); err == nil || len(rec.msgs) != before {
		t.Fatalf("cancelled handler: err %v, %d new dead letters", err, len(rec.msgs)-before)
	}
}
