package domain_test

import (
	"testing"
	"time"

	"github.com/herald-events/herald/services/notification/domain"
)

func TestMoneyString(t *testing.T) {
	cases := []struct {
		m    domain.Money
		want string
	}{
		{domain.Money{Currency: "EUR", Units: 7, Nanos: 500_000_000}, "EUR 7.50"},
		{domain.Money{Currency: "EUR", Units: 10}, "EUR 10.00"},
		{domain.Money{Currency: "USD", Nanos: 125_000_000}, "USD 0.125"},
		{domain.Money{Currency: "EUR", Units: -2, Nanos: -10_000_000}, "EUR -2.01"},
		{domain.Money{Currency: "JPY", Units: 1500, Nanos: 1}, "JPY 1500.000000001"},
	}
	for _, tc := range cases {
		if got := tc.m.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.m, got, tc.want)
		}
	}
}

func TestTexts(t *testing.T) {
	if got, want := domain.ConfirmedText("o-1", domain.Money{Currency: "EUR", Units: 4, Nanos: 500_000_000}), "Your order o-1 is confirmed. Total: EUR 4.50."; got != want {
		t.Errorf("ConfirmedText = %q, want %q", got, want)
	}
	if got, want := domain.RejectedText("o-2", "UNKNOWN_SKU: sku KIWI is not stocked"), "Sorry, your order o-2 could not be accepted: UNKNOWN_SKU: sku KIWI is not stocked."; got != want {
		t.Errorf("RejectedText = %q, want %q", got, want)
	}
	if got, want := domain.RejectedText("o-2", ""), "Sorry, your order o-2 could not be accepted."; got != want {
		t.Errorf("RejectedText without reason = %q, want %q", got, want)
	}
	if got, want := domain.CancelledText("o-3"), "Your order o-3 has been cancelled."; got != want {
		t.Errorf("CancelledText = %q, want %q", got, want)
	}
}

func TestPolicyDelay(t *testing.T) {
	p := domain.Policy{MaxRounds: 10, Backoff: time.Second, MaxBackoff: 5 * time.Second}
	for failed, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 5 * time.Second, 60: 5 * time.Second} {
		if got := p.Delay(failed); got != want {
			t.Errorf("Delay(%d) = %s, want %s", failed, got, want)
		}
	}
}

func TestDeliveryStates(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	p := domain.Policy{MaxRounds: 3, Backoff: time.Second, MaxBackoff: time.Minute}

	t.Run("new is pending and due", func(t *testing.T) {
		n := domain.New("n-1", "o-1", "alice", domain.KindConfirmed, "hi", now)
		if n.Status != domain.StatusPending || !n.NextAttempt.Equal(now) || n.Attempts != 0 {
			t.Fatalf("New = %+v", n)
		}
	})
	t.Run("transient failures back off, then give up", func(t *testing.T) {
		n := domain.New("n-1", "o-1", "alice", domain.KindConfirmed, "hi", now)
		n.MarkFailed("503", false, now, p)
		if n.Status != domain.StatusPending || n.Attempts != 1 || !n.NextAttempt.Equal(now.Add(time.Second)) || n.LastError != "503" {
			t.Fatalf("after one failure: %+v", n)
		}
		n.MarkFailed("503", false, now, p)
		if n.Status != domain.StatusPending || !n.NextAttempt.Equal(now.Add(2*time.Second)) {
			t.Fatalf("after two failures: %+v", n)
		}
		n.MarkFailed("503", false, now, p)
		if n.Status != domain.StatusFailed || n.Attempts != 3 {
			t.Fatalf("after MaxRounds failures: %+v, want FAILED", n)
		}
	})
	t.Run("refused fails at once", func(t *testing.T) {
		n := domain.New("n-1", "o-1", "alice", domain.KindConfirmed, "hi", now)
		n.MarkFailed("400", true, now, p)
		if n.Status != domain.StatusFailed || n.Attempts != 1 {
			t.Fatalf("after a refusal: %+v, want FAILED", n)
		}
	})
	t.Run("delivered after a failure", func(t *testing.T) {
		n := domain.New("n-1", "o-1", "alice", domain.KindConfirmed, "hi", now)
		n.MarkFailed("timeout", false, now, p)
		later := now.Add(time.Second)
		n.MarkDelivered(later)
		if n.Status != domain.StatusDelivered || n.Attempts != 2 || !n.Delivered.Equal(later) || n.LastError != "" {
			t.Fatalf("after delivery: %+v", n)
		}
	})
}
