package dlq_test

import (
	"context"
	"testing"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/dlq"
	"github.com/herald-events/herald/platform/event"
)

type memPublisher struct{ msgs []*bus.Message }

func (p *memPublisher) Publish(_ context.Context, msgs ...*bus.Message) error {
	p.msgs = append(p.msgs, msgs...)
	return nil
}
func (p *memPublisher) Capabilities() bus.Capabilities { return bus.Capabilities{} }
func (p *memPublisher) Close() error                   { return nil }

// TestReplayHeaderless: a dead letter of a record that had no CloudEvents
// headers is replayed, every time, with the id the consumer derived from
// its original position as ce_id; one that had a ce_id keeps it; one with
// neither an id nor a position is refused.
func TestReplayHeaderless(t *testing.T) {
	dead := func(id string, part, off string) *bus.Message {
		m := &bus.Message{Topic: "herald.orders.v1.dlq", Key: []byte("k"), Value: []byte{0, 0, 0, 0, 1, 0}}
		if id != "" {
			m.SetHeader(event.HeaderID, id)
		}
		m.SetHeader(consumer.HeaderDLQTopic, "herald.orders.v1")
		if part != "" {
			m.SetHeader(consumer.HeaderDLQPartition, part)
			m.SetHeader(consumer.HeaderDLQOffset, off)
		}
		m.SetHeader(consumer.HeaderDLQClass, "contract")
		return m
	}
	pub := &memPublisher{}
	msgs := []*bus.Message{dead("", "2", "41"), dead("ev-1", "0", "3")}
	for range 2 {
		if n, err := dlq.Replay(context.Background(), pub, msgs, dlq.Filter{}); err != nil || n != 2 {
			t.Fatalf("Replay = %d, %v", n, err)
		}
	}
	want := []string{consumer.DerivedID("herald.orders.v1", 2, 41), "ev-1"}
	for i, m := range pub.msgs {
		if got := m.MessageID(); got != want[i%2] {
			t.Errorf("replay %d has id %q, want %q", i, got, want[i%2])
		}
		if _, ok := m.Header(consumer.HeaderDLQClass); ok || m.Topic != "herald.orders.v1" {
			t.Errorf("replay %d on %s with headers %v", i, m.Topic, m.Headers)
		}
	}
	if _, err := dlq.Replay(context.Background(), pub, []*bus.Message{dead("", "", "")}, dlq.Filter{}); err == nil {
		t.Fatal("a dead letter without an id or a position was replayed")
	}
}
