package outbox_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/fault"
	"github.com/herald-events/herald/platform/outbox"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
)

// flakyPublisher fails its first calls with err, then records.
type flakyPublisher struct {
	recorder
	err   error
	fails int
}

func (f *flakyPublisher) Publish(ctx context.Context, msgs ...*bus.Message) error {
	f.mu.Lock()
	if f.fails > 0 {
		f.fails--
		f.mu.Unlock()
		return f.err
	}
	f.mu.Unlock()
	return f.recorder.Publish(ctx, msgs...)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestFailingRelayLogsStateChanges: a relay that fails several rounds in a
// row logs once when it starts failing and once when it recovers, with
// the attempts in between at Debug level only; the event is still
// published.
func TestFailingRelayLogsStateChanges(t *testing.T) {
	cases := []struct {
		name  string
		err   error
		level string
	}{
		{"transient", fault.Transient("kafka", errors.New("connection refused")), "level=WARN"},
		{"unclassified", errors.New("odd"), "level=ERROR"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
				pub := &flakyPublisher{recorder: recorder{atomic: true}, err: tc.err, fails: 4}
				setup(t, db, pub, 0)
				var logs lockedBuffer
				ob, err := outbox.New(outbox.Config{DB: db, Service: "test", Source: "test", Publisher: pub, Encoder: plainEncoder{},
					Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
				if err != nil {
					t.Fatal(err)
				}
				ctx := context.Background()
				if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
					_, err := ob.Add(ctx, tx, &ordersv1.OrderCreated{OrderId: "x"})
					return err
				}); err != nil {
					t.Fatal(err)
				}
				runRelay(t, ob)
				waitFor(t, func() bool { return len(pub.got()) == 1 }, "the event after the failures")
				waitFor(t, func() bool { return strings.Contains(logs.String(), "outbox relay recovered") }, "the recovery line")
				out := logs.String()
				if n := strings.Count(out, "outbox relay failing"); n != 1 || !strings.Contains(logLine(out, "outbox relay failing"), tc.level) {
					t.Errorf("want one %s line when the relay starts failing, got:\n%s", tc.level, out)
				}
				if n := strings.Count(out, "outbox relay still failing"); n != 3 || strings.Count(out, "level=DEBUG msg=\"outbox relay still failing") != 3 {
					t.Errorf("want 3 Debug lines for the later attempts, got:\n%s", out)
				}
				if n := strings.Count(out, "outbox relay recovered"); n != 1 || !strings.Contains(out, "failed_for=") {
					t.Errorf("want one recovery line with the duration, got:\n%s", out)
				}
			})
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
