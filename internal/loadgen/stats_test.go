package loadgen

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestSummarizeKnownInputs(t *testing.T) {
	// 1..100 ms, shuffled: nearest rank gives the p-th value exactly.
	var samples []time.Duration
	for i := 100; i >= 1; i-- {
		samples = append(samples, ms(i))
	}
	got := Summarize(samples)
	want := Latency{Count: 100, Min: ms(1), Mean: 50500 * time.Microsecond, P50: ms(50), P95: ms(95), P99: ms(99), Max: ms(100)}
	if got != want {
		t.Fatalf("Summarize(1..100ms) = %+v, want %+v", got, want)
	}
}

func TestPercentileNearestRank(t *testing.T) {
	cases := []struct {
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{nil, 50, 0},
		{[]time.Duration{ms(7)}, 50, ms(7)},
		{[]time.Duration{ms(7)}, 99, ms(7)},
		{[]time.Duration{ms(1), ms(2)}, 50, ms(1)},
		{[]time.Duration{ms(1), ms(2)}, 51, ms(2)},
		{[]time.Duration{ms(1), ms(2), ms(3), ms(4)}, 75, ms(3)},
		{[]time.Duration{ms(1), ms(2), ms(3), ms(4)}, 100, ms(4)},
		// 10 samples: p99 is the 10th, p90 the 9th.
		{[]time.Duration{ms(1), ms(2), ms(3), ms(4), ms(5), ms(6), ms(7), ms(8), ms(9), ms(1000)}, 99, ms(1000)},
		{[]time.Duration{ms(1), ms(2), ms(3), ms(4), ms(5), ms(6), ms(7), ms(8), ms(9), ms(1000)}, 90, ms(9)},
	}
	for _, tc := range cases {
		if got := Percentile(tc.samples, tc.p); got != tc.want {
			t.Errorf("Percentile(%v, %g) = %s, want %s", tc.samples, tc.p, got, tc.want)
		}
	}
}

func TestSummarizeEmpty(t *testing.T) {
	if got := Summarize(nil); got != (Latency{}) {
		t.Fatalf("Summarize(nil) = %+v, want zero", got)
	}
}

func TestSummaryJSON(t *testing.T) {
	s := Summary{
		Method: MethodOrder, Accepted: 3, Completed: 2, NotCompleted: 1, NotCompletedIDs: []string{"o3"},
		ByStatus: map[string]int{"CONFIRMED": 1, "REJECTED": 1}, Issuing: 1500 * time.Millisecond,
		Accept: Summarize([]time.Duration{ms(1), ms(2), ms(3)}), Orders: []Order{{RequestID: "r1"}},
		AcceptedPerSec: 2.04,
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"issuing_s":1.5`, `"p50_ms":2`, `"max_ms":3`, `"not_completed_order_ids":["o3"]`, `"accepted_per_s":2`, `"REJECTED":1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON %s lacks %s", b, want)
		}
	}
	if strings.Contains(string(b), "r1") {
		t.Errorf("JSON %s holds the order list", b)
	}
}

func TestParseSKUs(t *testing.T) {
	got, err := ParseSKUs(" APPLE=5, PEAR=3,OUTOFSTOCK=1,KIWI", []string{"OUTOFSTOCK"})
	if err != nil {
		t.Fatal(err)
	}
	want := []SKU{{"APPLE", 5, false}, {"PEAR", 3, false}, {"OUTOFSTOCK", 1, true}, {"KIWI", 1, false}}
	if len(got) != len(want) {
		t.Fatalf("ParseSKUs = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ParseSKUs = %v, want %v", got, want)
		}
	}
	for _, bad := range []struct{ mix, oos, want string }{
		{"", "", "no SKUs"},
		{"A=0", "", "at least 1"},
		{"A=x", "", "whole number"},
		{"=3", "", "empty name"},
		{"A=1,A=2", "", "twice"},
		{"A=1", "B", "not in the mix"},
	} {
		var oos []string
		if bad.oos != "" {
			oos = []string{bad.oos}
		}
		if _, err := ParseSKUs(bad.mix, oos); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ParseSKUs(%q, %q) = %v, want error mentioning %q", bad.mix, bad.oos, err, bad.want)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := (Config{Target: "x:1"}).Validate(); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "target"},
		{Config{Target: "x:1", Method: "ping"}, `method "ping"`},
		{Config{Target: "x:1", Follow: "stream"}, `follow "stream"`},
		{Config{Target: "x:1", Concurrency: -1}, "concurrency"},
		{Config{Target: "x:1", Rate: -5}, "rate"},
		{Config{Target: "x:1", Count: -1}, "count"},
		{Config{Target: "x:1", FollowTimeout: -time.Second}, "follow timeout"},
		{Config{Target: "x:1", SKUs: []SKU{{Name: "A"}}}, "weight 0"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want error mentioning %q", tc.cfg, err, tc.want)
		}
	}
}

func TestPickIsSeededAndWeighted(t *testing.T) {
	r := &runner{cfg: Config{Seed: 42, SKUs: []SKU{{Name: "A", Weight: 3}, {Name: "B", Weight: 1}}}, cumulative: []uint64{3, 4}}
	counts := map[string]int{}
	for n := range 4000 {
		sku, qty := r.pick(n)
		if sku2, qty2 := r.pick(n); sku2 != sku || qty2 != qty {
			t.Fatalf("pick(%d) not reproducible", n)
		}
		if qty < 1 || qty > 3 {
			t.Fatalf("pick(%d) quantity %d", n, qty)
		}
		counts[sku]++
	}
	if a := counts["A"]; a < 2800 || a > 3200 {
		t.Fatalf("A picked %d of 4000 times, want about 3000", a)
	}
}
