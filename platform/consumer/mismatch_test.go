package consumer

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/fault"
	"github.com/herald-events/herald/platform/registry"
	"github.com/herald-events/herald/platform/schema"
)

// TestTypeMismatchIsTheRegistrysFaultWhileItDrifted: a record framed with
// an id that a refilled registry gives to another type decodes to the
// wrong type. The router must retry it (transient) while the registry
// disagrees with the codec, and dead-letter it only when the registry is
// consistent.
func TestTypeMismatchIsTheRegistrysFaultWhileItDrifted(t *testing.T) {
	var cur atomic.Pointer[http.Handler]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*cur.Load()).ServeHTTP(w, r) }))
	defer srv.Close()
	fresh := func() {
		reg, err := registry.New(registry.Config{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		h := reg.Handler()
		cur.Store(&h)
	}
	codec := func() *schema.Codec {
		cl, err := schema.NewClient(srv.URL, "", "")
		if err != nil {
			t.Fatal(err)
		}
		c, err := schema.NewCodec(cl)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	register := func(c *schema.Codec, inventoryFirst bool) {
		order := []func() error{
			func() error {
				_, err := c.Register("herald.orders.v1", (&ordersv1.OrderCreated{}).ProtoReflect().Descriptor())
				return err
			},
			func() error {
				_, err := c.Register("herald.inventory.v1", (&inventoryv1.InventoryDeducted{}).ProtoReflect().Descriptor())
				return err
			},
		}
		if inventoryFirst {
			order[0], order[1] = order[1], order[0]
		}
		for _, f := range order {
			if err := f(); err != nil {
				t.Fatal(err)
			}
		}
	}
	router := func(c *schema.Codec) *Router {
		r, err := NewRouter(Config{Group: "g", Decoder: c, DeadLetter: nopPublisher{}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	fresh() // registry A
	producer := codec()
	register(producer, false)
	// The consumer's codec resolved only its own event in A; a value
	// framed by another producer is decoded through the registry.
	consumer := codec()
	if _, err := consumer.Lookup("herald.orders.v1", (&ordersv1.OrderCreated{}).ProtoReflect().Descriptor()); err != nil {
		t.Fatal(err)
	}
	value, err := producer.Encode("herald.inventory.v1", &inventoryv1.InventoryDeducted{OrderId: "o-1"})
	if err != nil {
		t.Fatal(err)
	}
	m := &bus.Message{Topic: "herald.inventory.v1", Key: []byte("o-1"), Value: value}
	m.SetHeader(event.HeaderID, "e-1")
	m.SetHeader(event.HeaderType, "herald.inventory.v1.InventoryDeducted")

	fresh() // registry B, filled in the other order: A's inventory id is the orders schema now
	register(codec(), true)
	_, err = router(consumer).decode(m)
	t.Logf("decode with a codec whose ids moved: %v", err)
	if err == nil || IsPermanent(err) || !fault.IsTransient(err) {
		t.Fatalf("decode with a codec whose ids moved = %v; want a transient error", err)
	}
	consistent := codec()
	if _, err := consistent.Lookup("herald.orders.v1", (&ordersv1.OrderCreated{}).ProtoReflect().Descriptor()); err != nil {
		t.Fatal(err)
	} // knows B's ids: B is consistent for it
	if _, err := router(consistent).decode(m); !IsPermanent(err) {
		t.Fatalf("decode with a codec that agrees with the registry = %v; want permanent", err)
	}
	// The producer's own codec resolved that framing itself: it reads
	// the value as what it is, whatever the registry now says.
	ev, err := router(producer).decode(m)
	if err != nil || ev.Type != "herald.inventory.v1.InventoryDeducted" {
		t.Fatalf("decode with the codec that framed the value = %v, %v; want InventoryDeducted", ev, err)
	}
}
