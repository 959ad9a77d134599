package schema_test

import (
	"encoding/binary"
	"errors"
	"net/http/httptest"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/registry"
	"github.com/herald-events/herald/platform/schema"
)

func newCodec(t *testing.T, opts ...schema.Option) (*schema.Codec, string) {
	t.Helper()
	reg, err := registry.New(registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	cl, err := schema.NewClient(srv.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := schema.NewCodec(cl, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c, srv.URL
}

func desc(m proto.Message) protoreflect.MessageDescriptor { return m.ProtoReflect().Descriptor() }

func TestEncodeDecodeConfluentWireFormat(t *testing.T) {
	c, _ := newCodec(t)
	const topic = "herald.orders.v1"
	id, err := c.Register(topic, desc(&ordersv1.OrderConfirmed{}))
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	// Every event of the topic lives in one file, so one subject and id.
	if id2, err := c.Register(topic, desc(&ordersv1.OrderCreated{})); err != nil || id2 != id {
		t.Fatalf("second event of the file: id %d, %v; want %d", id2, err, id)
	}

	in := &ordersv1.OrderConfirmed{OrderId: "o-1", CustomerId: "c-1", Total: &moneyv1.Money{CurrencyCode: "EUR", Units: 3}}
	b, err := c.Encode(topic, in)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if b[0] != 0 {
		t.Fatalf("magic byte = %#x, want 0", b[0])
	}
	if got := int(binary.BigEndian.Uint32(b[1:5])); got != id {
		t.Fatalf("schema id in frame = %d, want %d", got, id)
	}
	// OrderConfirmed is the third message of events.proto (after
	// OrderCreated and OrderLine): indexes [2], written as the count 1 then
	// the index 2, both zigzag varints.
	if b[5] != 2 || b[6] != 4 {
		t.Fatalf("message indexes = % x, want 02 04", b[5:7])
	}
	payload, _ := proto.Marshal(in)
	if string(b[7:]) != string(payload) {
		t.Fatal("payload after the header is not the plain protobuf encoding")
	}

	out, err := c.Decode(topic, b)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if !proto.Equal(in, out) {
		t.Fatalf("round trip: got %v, want %v", out, in)
	}

	// The first message of a file uses the single-byte index shortcut.
	created, err := c.Encode(topic, &ordersv1.OrderCreated{OrderId: "o-1"})
	if err != nil || created[5] != 0 {
		t.Fatalf("OrderCreated frame = % x, %v; want index byte 00", created[:6], err)
	}
}

func TestEncodeWithoutRegisteredSchemaFails(t *testing.T) {
	c, _ := newCodec(t)
	if _, err := c.Encode("herald.inventory.v1", &inventoryv1.InventoryDeducted{OrderId: "o"}); err == nil {
		t.Fatal("Encode succeeded with no registered schema; producers must not auto-register by default")
	}
	auto, _ := newCodec(t, schema.AutoRegister(true))
	if _, err := auto.Encode("herald.inventory.v1", &inventoryv1.InventoryDeducted{OrderId: "o"}); err != nil {
		t.Fatalf("Encode with AutoRegister: %v", err)
	}
}

func TestSubjectStrategies(t *testing.T) {
	md := desc(&ordersv1.OrderCreated{})
	cases := map[schema.Strategy]string{
		schema.TopicName:       "herald.orders.v1-value",
		schema.RecordName:      "herald.orders.v1.OrderCreated",
		schema.TopicRecordName: "herald.orders.v1-herald.orders.v1.OrderCreated",
	}
	for s, want := range cases {
		if got := s.Subject("herald.orders.v1", md); got != want {
			t.Errorf("%s: subject %q, want %q", s, got, want)
		}
	}
	if _, err := schema.ParseStrategy("bogus"); err == nil {
		t.Error("ParseStrategy accepted bogus")
	}
	c, _ := newCodec(t, schema.WithStrategy(schema.TopicRecordName))
	if _, err := c.Register("herald.orders.v1", md); err != nil {
		t.Fatal(err)
	}
	b, err := c.Encode("herald.orders.v1", &ordersv1.OrderCreated{OrderId: "x"})
	if err != nil {
		t.Fatalf("encode under topic_record: %v", err)
	}
	if _, err := c.Decode("herald.orders.v1", b); err != nil {
		t.Fatalf("decode under topic_record: %v", err)
	}
}

func TestDecodeUndecodable(t *testing.T) {
	c, _ := newCodec(t)
	const topic = "herald.orders.v1"
	id, err := c.Register(topic, desc(&ordersv1.OrderCreated{}))
	if err != nil {
		t.Fatal(err)
	}
	frame := func(schemaID int, rest ...byte) []byte {
		b := []byte{0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:], uint32(schemaID))
		return append(b, rest...)
	}
	cases := map[string][]byte{
		"empty":                   nil,
		"no magic byte":           []byte("hello world"),
		"unknown schema id":       frame(9999, 0, 1, 2),
		"message index too large": frame(id, 2, 40, 0),
		"bad protobuf payload":    frame(id, 0, 0xff, 0xff, 0xff),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := c.Decode(topic, b)
			if !errors.Is(err, schema.ErrUndecodable) {
				t.Fatalf("Decode = %v, want ErrUndecodable", err)
			}
		})
	}
}

func TestRegistryPersistsIDsAcrossRestart(t *testing.T) {
	file := t.TempDir() + "/r.json"
	start := func() *schema.Codec {
		reg, err := registry.New(registry.Config{File: file})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(reg.Handler())
		t.Cleanup(srv.Close)
		cl, _ := schema.NewClient(srv.URL, "", "")
		c, _ := schema.NewCodec(cl)
		return c
	}
	c1 := start()
	if _, err := c1.Register("herald.orders.v1", desc(&ordersv1.OrderCreated{})); err != nil {
		t.Fatal(err)
	}
	b, err := c1.Encode("herald.orders.v1", &ordersv1.OrderCreated{OrderId: "o-9"})
	if err != nil {
		t.Fatal(err)
	}
	c2 := start()
	m, err := c2.Decode("herald.orders.v1", b)
	if err != nil || m.(*ordersv1.OrderCreated).GetOrderId() != "o-9" {
		t.Fatalf("decode after registry restart: %v, %v", m, err)
	}
}

// TestEncodeReusesFraming checks the framing kept after the first value of
// a (topic, type): later values are byte for byte what the serde writes
// for them, and they decode.
func TestEncodeReusesFraming(t *testing.T) {
	const topic = "herald.orders.v1"
	c, url := newCodec(t, schema.AutoRegister(true))
	first := []proto.Message{&ordersv1.OrderCreated{OrderId: "warm"}, &ordersv1.OrderConfirmed{OrderId: "warm"}}
	for _, m := range first {
		if _, err := c.Encode(topic, m); err != nil {
			t.Fatalf("Encode %T: %v", m, err)
		}
	}
	// A second codec on the same registry encodes each value through the
	// serde (its first value of the type), the reference bytes.
	cl, err := schema.NewClient(url, "", "")
	if err != nil {
		t.Fatal(err)
	}
	values := []proto.Message{
		&ordersv1.OrderCreated{OrderId: "o-2", CustomerId: "c", Lines: []*ordersv1.OrderLine{{Sku: "APPLE", Quantity: 2}}},
		&ordersv1.OrderConfirmed{OrderId: "o-3", Total: &moneyv1.Money{CurrencyCode: "EUR", Units: 7}},
	}
	for _, in := range values {
		fresh, err := schema.NewCodec(cl)
		if err != nil {
			t.Fatal(err)
		}
		want, err := fresh.Encode(topic, in)
		if err != nil {
			t.Fatalf("reference Encode %T: %v", in, err)
		}
		got, err := c.Encode(topic, in)
		if err != nil {
			t.Fatalf("Encode %T: %v", in, err)
		}
		if string(got) != string(want) {
			t.Fatalf("%T: kept framing gives % x, serde gives % x", in, got, want)
		}
		// Framing the marshalled bytes, as the relay does with a stored
		// payload, gives the same value.
		payload, err := proto.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		framed, ok, err := c.Frame(topic, in.ProtoReflect().Descriptor().FullName(), payload)
		if err != nil || !ok || string(framed) != string(want) {
			t.Fatalf("%T: Frame = % x, %v, %v; want % x", in, framed, ok, err, want)
		}
		// Appended to a buffer that holds other values, as the relay
		// frames a batch: the buffer's bytes stay and the value follows.
		dst := append(make([]byte, 0, 8), "before"...)
		appended, ok, err := c.AppendFrame(dst, topic, in.ProtoReflect().Descriptor().FullName(), payload)
		if err != nil || !ok || string(appended) != "before"+string(want) {
			t.Fatalf("%T: AppendFrame = % x, %v, %v; want \"before\" then % x", in, appended, ok, err, want)
		}
		if kept, ok, err := fresh.AppendFrame(dst, "herald.other.v1", in.ProtoReflect().Descriptor().FullName(), payload); ok || err != nil || string(kept) != "before" {
			t.Fatalf("%T: AppendFrame on a topic never encoded = %q, %v, %v; want dst unchanged, false, nil", in, kept, ok, err)
		}
		if _, ok, err := fresh.Frame("herald.other.v1", in.ProtoReflect().Descriptor().FullName(), payload); ok || err != nil {
			t.Fatalf("%T: Frame on a topic never encoded = %v, %v; want false, nil", in, ok, err)
		}
		out, err := c.Decode(topic, got)
		if err != nil || !proto.Equal(in, out) {
			t.Fatalf("%T: decode = %v, %v; want %v", in, out, err, in)
		}
	}
}
