package kafkabus

import (
	"fmt"
	"strconv"
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
			for i, h := range c.m.Headers {
				if r.Headers[i].Key != h.Key || string(r.Headers[i].Value) != string(h.Value) {
					t.Errorf("record header %d is %s=%q, want the message's %s=%q", i, r.Headers[i].Key, r.Headers[i].Value, h.Key, h.Value)
				}
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

// TestRecordsOfABatch: a batch's records carry each message's own headers,
// whether shared with the message (it has its ID header) or copied with an
// ID header added, and in the order of the messages.
func TestRecordsOfABatch(t *testing.T) {
	var msgs []*bus.Message
	for i := range 6 {
		m := &bus.Message{Topic: "t", ID: fmt.Sprintf("id-%d", i), Key: []byte{byte('a' + i)},
			Headers: []bus.Header{{Key: "n", Value: []byte(strconv.Itoa(i))}}}
		if i%2 == 0 {
			m.Headers = append(m.Headers, bus.Header{Key: bus.HeaderID, Value: []byte(m.ID)})
		}
		msgs = append(msgs, m)
	}
	for i, r := range toRecords(msgs) {
		if string(r.Key) != string(msgs[i].Key) {
			t.Fatalf("record %d has key %q, want %q", i, r.Key, msgs[i].Key)
		}
		var n, id string
		for _, h := range r.Headers {
			switch h.Key {
			case "n":
				n = string(h.Value)
			case bus.HeaderID:
				id = string(h.Value)
			}
		}
		if len(r.Headers) != 2 || n != strconv.Itoa(i) || id != msgs[i].ID {
			t.Errorf("record %d headers %v: want n=%d and %s=%s only", i, r.Headers, i, bus.HeaderID, msgs[i].ID)
		}
	}
}
