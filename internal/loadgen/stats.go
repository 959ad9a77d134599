package loadgen

import (
	"encoding/json"
	"math"
	"slices"
	"time"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
)

// Latency summarises a set of durations. Percentiles are exact, by the
// nearest-rank method over all samples.
type Latency struct {
	Count int
	Min   time.Duration
	Mean  time.Duration
	P50   time.Duration
	P95   time.Duration
	P99   time.Duration
	Max   time.Duration
}

// Summarize computes the Latency of samples; it sorts samples in place.
func Summarize(samples []time.Duration) Latency {
	n := len(samples)
	if n == 0 {
		return Latency{}
	}
	slices.Sort(samples)
	var sum float64
	for _, s := range samples {
		sum += float64(s)
	}
	return Latency{
		Count: n, Min: samples[0], Max: samples[n-1], Mean: time.Duration(sum / float64(n)),
		P50: Percentile(samples, 50), P95: Percentile(samples, 95), P99: Percentile(samples, 99),
	}
}

// Percentile returns the p-th percentile (0 < p <= 100) of sorted samples by
// the nearest-rank method: the smallest sample with at least p% of the
// samples at or below it. It returns 0 for no samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// The tiny epsilon keeps 95% of 100 at rank 95, not 96, despite the
	// floating-point product.
	rank := int(math.Ceil(p/100*float64(n) - 1e-9))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// MarshalJSON writes the durations as milliseconds.
func (l Latency) MarshalJSON() ([]byte, error) {
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
	return json.Marshal(struct {
		Count int     `json:"count"`
		Min   float64 `json:"min_ms"`
		Mean  float64 `json:"mean_ms"`
		P50   float64 `json:"p50_ms"`
		P95   float64 `json:"p95_ms"`
		P99   float64 `json:"p99_ms"`
		Max   float64 `json:"max_ms"`
	}{l.Count, ms(l.Min), ms(l.Mean), ms(l.P50), ms(l.P95), ms(l.P99), ms(l.Max)})
}

// Order is one order the run placed.
type Order struct {
	// RequestID is the idempotency key; OrderID is empty if the order was
	// never accepted.
	RequestID string
	OrderID   string
	SKU       string
	Quantity  int32
	// Status is the last status seen: PENDING if the order did not reach a
	// final state within the follow timeout.
	Status ordersv1.OrderStatus
	// AcceptedAt is when CreateOrder returned OK; Accept is the time from
	// the first attempt to then, retries included.
	AcceptedAt time.Time
	Accept     time.Duration
	// Final is the time from AcceptedAt to the poll that saw the final
	// status (so it includes up to one poll interval of waiting).
	Final time.Duration
}

// Summary is the outcome of a run. Counts of orders are zero for
// MethodHealth, where Accepted counts successful health checks.
type Summary struct {
	Method     Method
	Target     string
	RunID      string
	CustomerID string
	Seed       uint64
	Started    time.Time
	// Issuing is the time from the first request to the last answer to a
	// request (accepted or not); Following is the time from the first
	// request to the last final state seen.
	Issuing   time.Duration
	Following time.Duration

	// Sent is the number of requests started.
	Sent int
	// Accepted requests returned OK; NotAccepted failed for good (after
	// retries, or interrupted), with a few of their request ids.
	Accepted       int
	NotAccepted    int
	NotAcceptedIDs []string
	// Completed orders reached a final state, counted by status name
	// (CONFIRMED, REJECTED, CANCELLED) in ByStatus; NotCompleted were
	// still pending at the end of the follow timeout, with a few of their
	// order ids.
	Completed       int
	ByStatus        map[string]int
	NotCompleted    int
	NotCompletedIDs []string
	// AcceptedPerSec is Accepted over Issuing; CompletedPerSec is
	// Completed over Following.
	AcceptedPerSec  float64
	CompletedPerSec float64

	// Accept is the latency of accepted requests (first attempt to OK).
	Accept Latency
	// Final is accept to the poll that saw the final state.
	Final Latency
	// Saga is the server's view of the same interval: the order's
	// update_time minus its create_time; no poll interval in it.
	Saga Latency

	// Errors counts failed CreateOrder (or Check) attempts by gRPC code,
	// retried ones included, except those the server shed; Retries counts
	// the attempts repeated.
	Errors  map[string]int
	Retries int
	// Shed counts attempts the server refused for load
	// (RESOURCE_EXHAUSTED), retried ones included: the server protecting
	// its latency, not a failure. They are not in Errors.
	Shed int
	// Polls counts ListOrders and GetOrder calls made to follow orders;
	// PollErrors counts the failed ones by gRPC code.
	Polls      int
	PollErrors map[string]int
	// FollowRows counts the orders those calls returned: the follower's
	// cost to the server.
	FollowRows int

	// Orders lists every order the run placed, accepted or not, in request
	// order.
	Orders []Order
}

// AcceptedIDs returns the order ids of the accepted orders.
func (s *Summary) AcceptedIDs() []string {
	ids := make([]string, 0, s.Accepted)
	for _, o := range s.Orders {
		if o.OrderID != "" {
			ids = append(ids, o.OrderID)
		}
	}
	return ids
}

// MarshalJSON writes the summary without the order list, with durations in
// seconds.
func (s Summary) MarshalJSON() ([]byte, error) {
	sec := func(d time.Duration) float64 { return math.Round(float64(d)/1e6) / 1e3 }
	rate := func(r float64) float64 { return math.Round(r*10) / 10 }
	return json.Marshal(struct {
		Method          Method         `json:"method"`
		Target          string         `json:"target"`
		RunID           string         `json:"run_id"`
		CustomerID      string         `json:"customer_id,omitempty"`
		Seed            uint64         `json:"seed"`
		Started         time.Time      `json:"started"`
		Issuing         float64        `json:"issuing_s"`
		Following       float64        `json:"following_s"`
		Sent            int            `json:"sent"`
		Accepted        int            `json:"accepted"`
		NotAccepted     int            `json:"not_accepted"`
		NotAcceptedIDs  []string       `json:"not_accepted_request_ids,omitempty"`
		Completed       int            `json:"completed"`
		ByStatus        map[string]int `json:"by_status,omitempty"`
		NotCompleted    int            `json:"not_completed"`
		NotCompletedIDs []string       `json:"not_completed_order_ids,omitempty"`
		AcceptedPerSec  float64        `json:"accepted_per_s"`
		CompletedPerSec float64        `json:"completed_per_s"`
		Accept          Latency        `json:"accept_latency"`
		Final           Latency        `json:"final_latency"`
		Saga            Latency        `json:"saga_latency"`
		Errors          map[string]int `json:"errors,omitempty"`
		Shed            int            `json:"shed"`
		Retries         int            `json:"retries"`
		Polls           int            `json:"polls"`
		PollErrors      map[string]int `json:"poll_errors,omitempty"`
		FollowRows      int            `json:"follow_rows"`
	}{
		s.Method, s.Target, s.RunID, s.CustomerID, s.Seed, s.Started, sec(s.Issuing), sec(s.Following),
		s.Sent, s.Accepted, s.NotAccepted, s.NotAcceptedIDs, s.Completed, s.ByStatus, s.NotCompleted, s.NotCompletedIDs,
		rate(s.AcceptedPerSec), rate(s.CompletedPerSec), s.Accept, s.Final, s.Saga, s.Errors, s.Shed, s.Retries, s.Polls, s.PollErrors,
		s.FollowRows,
	})
}

// Snapshot is the progress of a running run.
type Snapshot struct {
	Elapsed time.Duration
	// Sent requests were started; InFlight of them have no answer yet.
	Sent     int
	InFlight int
	Accepted int
	// Pending orders are accepted and not yet final.
	Pending     int
	Completed   int
	NotAccepted int
	Errors      int
	// Shed attempts were refused by the server for load.
	Shed    int
	Retries int
	// AcceptRate and CompleteRate are per second over the last interval.
	AcceptRate   float64
	CompleteRate float64
}

// perSec is n over d in seconds, 0 for no time.
func perSec(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
