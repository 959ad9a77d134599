package rabbitbus_test

import (
	"testing"
	"time"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/bustest"
	"github.com/herald-events/herald/platform/bus/rabbitbus"
)

// TestConformance runs the shared bus conformance suite against the broker
// of scripts/infra/rabbitmq.sh.
func TestConformance(t *testing.T) {
	url := serverURL(t)
	bustest.Run(t, bustest.Backend{
		Name: "rabbitmq",
		Prepare: func(t *testing.T, topics ...string) {
			t.Helper()
			prepare(t, url, topics...)
		},
		NewPublisher: func(t *testing.T) bus.Publisher {
			t.Helper()
			p, err := rabbitbus.NewPublisher(rabbitbus.URL(url), rabbitbus.Logger(quiet()))
			if err != nil {
				t.Fatal(err)
			}
			return p
		},
		NewSubscriber: func(t *testing.T, grace time.Duration) bus.Subscriber {
			t.Helper()
			s, err := rabbitbus.NewSubscriber(rabbitbus.URL(url), rabbitbus.Logger(quiet()), rabbitbus.ShutdownGrace(grace),
				rabbitbus.RetryBackoff(10*time.Millisecond, 100*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Timeout: 30 * time.Second,
	})
}
