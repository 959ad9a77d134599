package schema_test

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/registry"
	"github.com/herald-events/herald/platform/schema"
)

// FuzzDecode feeds arbitrary bytes to Codec.Decode as a record value of a
// topic whose events are registered in the embedded registry (in process,
// no network). Decode must never panic, and must either return a message or
// fail with an error wrapping ErrUndecodable: nothing in a value can make
// the (reachable) registry fail in a way worth retrying.
//
//	go test -run '^$' -fuzz FuzzDecode -fuzztime 20s ./platform/schema
func FuzzDecode(f *testing.F) {
	reg, err := registry.New(registry.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	f.Cleanup(srv.Close)
	cl, err := schema.NewClient(srv.URL, "", "")
	if err != nil {
		f.Fatal(err)
	}
	c, err := schema.NewCodec(cl)
	if err != nil {
		f.Fatal(err)
	}
	const topic = "herald.orders.v1"
	id, err := c.Register(topic, desc(&ordersv1.OrderCreated{}))
	if err != nil {
		f.Fatal(err)
	}
	valid, err := c.Encode(topic, &ordersv1.OrderCreated{OrderId: "o-1", CustomerId: "c-1",
		Lines: []*ordersv1.OrderLine{{Sku: "A", Quantity: 2}}})
	if err != nil {
		f.Fatal(err)
	}
	frame := func(id uint32, rest ...byte) []byte {
		b := binary.BigEndian.AppendUint32([]byte{0}, id)
		return append(b, rest...)
	}
	f.Add(valid)
	f.Add(valid[:6])                                 // frame and index array, no payload
	f.Add(frame(uint32(id), 0x02, 0x7f))             // index array [-64]: out of range
	f.Add(frame(uint32(id), 0x7f, 0x02))             // index array length -64
	f.Add(frame(uint32(id), 0x00, 0x0a, 0xff, 0xff)) // message 0, truncated field
	f.Add(frame(0xffffffff, 0x00))                   // unknown schema id
	f.Add(append([]byte{1}, valid[1:]...))           // wrong magic byte
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, value []byte) {
		msg, err := c.Decode(topic, value)
		switch {
		case err == nil && msg == nil:
			t.Fatal("nil message without an error")
		case err != nil && msg != nil:
			t.Fatalf("message %v with error %v", msg, err)
		case err != nil && !errors.Is(err, schema.ErrUndecodable):
			t.Fatalf("error does not wrap ErrUndecodable: %v", err)
		}
	})
}
