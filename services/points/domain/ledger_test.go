package domain_test

import (
	"testing"
	"time"

	"github.com/herald-events/herald/services/points/domain"
)

func TestPointsFor(t *testing.T) {
	cases := []struct {
		name  string
		total domain.Money
		want  int64
	}{
		{"whole units", domain.Money{Currency: "EUR", Units: 10}, 10},
		{"nanos truncated, not rounded", domain.Money{Currency: "EUR", Units: 10, Nanos: 999_999_999}, 10},
		{"half a unit", domain.Money{Currency: "EUR", Units: 7, Nanos: 500_000_000}, 7},
		{"less than one unit", domain.Money{Currency: "EUR", Nanos: 990_000_000}, 0},
		{"zero", domain.Money{Currency: "EUR"}, 0},
		{"negative", domain.Money{Currency: "EUR", Units: -3, Nanos: -500_000_000}, 0},
		{"currency ignored", domain.Money{Currency: "JPY", Units: 1500}, 1500},
		{"large", domain.Money{Currency: "EUR", Units: 1_000_000_000_000}, 1_000_000_000_000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := domain.PointsFor(tc.total); got != tc.want {
				t.Fatalf("PointsFor(%+v) = %d, want %d", tc.total, got, tc.want)
			}
		})
	}
}

func TestAwardAndReverse(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	total := domain.Money{Currency: "EUR", Units: 12, Nanos: 340_000_000}

	award := domain.Award("o-1", "alice", total, nil, now)
	if award == nil || award.Points != 12 || award.Kind != domain.KindAward || award.CustomerID != "alice" || award.OrderID != "o-1" {
		t.Fatalf("Award on a fresh order = %+v, want 12 points for alice", award)
	}
	ledger := []domain.Entry{*award}
	if again := domain.Award("o-1", "alice", total, ledger, now); again != nil {
		t.Fatalf("second Award = %+v, want nil", again)
	}
	if zero := domain.Award("o-2", "alice", domain.Money{Currency: "EUR", Nanos: 900_000_000}, nil, now); zero != nil {
		t.Fatalf("Award of a total under one unit = %+v, want nil", zero)
	}

	rev := domain.Reverse("o-1", ledger, now)
	if rev == nil || rev.Points != -12 || rev.Kind != domain.KindReversal || rev.CustomerID != "alice" {
		t.Fatalf("Reverse = %+v, want -12 for alice", rev)
	}
	ledger = append(ledger, *rev)
	if got := domain.Balance(ledger); got != 0 {
		t.Fatalf("balance after award and reversal = %d, want 0", got)
	}
	if twice := domain.Reverse("o-1", ledger, now); twice != nil {
		t.Fatalf("second Reverse = %+v, want nil", twice)
	}
	if none := domain.Reverse("o-3", nil, now); none != nil {
		t.Fatalf("Reverse without an award = %+v, want nil", none)
	}
	// A cancellation seen first (no award to take back) leaves nothing to
	// write, and a late award must not follow a reversal.
	if late := domain.Award("o-1", "alice", total, []domain.Entry{{OrderID: "o-1", Kind: domain.KindReversal, Points: -12}}, now); late != nil {
		t.Fatalf("Award after a reversal = %+v, want nil", late)
	}
}

func TestBalance(t *testing.T) {
	entries := []domain.Entry{{Points: 10}, {Points: 5}, {Points: -10}}
	if got := domain.Balance(entries); got != 5 {
		t.Fatalf("Balance = %d, want 5", got)
	}
	if got := domain.Balance(nil); got != 0 {
		t.Fatalf("Balance(nil) = %d, want 0", got)
	}
}
