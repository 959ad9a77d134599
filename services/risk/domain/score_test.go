package domain_test

import (
	"slices"
	"testing"

	"github.com/herald-events/herald/services/risk/domain"
)

func TestAssess(t *testing.T) {
	p := domain.Policy{DenyList: []string{"mallory"}}
	lines := func(n int, q int64) []int64 {
		out := make([]int64, n)
		for i := range out {
			out[i] = q
		}
		return out
	}
	cases := []struct {
		name    string
		order   domain.Order
		score   int
		level   domain.Level
		reasons []string
	}{
		{"nothing unusual", domain.Order{CustomerID: "alice", TotalUnits: 10, Quantities: []int64{1, 2}}, 0, domain.Low, nil},
		{"total just below 1000", domain.Order{CustomerID: "alice", TotalUnits: 999, Quantities: []int64{1}}, 0, domain.Low, nil},
		{"total of 1000", domain.Order{CustomerID: "alice", TotalUnits: 1000, Quantities: []int64{1}}, 40, domain.Medium, []string{"large_total"}},
		{"9 lines", domain.Order{CustomerID: "alice", TotalUnits: 9, Quantities: lines(9, 1)}, 0, domain.Low, nil},
		{"10 lines", domain.Order{CustomerID: "alice", TotalUnits: 10, Quantities: lines(10, 1)}, 30, domain.Medium, []string{"bulk_order"}},
		{"quantity 99", domain.Order{CustomerID: "alice", TotalUnits: 99, Quantities: []int64{99}}, 0, domain.Low, nil},
		{"quantity 100", domain.Order{CustomerID: "alice", TotalUnits: 100, Quantities: []int64{1, 100}}, 30, domain.Medium, []string{"bulk_order"}},
		{"many lines and a big one count once", domain.Order{CustomerID: "alice", Quantities: append(lines(10, 1), 500)}, 30, domain.Medium, []string{"bulk_order"}},
		{"denied customer", domain.Order{CustomerID: "mallory", TotalUnits: 5, Quantities: []int64{1}}, 20, domain.Low, []string{"denied_customer"}},
		{"deny list is case-sensitive", domain.Order{CustomerID: "Mallory", Quantities: []int64{1}}, 0, domain.Low, nil},
		{"large and bulk", domain.Order{CustomerID: "alice", TotalUnits: 5000, Quantities: []int64{200}}, 70, domain.High, []string{"large_total", "bulk_order"}},
		{"large and denied", domain.Order{CustomerID: "mallory", TotalUnits: 1000, Quantities: []int64{1}}, 60, domain.Medium, []string{"large_total", "denied_customer"}},
		{"every rule", domain.Order{CustomerID: "mallory", TotalUnits: 1e6, Quantities: lines(12, 100)}, 90, domain.High,
			[]string{"large_total", "bulk_order", "denied_customer"}},
		{"no lines", domain.Order{CustomerID: "alice"}, 0, domain.Low, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := p.Assess(tc.order)
			if got.Score != tc.score || got.Level != tc.level || !slices.Equal(got.Reasons, tc.reasons) {
				t.Fatalf("Assess = %d %s %v, want %d %s %v", got.Score, got.Level, got.Reasons, tc.score, tc.level, tc.reasons)
			}
		})
	}
}

func TestLevelOf(t *testing.T) {
	cases := []struct {
		score int
		want  domain.Level
	}{
		{0, domain.Low}, {29, domain.Low}, {30, domain.Medium}, {69, domain.Medium}, {70, domain.High}, {100, domain.High},
	}
	for _, tc := range cases {
		if got := domain.LevelOf(tc.score); got != tc.want {
			t.Errorf("LevelOf(%d) = %s, want %s", tc.score, got, tc.want)
		}
	}
}

func TestEmptyPolicyDeniesNobody(t *testing.T) {
	if got := (domain.Policy{}).Assess(domain.Order{CustomerID: ""}); got.Score != 0 || got.Reasons != nil {
		t.Fatalf("empty policy, empty customer: %+v", got)
	}
}
