package consumer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/fault"
	"github.com/herald-events/herald/platform/observe"
	"github.com/herald-events/herald/platform/schema"
)

// flakyDecoder fails its first calls with err, then decodes plain
// OrderCreated values.
type flakyDecoder struct {
	err   error
	fails int
}

func (d *flakyDecoder) Decode(topic string, b []byte) (proto.Message, error) {
	if d.fails > 0 {
		d.fails--
		return nil, d.err
	}
	return plainDecoder{}.Decode(topic, b)
}

// TestRouterFailureClasses: what the router does with each class of
// failure, end to end through its middleware.
func TestRouterFailureClasses(t *testing.T) {
	down := fault.Transient("database", errors.New("connection refused"))
	cases := []struct {
		name       string
		handlerErr []error // returned by successive calls, nil afterwards
		decoder    *flakyDecoder
		cancel     bool // the context ends during the first call
		wantCalls  int
		wantDead   string // dead-letter class, "" for none
		wantErr    bool   // the delivery is not acknowledged
		wantLevel  string // level of the dead-letter log line
	}{
		{name: "transient is retried past MaxAttempts, never dead-lettered",
			handlerErr: []error{down, down, down, down, down, down, down}, wantCalls: 8},
		{name: "permanent is dead-lettered at once", handlerErr: []error{consumer.Permanent(errors.New("no such order"))},
			wantCalls: 1, wantDead: consumer.ClassPermanent, wantLevel: "level=WARN"},
		{name: "unclassified is retried a few times, then dead-lettered at Error level",
			handlerErr: []error{errors.New("odd"), errors.New("odd"), errors.New("odd"), errors.New("odd")},
			wantCalls:  3, wantDead: consumer.ClassExhausted, wantLevel: "level=ERROR"},
		{name: "unclassified that recovers is not dead-lettered", handlerErr: []error{errors.New("odd")}, wantCalls: 2},
		{name: "an unreachable registry is transient", decoder: &flakyDecoder{err: errors.New("dial tcp: connection refused"), fails: 6},
			wantCalls: 1},
		{name: "an undecodable value is permanent", decoder: &flakyDecoder{err: fmt.Errorf("decode: %w", schema.ErrUndecodable), fails: 1},
			wantCalls: 0, wantDead: consumer.ClassPermanent, wantLevel: "level=WARN"},
		{name: "shutdown during an outage leaves the message for redelivery", handlerErr: []error{down, down},
			cancel: true, wantCalls: 1, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var logs bytes.Buffer
			rec := &recorder{}
			var dec consumer.Decoder = plainDecoder{}
			if tc.decoder != nil {
				dec = tc.decoder
			}
			r, err := consumer.NewRouter(consumer.Config{Group: "g", Decoder: dec, DeadLetter: rec, Metrics: observe.New(),
				Logger: slog.New(slog.NewTextHandler(&logs, nil)), MaxAttempts: 3,
				Backoff: time.Millisecond, MaxBackoff: time.Millisecond, CircuitBackoff: time.Millisecond, CircuitMaxBackoff: 2 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			calls := 0
			if err := consumer.Handle(r, func(context.Context, *consumer.Event, *ordersv1.OrderCreated) ([]proto.Message, error) {
				calls++
				if tc.cancel {
					cancel()
				}
				if calls <= len(tc.handlerErr) {
					return nil, tc.handlerErr[calls-1]
				}
				return nil, nil
			}); err != nil {
				t.Fatal(err)
			}
			value, _ := proto.Marshal(&ordersv1.OrderCreated{OrderId: "o-1"})
			m := &bus.Message{Topic: "herald.orders.v1", Value: value}
			m.SetHeader(event.HeaderID, "e-1")
			m.SetHeader(event.HeaderType, "herald.orders.v1.OrderCreated")
			err = r.Handler()(ctx, m)
			if (err != nil) != tc.wantErr || calls != tc.wantCalls {
				t.Fatalf("err = %v after %d calls; want error %v after %d calls", err, calls, tc.wantErr, tc.wantCalls)
			}
			if tc.wantDead == "" {
				if len(rec.msgs) != 0 {
					t.Fatalf("%d dead letters, want none", len(rec.msgs))
				}
				return
			}
			if len(rec.msgs) != 1 {
				t.Fatalf("%d dead letters, want 1", len(rec.msgs))
			}
			if class, _ := rec.msgs[0].Header(consumer.HeaderDLQClass); class != tc.wantDead {
				t.Fatalf("dead-letter class %q, want %q", class, tc.wantDead)
			}
			if line := logLine(logs.String(), "message dead-lettered"); !strings.Contains(line, tc.wantLevel) {
				t.Fatalf("dead-letter log line %q, want %s", line, tc.wantLevel)
			}
		})
	}
}

func logLine(logs, msg string) string {
	for line := range strings.SplitSeq(logs, "\n") {
		if strings.Contains(line, msg) {
			return line
		}
	}
	return ""
}
