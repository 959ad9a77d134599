package server_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/event"
)

func isType(typ string) func(*kgo.Record) bool {
	return func(r *kgo.Record) bool { return header(r, event.HeaderType) == typ }
}

func keyed(typ, key string) func(*kgo.Record) bool {
	return func(r *kgo.Record) bool { return header(r, event.HeaderType) == typ && string(r.Key) == key }
}

func TestCreateOrderIdempotent(t *testing.T) {
	s := startProcess(t, t.TempDir(), nil)
	s.setStock(t, "APPLE", 10)
	req := &ordersv1.CreateOrderRequest{RequestId: "req-1", CustomerId: "alice", Items: []*ordersv1.LineItem{item("APPLE", 2)}}

	first := s.create(t, req)
	second := s.create(t, req)
	if first.GetOrderId() != second.GetOrderId() {
		t.Fatalf("same request_id gave orders %s and %s", first.GetOrderId(), second.GetOrderId())
	}
	s.waitStatus(t, first.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)
	third := s.create(t, req)
	if third.GetOrderId() != first.GetOrderId() || third.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED {
		t.Fatalf("replay after confirmation = %s %s, want the first order, CONFIRMED", third.GetOrderId(), third.GetStatus())
	}

	changed := &ordersv1.CreateOrderRequest{RequestId: "req-1", CustomerId: "alice", Items: []*ordersv1.LineItem{item("APPLE", 3)}}
	_, err := s.orders.CreateOrder(callCtx(t), changed)
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("same request_id, different body: %v, want AlreadyExists", err)
	}

	// The same request sent 16 times at once: the calls share
	// transactions (group commit), and still one order is stored.
	again := &ordersv1.CreateOrderRequest{RequestId: "req-2", CustomerId: "alice", Items: []*ordersv1.LineItem{item("APPLE", 1)}}
	ids := make([]string, 16)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() { ids[i] = s.create(t, again).GetOrderId() })
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("one request_id sent concurrently gave orders %v", ids)
		}
	}
	s.waitStatus(t, ids[0], ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)

	if got := s.stock(t, "APPLE"); got != 7 {
		t.Fatalf("APPLE stock = %d, want 7 (one deduction per request_id)", got)
	}
	for _, id := range []string{first.GetOrderId(), ids[0]} {
		created := s.read(t, "herald.orders.v1", keyed("herald.orders.v1.OrderCreated", id))
		if len(created) != 1 {
			t.Fatalf("%d OrderCreated events for idempotent order %s, want 1", len(created), id)
		}
	}
}

// TestDuplicateDeliveryDeductsOnce publishes an OrderCreated record a second
// time, byte for byte, as a redelivery would; inventory must not deduct
// twice nor answer twice.
func TestDuplicateDeliveryDeductsOnce(t *testing.T) {
	s := startProcess(t, t.TempDir(), nil)
	s.setStock(t, "APPLE", 10)
	o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "alice", Items: []*ordersv1.LineItem{item("APPLE", 4)}})
	s.waitStatus(t, o.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)

	recs := s.read(t, "herald.orders.v1", keyed("herald.orders.v1.OrderCreated", o.GetOrderId()))
	if len(recs) != 1 {
		t.Fatalf("found %d OrderCreated records, want 1", len(recs))
	}
	orig := recs[0]
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.proc.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	dup := &kgo.Record{Topic: orig.Topic, Key: orig.Key, Value: orig.Value, Headers: orig.Headers}
	var dupRes *kgo.Record
	for range 2 { // redelivered twice
		res, err := cl.ProduceSync(callCtx(t), &kgo.Record{Topic: dup.Topic, Key: dup.Key, Value: dup.Value, Headers: dup.Headers}).First()
		if err != nil {
			t.Fatalf("republish: %v", err)
		}
		dupRes = res
	}
	waitCommitted(t, cl, s.group("herald-inventory"), dupRes)

	if got := s.stock(t, "APPLE"); got != 6 {
		t.Fatalf("APPLE stock = %d after a redelivered OrderCreated, want 6", got)
	}
	answers := s.read(t, "herald.inventory.v1", keyed("herald.inventory.v1.InventoryDeducted", o.GetOrderId()))
	if len(answers) != 1 {
		t.Fatalf("%d InventoryDeducted for one order, want 1", len(answers))
	}
}

// waitCommitted waits until group has committed past rec.
func waitCommitted(t *testing.T, cl *kgo.Client, group string, rec *kgo.Record) {
	t.Helper()
	adm := kadm.NewClient(cl)
	eventually(t, 20*time.Second, func() bool {
		offs, err := adm.FetchOffsets(context.Background(), group)
		if err != nil {
			return false
		}
		o, ok := offs.Lookup(rec.Topic, rec.Partition)
		return ok && o.At > rec.Offset
	}, "group %s to commit past %s/%d@%d", group, rec.Topic, rec.Partition, rec.Offset)
}

// TestRelayCrashBetweenPublishAndMark stops the process right after the
// orders relay published a batch and before it marked the rows sent, then
// restarts it on the same data: the batch is published again, and the
// duplicate has no second effect downstream. The restart also keeps orders,
// stock and topics.
func TestRelayCrashBetweenPublishAndMark(t *testing.T) {
	dir := t.TempDir()
	var crashed atomic.Bool
	errCrash := errors.New("simulated crash after publish")
	hooks := &server.Hooks{OutboxBeforeMark: map[string]func([]int64) error{
		"orders": func([]int64) error {
			if crashed.CompareAndSwap(false, true) {
				return errCrash
			}
			return nil
		},
	}}
	s := startProcess(t, dir, hooks)
	s.setStock(t, "APPLE", 10)
	o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "alice", Items: []*ordersv1.LineItem{item("APPLE", 3)}})
	select {
	case <-s.proc.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("process did not stop after the simulated crash")
	}
	if err := s.proc.Close(); !errors.Is(err, errCrash) {
		t.Fatalf("process ended with %v, want the simulated crash", err)
	}

	s2 := startProcess(t, dir, nil)
	s2.waitStatus(t, o.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)
	if got := s2.stock(t, "APPLE"); got != 7 {
		t.Fatalf("APPLE stock = %d, want 7: the republished OrderCreated must deduct once", got)
	}
	created := s2.read(t, "herald.orders.v1", keyed("herald.orders.v1.OrderCreated", o.GetOrderId()))
	if len(created) != 2 {
		t.Fatalf("%d OrderCreated records, want 2 (published, crash, published again)", len(created))
	}
	if a, b := header(created[0], event.HeaderID), header(created[1], event.HeaderID); a != b {
		t.Fatalf("republished event has a new ce_id (%s vs %s); consumers could not deduplicate", a, b)
	}
	deducted := s2.read(t, "herald.inventory.v1", keyed("herald.inventory.v1.InventoryDeducted", o.GetOrderId()))
	if len(deducted) != 1 {
		t.Fatalf("%d InventoryDeducted for the order, want 1", len(deducted))
	}
	// Later orders flow normally after the restart.
	o2 := s2.create(t, &ordersv1.CreateOrderRequest{CustomerId: "bob", Items: []*ordersv1.LineItem{item("APPLE", 1)}})
	s2.waitStatus(t, o2.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)
}

// TestPoisonRecordGoesToDeadLetter publishes bytes that are not an event
// onto the orders topic: inventory moves them to the dead-letter topic with
// the reason and keeps consuming.
func TestPoisonRecordGoesToDeadLetter(t *testing.T) {
	s := startProcess(t, t.TempDir(), nil)
	s.setStock(t, "APPLE", 5)
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.proc.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	poison := []*kgo.Record{
		{Topic: s.topic("herald.orders.v1"), Key: []byte("poison-1"), Value: []byte("not protobuf"),
			Headers: []kgo.RecordHeader{{Key: event.HeaderID, Value: []byte("poison-1")}}},
		{Topic: s.topic("herald.orders.v1"), Key: []byte("poison-2"), Value: []byte{0, 0, 0, 0x7f, 0x7f, 0, 1, 2},
			Headers: []kgo.RecordHeader{{Key: event.HeaderID, Value: []byte("poison-2")}}},
		// No CloudEvents headers (accepted when the framing is valid, see
		// TestHeaderlessEvent) and a schema id no registry holds.
		{Topic: s.topic("herald.orders.v1"), Key: []byte("poison-3"), Value: []byte{0, 0, 0, 0x7f, 0x7e, 0, 1, 2}},
	}
	if err := cl.ProduceSync(callCtx(t), poison...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "alice", Items: []*ordersv1.LineItem{item("APPLE", 1)}})
	s.waitStatus(t, o.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)

	var dead []*kgo.Record
	eventually(t, 20*time.Second, func() bool {
		// Every consumer group of the topic dead-letters the records it
		// cannot read; these are inventory's.
		dead = s.read(t, "herald.orders.v1.dlq", func(r *kgo.Record) bool {
			return header(r, consumer.HeaderDLQGroup) == s.group("herald-inventory")
		})
		return len(dead) >= len(poison)
	}, "%d dead letters", len(poison))
	if len(dead) != len(poison) {
		t.Fatalf("%d dead letters, want %d", len(dead), len(poison))
	}
	for _, r := range dead {
		if header(r, consumer.HeaderDLQTopic) != s.topic("herald.orders.v1") || header(r, consumer.HeaderDLQClass) != consumer.ClassPermanent ||
			header(r, consumer.HeaderDLQGroup) != s.group("herald-inventory") || header(r, consumer.HeaderDLQOffset) == "" {
			t.Errorf("dead letter %s headers: %v", r.Key, r.Headers)
		}
		reason := header(r, consumer.HeaderDLQError)
		if !strings.Contains(reason, "undecodable") && !strings.Contains(reason, "missing ce_id") {
			t.Errorf("dead letter %s reason %q does not say why", r.Key, reason)
		}
	}
}
