package consumer_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/observe"
)

// TestCountersStartAtZero: before any message, a router's group exposes
// its failure, retry and dead-letter counters at 0 for each event type it
// handles and each class, so a dashboard shows 0, not "No data", and an
// alert sees the first increase.
func TestCountersStartAtZero(t *testing.T) {
	metrics := observe.New()
	r, err := consumer.NewRouter(consumer.Config{Group: "g", Decoder: plainDecoder{}, DeadLetter: &recorder{}, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	if err := consumer.Handle(r, func(context.Context, *consumer.Event, *ordersv1.OrderCreated) ([]proto.Message, error) {
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	_ = r.Handler()
	rec := httptest.NewRecorder()
	metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	typ := `type="herald.orders.v1.OrderCreated"`
	for _, want := range []string{
		`herald_events_retried_total{group="g",` + typ + `} 0`,
		`herald_events_failed_total{class="transient",group="g",` + typ + `} 0`,
		`herald_events_failed_total{class="permanent",group="g",` + typ + `} 0`,
		`herald_events_failed_total{class="unclassified",group="g",` + typ + `} 0`,
		`herald_events_dead_lettered_total{class="permanent",group="g",` + typ + `} 0`,
		`herald_events_dead_lettered_total{class="retries_exhausted",group="g",` + typ + `} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
