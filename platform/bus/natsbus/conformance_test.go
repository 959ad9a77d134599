package natsbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/bustest"
	"github.com/herald-events/herald/platform/bus/natsbus"
)

// TestConformance runs the shared bus conformance suite against the
// JetStream server of scripts/infra/nats.sh.
func TestConformance(t *testing.T) {
	url := serverURL(t)
	j := js(t)
	bustest.Run(t, bustest.Backend{
		Name: "nats",
		Prepare: func(t *testing.T, topics ...string) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := natsbus.EnsureStreams(ctx, j, topics...); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				for _, tp := range topics {
					for _, s := range []string{natsbus.StreamName(tp), natsbus.StreamName(tp + ".dlq")} {
						_ = j.DeleteStream(ctx, s)
					}
				}
			})
		},
		NewPublisher: func(t *testing.T) bus.Publisher {
			p, err := natsbus.NewPublisher(natsbus.URL(url), natsbus.Logger(quiet()))
			if err != nil {
				t.Fatal(err)
			}
			return p
		},
		NewSubscriber: func(t *testing.T, grace time.Duration) bus.Subscriber {
			s, err := natsbus.NewSubscriber(natsbus.URL(url), natsbus.Logger(quiet()), natsbus.ShutdownGrace(grace),
				natsbus.FetchWait(200*time.Millisecond), natsbus.RetryBackoff(10*time.Millisecond, 100*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Timeout: 30 * time.Second,
	})
}
