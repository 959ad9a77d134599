package ports_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	riskv1 "github.com/herald-events/herald/gen/go/herald/risk/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/schema"
	"github.com/herald-events/herald/services/risk/app"
	"github.com/herald-events/herald/services/risk/domain"
	"github.com/herald-events/herald/services/risk/ports"
)

// fakeCodec frames values as plain protobuf of the message it was given,
// and fails as told.
type fakeCodec struct {
	msg       proto.Message
	decodeErr error
	panics    bool
}

func (f *fakeCodec) Decode(string, []byte) (proto.Message, error) {
	if f.panics {
		panic("codec bug")
	}
	return f.msg, f.decodeErr
}

func (f *fakeCodec) Encode(topic string, msg proto.Message) ([]byte, error) {
	b, err := proto.Marshal(msg)
	return append([]byte(topic+":"), b...), err
}

func newEvents(c *fakeCodec) *ports.Events {
	return ports.NewEvents(ports.Config{App: app.New(domain.Policy{DenyList: []string{"mallory"}}), Codec: c,
		Service: "risk", Group: "ns.herald-risk", Namespace: "ns"})
}

func orderCreated(id string) *bus.Message {
	m := &bus.Message{Topic: "ns.herald.orders.v1", Key: []byte("o1"), Value: []byte("framed"), Partition: 2, Offset: 7}
	if id != "" {
		m.SetHeader(event.HeaderID, id)
	}
	m.SetHeader(event.HeaderType, "herald.orders.v1.OrderCreated")
	m.SetHeader(event.HeaderTraceParent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	return m
}

func TestTransform(t *testing.T) {
	created := &ordersv1.OrderCreated{OrderId: "o1", CustomerId: "mallory",
		Lines: []*ordersv1.OrderLine{{Sku: "A", Quantity: 1}}, Total: &moneyv1.Money{CurrencyCode: "EUR", Units: 3}}
	out, err := newEvents(&fakeCodec{msg: created}).Transform(context.Background(), orderCreated("ev-1"))
	if err != nil || len(out) != 1 {
		t.Fatalf("Transform = %v, %v; want one message", out, err)
	}
	m := out[0]
	if m.Topic != "ns.herald.risk.v1" || string(m.Key) != "o1" {
		t.Fatalf("output on %s keyed %s, want ns.herald.risk.v1 keyed o1", m.Topic, m.Key)
	}
	var ra riskv1.RiskAssessed
	if err := proto.Unmarshal(m.Value[len("ns.herald.risk.v1:"):], &ra); err != nil {
		t.Fatal(err)
	}
	if ra.GetScore() != 20 || ra.GetLevel() != riskv1.RiskLevel_RISK_LEVEL_LOW || ra.GetCustomerId() != "mallory" {
		t.Fatalf("RiskAssessed = %v, want score 20 (denied customer), LOW", &ra)
	}
	for h, want := range map[string]string{
		event.HeaderType: "herald.risk.v1.RiskAssessed", event.HeaderSource: "herald/risk", event.HeaderSubject: "o1",
		event.HeaderSpecVersion: "1.0", event.HeaderContentType: event.ContentType,
	} {
		if got, _ := m.Header(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if id, _ := m.Header(event.HeaderID); id == "" || id == "ev-1" {
		t.Errorf("ce_id = %q, want a new one", id)
	}
	if tp, _ := m.Header(event.HeaderTraceParent); len(tp) != 55 || tp[3:35] != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("traceparent %q does not continue trace 0af7651916cd43dd8448eb211c80319c", tp)
	}
}

func TestTransformFailures(t *testing.T) {
	other := orderCreated("ev-1")
	other.SetHeader(event.HeaderType, "herald.orders.v1.OrderConfirmed")
	noType := &bus.Message{Topic: "t", Value: []byte("x")}
	cases := []struct {
		name      string
		in        *bus.Message
		codec     *fakeCodec
		permanent bool
		none      bool
	}{
		{"other event type passes", other, &fakeCodec{decodeErr: errors.New("must not decode")}, false, true},
		{"record without ce_type passes", noType, &fakeCodec{decodeErr: errors.New("must not decode")}, false, true},
		{"missing ce_id", orderCreated(""), &fakeCodec{msg: &ordersv1.OrderCreated{}}, true, false},
		{"undecodable", orderCreated("ev-1"), &fakeCodec{decodeErr: fmt.Errorf("bad magic: %w", schema.ErrUndecodable)}, true, false},
		{"registry unreachable", orderCreated("ev-1"), &fakeCodec{decodeErr: errors.New("connection refused")}, false, false},
		{"value of another type", orderCreated("ev-1"), &fakeCodec{msg: &ordersv1.OrderConfirmed{}}, true, false},
		{"panic", orderCreated("ev-1"), &fakeCodec{panics: true}, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := newEvents(tc.codec).Transform(context.Background(), tc.in)
			if tc.none {
				if err != nil || out != nil {
					t.Fatalf("Transform = %v, %v; want nothing", out, err)
				}
				return
			}
			if err == nil || consumer.IsPermanent(err) != tc.permanent {
				t.Fatalf("Transform error %v, permanent %v; want an error, permanent %v", err, consumer.IsPermanent(err), tc.permanent)
			}
		})
	}
}

func TestDeadLetter(t *testing.T) {
	e := newEvents(&fakeCodec{})
	in := orderCreated("ev-1")
	if dl := e.DeadLetter(context.Background(), in, errors.New("transient")); dl != nil {
		t.Fatalf("transient error dead-lettered: %v", dl)
	}
	dl := e.DeadLetter(context.Background(), in, consumer.Permanent(errors.New("bad value")))
	if dl == nil || dl.Topic != "ns.herald.orders.v1.dlq" || string(dl.Key) != "o1" || string(dl.Value) != "framed" {
		t.Fatalf("dead letter %+v, want the record on ns.herald.orders.v1.dlq", dl)
	}
	for h, want := range map[string]string{
		consumer.HeaderDLQTopic: "ns.herald.orders.v1", consumer.HeaderDLQPartition: "2", consumer.HeaderDLQOffset: "7",
		consumer.HeaderDLQGroup: "ns.herald-risk", consumer.HeaderDLQClass: consumer.ClassPermanent,
		consumer.HeaderDLQError: "bad value", consumer.HeaderDLQAttempts: "1", event.HeaderID: "ev-1",
	} {
		if got, _ := dl.Header(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if dl := e.DeadLetter(ctx, in, consumer.Permanent(errors.New("bad value"))); dl != nil {
		t.Fatal("dead-lettered while stopping")
	}
}
