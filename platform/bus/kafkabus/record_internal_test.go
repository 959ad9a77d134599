package kafkabus

import (
	"testing"

	"github.com/herald-events/herald/platform/bus"
)

// TestRecordID: Kafka carries a message's ID in the ce_id header; an ID
// alone gets one, a header alone is kept, and a consumed record's ID is
// its header's value.
func TestRecordID(t *testing.T) {
	byHeader := &bus.Message{Topic: "t", Headers: []bus.Header{{Key: "a", Value: []byte("1")}, {Key: bus.HeaderID, Value: []byte("id-header")}}}
	for _, c := range []struct {
		name    string
		m       *bus.Message
		want    string
		headers int
	}{
		{"id only", &bus.Message{Topic: "t", ID: "id-field"}, "id-field", 1},
		{"id and other headers", &bus.Message{Topic: "t", ID: "id-field", Headers: []bus.Header{{Key: "a", Value: []byte("1")}}}, "id-field", 2},
		{"header only", byHeader, "id-header", 2},
		{"both", &bus.Message{Topic: "t", ID: "id-header", Headers: byHeader.Headers}, "id-header", 2},
		{"neither", &bus.Message{Topic: "t"}, "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := toRecord(c.m)
			if len(r.Headers) != c.headers {
				t.Errorf("record has %d headers, want %d: %v", len(r.Headers), c.headers, r.Headers)
			}
			got := fromRecord(r)
			if got.ID != c.want {
				t.Errorf("consumed ID %q, want %q", got.ID, c.want)
			}
			if v, _ := got.Header(bus.HeaderID); v != c.want {
				t.Errorf("consumed %s header %q, want %q", bus.HeaderID, v, c.want)
			}
		})
	}
}

// TestSystem: every kafkabus publisher, including the one a handler gets
// for its delivery, and the subscriber name the messaging system "kafka".
func TestSystem(t *testing.T) {
	for name, c := range map[string]bus.Capabilities{
		"publisher":         (&Publisher{}).Capabilities(),
		"session publisher": (&sessionPublisher{}).Capabilities(),
		"subscriber":        (&Subscriber{}).Capabilities(),
	} {
		if c.System != "kafka" {
			t.Errorf("%s: System %q, want kafka", name, c.System)
		}
	}
}
