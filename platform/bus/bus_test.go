package bus_test

import (
	"fmt"
	"testing"

	"github.com/herald-events/herald/platform/bus"
)

func ExampleDeadLetterTopic() {
	fmt.Println(bus.DeadLetterTopic("herald.orders.v1"))
	fmt.Println(bus.IsDeadLetterTopic("herald.orders.v1"), bus.IsDeadLetterTopic("herald.orders.v1.dlq"))
	// Output:
	// herald.orders.v1.dlq
	// false true
}

func TestDeadLetterTopicRoundTrip(t *testing.T) {
	for _, topic := range []string{"t", "herald.orders.v1", "ns1.herald.points.v2"} {
		dl := bus.DeadLetterTopic(topic)
		if !bus.IsDeadLetterTopic(dl) {
			t.Errorf("IsDeadLetterTopic(%q) = false for the dead-letter topic of %q", dl, topic)
		}
		if bus.IsDeadLetterTopic(topic) {
			t.Errorf("IsDeadLetterTopic(%q) = true for an ordinary topic", topic)
		}
	}
}
