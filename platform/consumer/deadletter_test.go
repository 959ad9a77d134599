package consumer_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
)

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
