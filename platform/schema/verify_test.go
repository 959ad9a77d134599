package schema_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/fault"
	"github.com/herald-events/herald/platform/registry"
	"github.com/herald-events/herald/platform/schema"
)

const (
	ordersTopic    = "herald.orders.v1"
	inventoryTopic = "herald.inventory.v1"
)

// swappable is one registry URL whose registry can be replaced, as when a
// registry restarts empty behind the same address.
type swappable struct {
	srv *httptest.Server
	cur atomic.Pointer[http.Handler]
}

func newSwappable(t *testing.T) *swappable {
	t.Helper()
	s := &swappable{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := s.cur.Load()
		if h == nil {
			// Down: the connection drops without an answer.
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				_ = conn.Close()
			}
			return
		}
		(*h).ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// swap puts a new empty in-memory registry behind the URL.
func (s *swappable) swap(t *testing.T) {
	t.Helper()
	reg, err := registry.New(registry.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	h := reg.Handler()
	s.cur.Store(&h)
}

func codecAt(t *testing.T, url string) *schema.Codec {
	t.Helper()
	cl, err := schema.NewClient(url, "", "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := schema.NewCodec(cl, schema.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// registerIn registers the orders and inventory events with a codec of
// their own, in the given order.
func registerIn(t *testing.T, url string, inventoryFirst bool) {
	t.Helper()
	c := codecAt(t, url)
	steps := []func() (int, error){
		func() (int, error) { return c.Register(ordersTopic, desc(&ordersv1.OrderCreated{})) },
		func() (int, error) { return c.Register(inventoryTopic, desc(&inventoryv1.InventoryDeducted{})) },
	}
	if inventoryFirst {
		steps[0], steps[1] = steps[1], steps[0]
	}
	for _, step := range steps {
		if _, err := step(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDriftRefusesEncodeUntilIDsAreBack plays the lost registry: ids from
// registry A are cached, an empty registry B replaces A at the same
// address and is filled in another order, and the codec must refuse to
// frame values with ids that now name other schemas, until an import of
// A's ids puts them back.
func TestDriftRefusesEncodeUntilIDsAreBack(t *testing.T) {
	ctx := context.Background()
	reg := newSwappable(t)
	reg.swap(t) // registry A
	registerIn(t, reg.srv.URL, false)
	admin := &schema.RegistryAdmin{URL: reg.srv.URL}
	export, err := admin.ExportRegistry(ctx)
	if err != nil {
		t.Fatal(err)
	}

	c := codecAt(t, reg.srv.URL)
	for _, ev := range []struct {
		topic string
		msg   proto.Message
	}{{ordersTopic, &ordersv1.OrderCreated{OrderId: "o-1"}}, {inventoryTopic, &inventoryv1.InventoryDeducted{OrderId: "o-1"}}} {
		if _, err := c.Lookup(ev.topic, desc(ev.msg)); err != nil {
			t.Fatal(err)
		}
	}
	deducted, err := c.Encode(inventoryTopic, &inventoryv1.InventoryDeducted{OrderId: "o-1", Lines: []*inventoryv1.StockChange{{Sku: "sku-1", Quantity: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Verify(ctx); err != nil || c.Err() != nil {
		t.Fatalf("Verify on the registry the ids came from = %v, Err = %v", err, c.Err())
	}

	// Registry B: empty, then filled in the other order.
	reg.swap(t)
	registerIn(t, reg.srv.URL, true)
	if _, err := c.Encode(inventoryTopic, &inventoryv1.InventoryDeducted{OrderId: "o-2"}); err != nil {
		t.Fatalf("before Verify the codec cannot know yet: %v", err)
	}
	err = c.Verify(ctx)
	var drift *schema.DriftError
	if !errors.Is(err, schema.ErrSchemaDrift) || !fault.IsTransient(err) || !errors.As(err, &drift) {
		t.Fatalf("Verify after the ids moved = %v; want a transient ErrSchemaDrift", err)
	}
	if drift.CachedID == drift.RegistryID || drift.CachedID == 0 || drift.RegistryID == 0 || drift.Others != 1 {
		t.Errorf("drift = %+v; want both framings named with different cached and registry ids", drift)
	}
	_, err = c.Encode(inventoryTopic, &inventoryv1.InventoryDeducted{OrderId: "o-3"})
	if !errors.Is(err, schema.ErrSchemaDrift) || !fault.IsTransient(err) {
		t.Fatalf("Encode while drifted = %v; want a transient ErrSchemaDrift", err)
	}
	if _, err := c.Encode("herald.other.v1", &ordersv1.OrderConfirmed{OrderId: "o-3"}); !errors.Is(err, schema.ErrSchemaDrift) {
		t.Fatalf("Encode of a framing not cached yet while drifted = %v; want refused too", err)
	}
	if err := c.Err(); !errors.Is(err, schema.ErrSchemaDrift) {
		t.Fatalf("Err() = %v; want the drift", err)
	}
	// A value framed with A's id now resolves to another type: while the
	// registry disagrees with the codec, that is not the record's fault.
	if got, err := c.Decode(inventoryTopic, deducted); err == nil {
		if _, ok := got.(*inventoryv1.InventoryDeducted); ok {
			t.Fatal("decoded with the old meaning although the id now names another schema")
		}
	} else if errors.Is(err, schema.ErrUndecodable) || !fault.IsTransient(err) {
		t.Fatalf("Decode while drifted = %v; want transient, not undecodable", err)
	}
	if err := c.Consistent(); !fault.IsTransient(err) {
		t.Fatalf("Consistent() while drifted = %v; want transient", err)
	}

	// The registry goes down: Verify cannot tell, the state stays.
	reg.cur.Store(nil)
	if err := c.Verify(ctx); !fault.IsTransient(err) || errors.Is(err, schema.ErrSchemaDrift) {
		t.Fatalf("Verify with the registry down = %v; want transient, not a new verdict", err)
	}
	if !errors.Is(c.Err(), schema.ErrSchemaDrift) {
		t.Fatal("an unreachable registry cleared the drift")
	}

	// An empty registry C with A's ids imported: every id is back.
	reg.swap(t)
	if n, err := admin.ImportRegistry(ctx, export, false); err != nil || n != len(export.Schemas) {
		t.Fatalf("import = %d, %v; want %d", n, err, len(export.Schemas))
	}
	if err := c.Verify(ctx); err != nil || c.Err() != nil {
		t.Fatalf("Verify after the import = %v, Err = %v", err, c.Err())
	}
	if _, err := c.Encode(inventoryTopic, &inventoryv1.InventoryDeducted{OrderId: "o-4"}); err != nil {
		t.Fatalf("Encode after the import: %v", err)
	}
	got, err := c.Decode(inventoryTopic, deducted)
	if err != nil {
		t.Fatalf("Decode after the import: %v", err)
	}
	if d, ok := got.(*inventoryv1.InventoryDeducted); !ok || len(d.GetLines()) != 1 || d.GetLines()[0].GetSku() != "sku-1" {
		t.Fatalf("Decode after the import = %T %v", got, got)
	}
}

// TestDecodeMismatchClassification: a record whose id names another type
// is the registry's fault while the registry disagrees with the codec, and
// a bad message when it agrees.
func TestDecodeMismatchClassification(t *testing.T) {
	reg := newSwappable(t)
	reg.swap(t)
	registerIn(t, reg.srv.URL, false)
	producer := codecAt(t, reg.srv.URL)
	deducted, err := producer.Encode(inventoryTopic, &inventoryv1.InventoryDeducted{OrderId: "o-1"})
	if err != nil {
		t.Fatal(err)
	}

	// A consumer that knows the ids of registry A.
	consumer := codecAt(t, reg.srv.URL)
	if _, err := consumer.Lookup(inventoryTopic, desc(&inventoryv1.InventoryDeducted{})); err != nil {
		t.Fatal(err)
	}
	reg.swap(t)
	registerIn(t, reg.srv.URL, true)
	if err := consumer.Consistent(); !fault.IsTransient(err) || !errors.Is(err, schema.ErrSchemaDrift) {
		t.Fatalf("Consistent() of a codec whose ids moved = %v; want transient drift", err)
	}
	if _, err := consumer.Decode(inventoryTopic, deducted); err != nil && (errors.Is(err, schema.ErrUndecodable) || !fault.IsTransient(err)) {
		t.Fatalf("Decode while inconsistent = %v; want no undecodable verdict", err)
	}

	// A consumer that started on registry B knows B's ids: B is
	// consistent for it, so the same record is a bad message.
	fresh := codecAt(t, reg.srv.URL)
	if _, err := fresh.Lookup(inventoryTopic, desc(&inventoryv1.InventoryDeducted{})); err != nil {
		t.Fatal(err)
	}
	if err := fresh.Consistent(); err != nil {
		t.Fatalf("Consistent() of a codec that agrees with the registry = %v", err)
	}
	// An id no schema has: undecodable when the registry is consistent.
	unknown := append([]byte{0, 0, 0, 0x7f, 0x7f, 0}, deducted[6:]...)
	if _, err := fresh.Decode(inventoryTopic, unknown); !errors.Is(err, schema.ErrUndecodable) {
		t.Fatalf("Decode of an unknown id on a consistent registry = %v; want ErrUndecodable", err)
	}
	if _, err := consumer.Decode(inventoryTopic, unknown); errors.Is(err, schema.ErrUndecodable) || !fault.IsTransient(err) {
		t.Fatalf("Decode of an unknown id on an inconsistent registry = %v; want transient", err)
	}
}

func TestRunVerifierNoticesDriftAndRecovery(t *testing.T) {
	reg := newSwappable(t)
	reg.swap(t)
	registerIn(t, reg.srv.URL, false)
	admin := &schema.RegistryAdmin{URL: reg.srv.URL}
	export, err := admin.ExportRegistry(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := codecAt(t, reg.srv.URL)
	if _, err := c.Lookup(ordersTopic, desc(&ordersv1.OrderCreated{})); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.RunVerifier(ctx, 20*time.Millisecond) }()
	defer func() { cancel(); <-done }()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	reg.cur.Store(nil) // down
	reg.swap(t)        // back, empty, then filled in another order
	registerIn(t, reg.srv.URL, true)
	waitFor("the drift", func() bool { return errors.Is(c.Err(), schema.ErrSchemaDrift) })
	reg.swap(t)
	if _, err := admin.ImportRegistry(context.Background(), export, false); err != nil {
		t.Fatal(err)
	}
	waitFor("the ids back", func() bool { return c.Err() == nil })
}

// TestRunVerifierVerifiesOnReconnect: with a long interval, the verifier
// still checks the ids as soon as a registry that was unreachable answers
// again, here one that came back with other ids.
func TestRunVerifierVerifiesOnReconnect(t *testing.T) {
	reg := newSwappable(t)
	reg.swap(t)
	registerIn(t, reg.srv.URL, false)
	c := codecAt(t, reg.srv.URL)
	if _, err := c.Lookup(ordersTopic, desc(&ordersv1.OrderCreated{})); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.RunVerifier(ctx, time.Hour) }()
	defer func() { cancel(); <-done }()

	reg.cur.Store(nil) // down: a lookup fails and wakes the verifier
	if _, err := c.Lookup(inventoryTopic, desc(&inventoryv1.InventoryDeducted{})); !fault.IsTransient(err) {
		t.Fatalf("Lookup with the registry down = %v; want transient", err)
	}
	time.Sleep(100 * time.Millisecond)
	reg.swap(t) // back, with other ids
	registerIn(t, reg.srv.URL, true)
	deadline := time.Now().Add(10 * time.Second)
	for !errors.Is(c.Err(), schema.ErrSchemaDrift) {
		if time.Now().After(deadline) {
			t.Fatal("the verifier did not verify after the registry came back")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDecodeOwnFramingsWithoutTheRegistry: a process that looked its events
// up (as herald serve does at start) decodes values with those framings
// while the registry is down, so a restart during a registry outage does
// not stop its consumers; a framing it never resolved still needs the
// registry, and that failure is transient.
func TestDecodeOwnFramingsWithoutTheRegistry(t *testing.T) {
	reg := newSwappable(t)
	reg.swap(t)
	registerIn(t, reg.srv.URL, false)
	producer := codecAt(t, reg.srv.URL)
	created, err := producer.Encode("herald.orders.v1", &ordersv1.OrderCreated{OrderId: "o-1"})
	if err != nil {
		t.Fatal(err)
	}
	deducted, err := producer.Encode("herald.inventory.v1", &inventoryv1.InventoryDeducted{OrderId: "o-1"})
	if err != nil {
		t.Fatal(err)
	}
	// A freshly started consumer that looked up only the orders events.
	consumer := codecAt(t, reg.srv.URL)
	if _, err := consumer.Lookup("herald.orders.v1", desc(&ordersv1.OrderCreated{})); err != nil {
		t.Fatal(err)
	}

	reg.cur.Store(nil) // the registry goes down
	msg, err := consumer.Decode("herald.orders.v1", created)
	if err != nil {
		t.Fatalf("decode a framing the codec resolved, registry down: %v", err)
	}
	if got := msg.(*ordersv1.OrderCreated).GetOrderId(); got != "o-1" {
		t.Fatalf("decoded order id %q, want o-1", got)
	}
	if _, err := consumer.Decode("herald.inventory.v1", deducted); err == nil || !fault.IsTransient(err) {
		t.Fatalf("decode a framing the codec never resolved, registry down = %v; want a transient error", err)
	}
}
