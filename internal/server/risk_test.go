package server_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	riskv1 "github.com/herald-events/herald/gen/go/herald/risk/v1"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/schema"
)

const riskAssessed = "herald.risk.v1.RiskAssessed"

// assessments waits until every order in ids has a RiskAssessed and
// returns the RiskAssessed records by order id.
func (s *stack) assessments(t *testing.T, ids ...string) map[string][]*kgo.Record {
	t.Helper()
	var by map[string][]*kgo.Record
	eventually(t, 30*time.Second, func() bool {
		by = map[string][]*kgo.Record{}
		for _, r := range s.read(t, "herald.risk.v1", isType(riskAssessed)) {
			by[string(r.Key)] = append(by[string(r.Key)], r)
		}
		for _, id := range ids {
			if len(by[id]) == 0 {
				return false
			}
		}
		return true
	}, "a RiskAssessed for each of %v", ids)
	return by
}

func (s *stack) decodeRisk(t *testing.T, r *kgo.Record) *riskv1.RiskAssessed {
	t.Helper()
	cl, err := schema.NewClient(s.proc.RegistryURL(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	codec, err := schema.NewCodec(cl)
	if err != nil {
		t.Fatal(err)
	}
	m, err := codec.Decode(r.Topic, r.Value)
	if err != nil {
		t.Fatalf("decode %s/%d@%d: %v", r.Topic, r.Partition, r.Offset, err)
	}
	ra, ok := m.(*riskv1.RiskAssessed)
	if !ok {
		t.Fatalf("%s/%d@%d decodes as %T", r.Topic, r.Partition, r.Offset, m)
	}
	return ra
}

func traceID(traceparent string) string {
	if parts := strings.Split(traceparent, "-"); len(parts) == 4 {
		return parts[1]
	}
	return ""
}

// TestRiskAssessesEachOrderOnce: every created order yields exactly one
// RiskAssessed with the documented score, CloudEvents headers and the
// order's trace; a restart assesses nothing again.
func TestRiskAssessesEachOrderOnce(t *testing.T) {
	dir := t.TempDir()
	s := startProcess(t, dir, nil)
	line := func(sku string, qty int32, units int64) *ordersv1.LineItem {
		return &ordersv1.LineItem{Sku: sku, Quantity: qty, UnitPrice: eur(units, 0)}
	}
	many := make([]*ordersv1.LineItem, 10)
	for i := range many {
		many[i] = line("SKU"+string(rune('A'+i)), 1, 1)
	}
	cases := []struct {
		name    string
		req     *ordersv1.CreateOrderRequest
		score   int32
		level   riskv1.RiskLevel
		reasons []string
	}{
		{"small", &ordersv1.CreateOrderRequest{CustomerId: "alice", Items: []*ordersv1.LineItem{item("APPLE", 2)}},
			0, riskv1.RiskLevel_RISK_LEVEL_LOW, nil},
		{"large total", &ordersv1.CreateOrderRequest{CustomerId: "carol", Items: []*ordersv1.LineItem{line("TV", 2, 500)}},
			40, riskv1.RiskLevel_RISK_LEVEL_MEDIUM, []string{"large_total"}},
		{"ten lines", &ordersv1.CreateOrderRequest{CustomerId: "dave", Items: many},
			30, riskv1.RiskLevel_RISK_LEVEL_MEDIUM, []string{"bulk_order"}},
		{"big order of a denied customer", &ordersv1.CreateOrderRequest{CustomerId: "mallory", Items: []*ordersv1.LineItem{line("GOLD", 100, 20)}},
			90, riskv1.RiskLevel_RISK_LEVEL_HIGH, []string{"large_total", "bulk_order", "denied_customer"}},
	}
	ids := make([]string, len(cases))
	for i, tc := range cases {
		ids[i] = s.create(t, tc.req).GetOrderId()
	}
	by := s.assessments(t, ids...)
	created := map[string]*kgo.Record{}
	for _, r := range s.read(t, "herald.orders.v1", isType("herald.orders.v1.OrderCreated")) {
		created[string(r.Key)] = r
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := ids[i]
			if len(by[id]) != 1 {
				t.Fatalf("%d RiskAssessed for order %s, want 1", len(by[id]), id)
			}
			r := by[id][0]
			ra := s.decodeRisk(t, r)
			if ra.GetOrderId() != id || ra.GetCustomerId() != tc.req.GetCustomerId() || ra.GetScore() != tc.score ||
				ra.GetLevel() != tc.level || !slices.Equal(ra.GetReasons(), tc.reasons) {
				t.Fatalf("RiskAssessed = %v, want %s %s score %d %s %v", ra, id, tc.req.GetCustomerId(), tc.score, tc.level, tc.reasons)
			}
			want := map[string]string{
				event.HeaderType: riskAssessed, event.HeaderSource: "herald/risk", event.HeaderSpecVersion: event.SpecVersion,
				event.HeaderSubject: id, event.HeaderContentType: event.ContentType,
			}
			for h, v := range want {
				if got := header(r, h); got != v {
					t.Errorf("header %s = %q, want %q", h, got, v)
				}
			}
			if header(r, event.HeaderID) == "" || header(r, event.HeaderID) == header(created[id], event.HeaderID) {
				t.Errorf("ce_id %q: want a new id, not the OrderCreated's", header(r, event.HeaderID))
			}
			if _, err := time.Parse(time.RFC3339Nano, header(r, event.HeaderTime)); err != nil {
				t.Errorf("ce_time: %v", err)
			}
			if got, want := traceID(header(r, event.HeaderTraceParent)), traceID(header(created[id], event.HeaderTraceParent)); got == "" || got != want {
				t.Errorf("traceparent %q does not continue the OrderCreated's %q",
					header(r, event.HeaderTraceParent), header(created[id], event.HeaderTraceParent))
			}
		})
	}

	body := s.metrics(t)
	for _, want := range []string{
		`herald_events_consumed_total{group="` + s.group("herald-risk") + `",result="ok",type="herald.orders.v1.OrderCreated"} 4`,
		`herald_events_published_total{service="risk",type="herald.risk.v1.RiskAssessed"} 4`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, `herald_outbox_pending{service="risk"}`) {
		t.Error("/metrics has an outbox backlog for risk, which has no outbox")
	}

	// The consumed offsets were committed with the assessments: a restart
	// carries on after them.
	if err := s.proc.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := startProcess(t, dir, nil)
	next := s2.create(t, &ordersv1.CreateOrderRequest{CustomerId: "erin", Items: []*ordersv1.LineItem{item("APPLE", 1)}}).GetOrderId()
	by = s2.assessments(t, append(ids, next)...)
	for _, id := range append(ids, next) {
		if len(by[id]) != 1 {
			t.Errorf("%d RiskAssessed for order %s after a restart, want 1", len(by[id]), id)
		}
	}
}

// TestRiskDeadLettersUnreadableOrderCreated: a record that says it is an
// OrderCreated but cannot be decoded goes to the dead-letter topic with the
// risk group's dead-letter headers, and later orders are still assessed.
// A record without CloudEvents headers is dead-lettered for its missing
// ce_id, as every consumer group does (risk is an ordinary module).
func TestRiskDeadLettersUnreadableOrderCreated(t *testing.T) {
	s := startProcess(t, t.TempDir(), nil)
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.proc.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	typed := func(id string) []kgo.RecordHeader {
		return []kgo.RecordHeader{{Key: event.HeaderType, Value: []byte("herald.orders.v1.OrderCreated")}, {Key: event.HeaderID, Value: []byte(id)}}
	}
	poison := []*kgo.Record{
		{Topic: s.topic("herald.orders.v1"), Key: []byte("bad-1"), Value: []byte("not protobuf"), Headers: typed("bad-1")},
		{Topic: s.topic("herald.orders.v1"), Key: []byte("bad-2"), Value: []byte{0, 0, 0, 0x7f, 0x7f, 0, 1, 2}, Headers: typed("bad-2")},
		{Topic: s.topic("herald.orders.v1"), Key: []byte("bad-3"), Value: []byte("no headers")},
	}
	if err := cl.ProduceSync(callCtx(t), poison...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "alice", Items: []*ordersv1.LineItem{item("APPLE", 1)}})
	s.assessments(t, o.GetOrderId())

	fromRisk := func(r *kgo.Record) bool { return header(r, consumer.HeaderDLQGroup) == s.group("herald-risk") }
	dead := s.read(t, "herald.orders.v1.dlq", fromRisk)
	if len(dead) != 3 {
		t.Fatalf("%d dead letters from risk, want the 3 unreadable records", len(dead))
	}
	for _, r := range dead {
		if !strings.HasPrefix(string(r.Key), "bad-") {
			t.Errorf("dead letter %s, want bad-1, bad-2 and bad-3", r.Key)
		}
		if string(r.Key) == "bad-3" {
			// Without CloudEvents headers a record is judged by its framing
			// (see TestHeaderlessEvent): this one has none.
			if reason := header(r, consumer.HeaderDLQError); !strings.Contains(reason, "undecodable") {
				t.Errorf("dead letter bad-3 reason %q, want it named undecodable", reason)
			}
			continue
		}
		if header(r, consumer.HeaderDLQTopic) != s.topic("herald.orders.v1") || header(r, consumer.HeaderDLQClass) != consumer.ClassPermanent ||
			header(r, consumer.HeaderDLQOffset) == "" || header(r, consumer.HeaderDLQPartition) == "" || header(r, consumer.HeaderDLQTime) == "" ||
			header(r, consumer.HeaderDLQAttempts) != "1" || header(r, event.HeaderID) != string(r.Key) {
			t.Errorf("dead letter %s headers: %v", r.Key, r.Headers)
		}
		if reason := header(r, consumer.HeaderDLQError); !strings.Contains(reason, "undecodable") {
			t.Errorf("dead letter %s reason %q does not say why", r.Key, reason)
		}
	}
}
