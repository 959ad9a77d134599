package event_test

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	_ "github.com/herald-events/herald/gen/go/herald/risk/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/registry"
	"github.com/herald-events/herald/platform/schema"
)

// TestEveryEventHasRoute holds the contract rule: in an events.proto file,
// every top-level message that no other message there uses as a field type
// is an event, and must declare its topic and key through the
// (herald.options.v1.event) option.
func TestEveryEventHasRoute(t *testing.T) {
	n := 0
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(fd.Path(), "herald/") || !strings.HasSuffix(fd.Path(), "/events.proto") {
			return true
		}
		for _, md := range eventMessages(fd) {
			n++
			r, err := event.RouteOf(md)
			if err != nil {
				t.Errorf("%s: %v", fd.Path(), err)
				continue
			}
			if r.KeyField.Name() != "order_id" {
				t.Errorf("%s is keyed by %s; shop events are keyed by order_id so one order's events stay in order",
					md.FullName(), r.KeyField.Name())
			}
		}
		return true
	})
	if n < 7 {
		t.Fatalf("checked %d event messages, want at least the 7 of the saga", n)
	}
}

// eventMessages returns the top-level messages of fd not used as field
// types inside fd.
func eventMessages(fd protoreflect.FileDescriptor) []protoreflect.MessageDescriptor {
	used := map[protoreflect.FullName]bool{}
	msgs := fd.Messages()
	for i := range msgs.Len() {
		fields := msgs.Get(i).Fields()
		for j := range fields.Len() {
			if m := fields.Get(j).Message(); m != nil {
				used[m.FullName()] = true
			}
		}
	}
	var out []protoreflect.MessageDescriptor
	for i := range msgs.Len() {
		if md := msgs.Get(i); !used[md.FullName()] {
			out = append(out, md)
		}
	}
	return out
}

func TestRouteOf(t *testing.T) {
	cases := []struct {
		name    string
		md      protoreflect.MessageDescriptor
		topic   string
		wantErr bool
	}{
		{"order created", (&ordersv1.OrderCreated{}).ProtoReflect().Descriptor(), "herald.orders.v1", false},
		{"inventory failed", (&inventoryv1.InventoryDeductionFailed{}).ProtoReflect().Descriptor(), "herald.inventory.v1", false},
		{"helper type without option", (&ordersv1.OrderLine{}).ProtoReflect().Descriptor(), "", true},
		{"api message", (&ordersv1.CreateOrderRequest{}).ProtoReflect().Descriptor(), "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := event.RouteOf(tc.md)
			if tc.wantErr {
				if !errors.Is(err, event.ErrNotAnEvent) {
					t.Fatalf("RouteOf = %v, want ErrNotAnEvent", err)
				}
				return
			}
			if err != nil || r.Topic != tc.topic {
				t.Fatalf("RouteOf = %+v, %v; want topic %s", r, err, tc.topic)
			}
		})
	}
	r, _ := event.RouteOf((&ordersv1.OrderCreated{}).ProtoReflect().Descriptor())
	if got := r.Key(&ordersv1.OrderCreated{OrderId: "o-1"}); got != "o-1" {
		t.Fatalf("Key = %q, want o-1", got)
	}
}

func TestEventsListsAllSagaEvents(t *testing.T) {
	mds, err := event.Events(protoregistry.GlobalFiles, "herald")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, md := range mds {
		names = append(names, string(md.Name()))
	}
	want := []string{"OrderCreated", "OrderConfirmed", "OrderRejected", "OrderCancelled",
		"InventoryDeducted", "InventoryDeductionFailed", "InventoryReleased"}
	for _, w := range want {
		found := false
		for _, n := range names {
			found = found || n == w
		}
		if !found {
			t.Errorf("Events() lacks %s (got %v)", w, names)
		}
	}
}

// TestEventsOrderIsFixed registers every herald event into two fresh
// registries, as `herald schema register` does after a registry lost its
// state, and expects the same id for every subject: the registry numbers
// schemas in arrival order, so the order Events returns must not change
// from one run to the next (protoregistry ranges over a map).
func TestEventsOrderIsFixed(t *testing.T) {
	first, err := event.Events(protoregistry.GlobalFiles, "herald")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(first); i++ {
		a, b := first[i-1], first[i]
		if a.ParentFile().Path() > b.ParentFile().Path() ||
			(a.ParentFile() == b.ParentFile() && a.Index() > b.Index()) {
			t.Errorf("%s (%s) listed before %s (%s)", a.FullName(), a.ParentFile().Path(), b.FullName(), b.ParentFile().Path())
		}
	}
	ids := func() map[string]int {
		reg, err := registry.New(registry.Config{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(reg.Handler())
		defer srv.Close()
		client, err := schema.NewClient(srv.URL, "", "")
		if err != nil {
			t.Fatal(err)
		}
		codec, err := schema.NewCodec(client)
		if err != nil {
			t.Fatal(err)
		}
		events, err := event.Events(protoregistry.GlobalFiles, "herald")
		if err != nil {
			t.Fatal(err)
		}
		for _, md := range events {
			r, _ := event.RouteOf(md)
			if _, err := codec.Register(r.Topic, md); err != nil {
				t.Fatalf("register %s: %v", md.FullName(), err)
			}
		}
		// Every subject, the imports' included.
		subjects, err := client.GetAllSubjects()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, s := range subjects {
			md, err := client.GetLatestSchemaMetadata(s)
			if err != nil {
				t.Fatal(err)
			}
			out[s] = md.ID
		}
		return out
	}
	a, b := ids(), ids()
	if len(a) < 4 {
		t.Fatalf("only %d subjects registered: %v", len(a), a)
	}
	if !maps.Equal(a, b) {
		t.Errorf("two registrations into empty registries gave different ids:\n%v\n%v", a, b)
	}
	// Three more rounds: a map order would differ in at least one.
	for range 3 {
		if c := ids(); !maps.Equal(a, c) {
			t.Fatalf("registration ids changed: %v then %v", a, c)
		}
	}
}

// TestAppendHeaders: a batch of events framed in shared buffers, as the
// outbox relay frames them, gets the headers Headers gives each event, and
// growing one event's headers or values leaves the others' alone, whether
// the buffers had room for the batch or had to grow.
func TestAppendHeaders(t *testing.T) {
	type attrs struct{ id, typ, source, at, key, traceparent string }
	var batch []attrs
	for i := range 5 {
		batch = append(batch, attrs{fmt.Sprintf("id-%d", i), "herald.orders.v1.OrderCreated", "herald/orders",
			"2026-03-01T12:00:00.123456789Z", fmt.Sprintf("order-%d", i), strings.Repeat(fmt.Sprint(i), i)})
	}
	for name, sized := range map[string]bool{"sized for the batch": true, "grown": false} {
		t.Run(name, func(t *testing.T) {
			var hs []bus.Header
			var buf []byte
			if sized {
				n := 0
				for _, a := range batch {
					n += event.HeadersLen(a.id, a.typ, a.source, a.at, a.key, a.traceparent)
				}
				hs, buf = make([]bus.Header, 0, event.HeaderCount*len(batch)), make([]byte, 0, n)
			}
			own := make([][]bus.Header, len(batch))
			for i, a := range batch {
				hs, own[i], buf = event.AppendHeaders(hs, buf, a.id, a.typ, a.source, a.at, a.key, a.traceparent)
			}
			if sized && (cap(hs) != event.HeaderCount*len(batch) || len(buf) != cap(buf)) {
				t.Errorf("buffers grew although sized: headers %d/%d, bytes %d/%d", len(hs), cap(hs), len(buf), cap(buf))
			}
			// Grow the first event's headers and its last value: neither
			// may write into the second event's.
			own[0] = append(own[0], bus.Header{Key: "extra", Value: []byte("x")})
			own[0][event.HeaderCount-1].Value = append(own[0][event.HeaderCount-1].Value, "tail"...)
			for i, a := range batch {
				want := event.Headers(a.id, a.typ, a.source, a.at, a.key, a.traceparent)
				got := own[i]
				if i == 0 {
					got = got[:event.HeaderCount]
					want[event.HeaderCount-1].Value = append(want[event.HeaderCount-1].Value, "tail"...)
				}
				if len(got) != len(want) {
					t.Fatalf("event %d: %d headers, want %d", i, len(got), len(want))
				}
				for j := range want {
					if got[j].Key != want[j].Key || string(got[j].Value) != string(want[j].Value) {
						t.Errorf("event %d header %d: %s=%q, want %s=%q", i, j, got[j].Key, got[j].Value, want[j].Key, want[j].Value)
					}
				}
			}
		})
	}
}
