package dlq_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/kafkabus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/dlq"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/inbox"
	"github.com/herald-events/herald/platform/sqldb"
)

// plainDecoder reads values as plain protobuf OrderCreated messages; the
// Confluent framing is covered elsewhere.
type plainDecoder struct{}

func (plainDecoder) Decode(_ string, b []byte) (proto.Message, error) {
	m := &ordersv1.OrderCreated{}
	return m, proto.Unmarshal(b, m)
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReplayAppliesOnce: a handler fails permanently (its dependency is
// broken), the message is dead-lettered; once fixed, replaying it applies
// the effect, and replaying it again changes nothing.
func TestReplayAppliesOnce(t *testing.T) {
	const topic = "herald.orders.v1"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic, bus.DeadLetterTopic(topic)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seeds := c.ListenAddrs()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	db, err := sqldb.OpenSQLite(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, "t", append(inbox.Migrations(db.Dialect()), sqldb.Migration{ID: "fx",
		SQL: []string{`CREATE TABLE effects (order_id TEXT NOT NULL)`}})); err != nil {
		t.Fatal(err)
	}
	effects := func() int {
		var n int
		_ = db.QueryRowContext(ctx, `SELECT COUNT(*) FROM effects`).Scan(&n)
		return n
	}

	pub, err := kafkabus.NewPublisher(kafkabus.Seeds(seeds...), kafkabus.Logger(log))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var broken atomic.Bool
	broken.Store(true)
	router, err := consumer.NewRouter(consumer.Config{Group: "g", Decoder: plainDecoder{}, DeadLetter: pub, Logger: log,
		Backoff: time.Millisecond, MaxBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	err = consumer.Handle(router, func(ctx context.Context, ev *consumer.Event, m *ordersv1.OrderCreated) ([]proto.Message, error) {
		if broken.Load() {
			return nil, consumer.Permanent(errors.New("pricing table missing"))
		}
		return nil, db.InTx(ctx, func(tx *sqldb.Tx) error {
			fresh, err := inbox.Claim(ctx, tx, ev.ID, ev.Type)
			if err != nil || !fresh {
				return err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO effects (order_id) VALUES (?)`, m.GetOrderId())
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := kafkabus.NewSubscriber(kafkabus.Seeds(seeds...), kafkabus.Logger(log))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = router.Run(ctx, sub) }()

	value, _ := proto.Marshal(&ordersv1.OrderCreated{OrderId: "o-1"})
	msg := &bus.Message{Topic: topic, Key: []byte("o-1"), Value: value}
	msg.SetHeader(event.HeaderID, "ev-1")
	msg.SetHeader(event.HeaderType, "herald.orders.v1.OrderCreated")
	if err := pub.Publish(ctx, msg); err != nil {
		t.Fatal(err)
	}

	var dead []*bus.Message
	waitFor(t, func() bool {
		dead, err = dlq.Read(ctx, seeds, nil, bus.DeadLetterTopic(topic))
		return err == nil && len(dead) == 1
	}, "the dead letter")
	if c, _ := dead[0].Header(consumer.HeaderDLQClass); c != consumer.ClassPermanent {
		t.Fatalf("class = %q", c)
	}
	if dead[0].ID != "ev-1" {
		t.Fatalf("dead letter ID = %q, want the original's ce_id ev-1", dead[0].ID)
	}
	sum := dlq.Summarize(bus.DeadLetterTopic(topic), dead)
	if sum.Count != 1 || len(sum.Newest) != 1 || !strings.HasPrefix(sum.Newest[0], "permanent: ") ||
		!strings.Contains(sum.Newest[0], "pricing table missing") {
		t.Fatalf("summary = %+v", sum)
	}
	if effects() != 0 {
		t.Fatal("a failed message had an effect")
	}

	broken.Store(false)
	if n, err := dlq.Replay(ctx, pub, dead, dlq.Filter{Class: "retries_exhausted"}); err != nil || n != 0 {
		t.Fatalf("replay with a class that matches nothing = %d, %v", n, err)
	}
	for i := range 2 {
		n, err := dlq.Replay(ctx, pub, dead, dlq.Filter{ID: "ev-1"})
		if err != nil || n != 1 {
			t.Fatalf("replay %d = %d, %v", i+1, n, err)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	waitFor(t, func() bool { return effects() == 1 }, "the replayed effect")
	time.Sleep(500 * time.Millisecond)
	if got := effects(); got != 1 {
		t.Fatalf("%d effects after two replays, want 1", got)
	}
	replayed, err := dlq.Read(ctx, seeds, nil, topic)
	if err != nil || len(replayed) != 3 {
		t.Fatalf("topic holds %d messages, %v; want the original and two replays", len(replayed), err)
	}
	if from, _ := replayed[2].Header(dlq.HeaderReplayedFrom); from == "" {
		t.Fatal("replayed message lacks its origin header")
	}
	if _, has := replayed[2].Header(consumer.HeaderDLQError); has {
		t.Fatal("replayed message still carries dead-letter headers")
	}
	topics, err := dlq.Topics(ctx, cl, "")
	if err != nil || len(topics) != 1 || topics[0] != bus.DeadLetterTopic(topic) {
		t.Fatalf("Topics = %v, %v", topics, err)
	}
}
