package console

import (
	"math"
	"strings"
	"testing"

	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
)

func TestLineDiff(t *testing.T) {
	for _, tc := range []struct {
		name, a, b, want string
	}{
		{"same", "a\nb", "a\nb", "  a|  b"},
		{"added", "a\nc", "a\nb\nc", "  a|+ b|  c"},
		{"removed", "a\nb\nc", "a\nc", "  a|- b|  c"},
		{"changed", "a\nb", "a\nB", "  a|+ B|- b"},
		{"empty to text", "", "x", "+ x|- "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, l := range lineDiff(tc.a, tc.b) {
				got = append(got, l.Op+" "+l.Text)
			}
			if g := strings.Join(got, "|"); g != tc.want {
				t.Errorf("lineDiff(%q, %q) = %q, want %q", tc.a, tc.b, g, tc.want)
			}
		})
	}
}

func TestQuantile(t *testing.T) {
	prev := []bucket{{0.01, 0}, {0.1, 0}, {1, 0}, {math.Inf(1), 0}}
	// 100 observations: 90 up to 10ms, 9 up to 100ms, 1 up to 1s.
	cur := []bucket{{0.01, 90}, {0.1, 99}, {1, 100}, {math.Inf(1), 100}}
	if q := quantile(0.99, prev, cur); math.Abs(q-0.1) > 1e-9 {
		t.Errorf("p99 = %v, want 0.1", q)
	}
	if q := quantile(0.5, prev, cur); q <= 0 || q > 0.01 {
		t.Errorf("p50 = %v, want within the first bucket", q)
	}
	if q := quantile(0.99, cur, cur); !math.IsNaN(q) {
		t.Errorf("no observations between samples: %v, want NaN", q)
	}
}

func TestMoney(t *testing.T) {
	for _, tc := range []struct {
		m    *moneyv1.Money
		want string
	}{
		{&moneyv1.Money{CurrencyCode: "EUR", Units: 6}, "6.00 EUR"},
		{&moneyv1.Money{CurrencyCode: "EUR", Units: 1, Nanos: 500_000_000}, "1.50 EUR"},
		{&moneyv1.Money{CurrencyCode: "USD", Units: 0, Nanos: -50_000_000}, "-0.05 USD"},
		{&moneyv1.Money{CurrencyCode: "USD", Units: -2, Nanos: -990_000_000}, "-2.99 USD"},
		{nil, ""},
	} {
		if got := money(tc.m); got != tc.want {
			t.Errorf("money(%v) = %q, want %q", tc.m, got, tc.want)
		}
	}
}

func TestParseRefAndHost(t *testing.T) {
	if p, o, ok := parseRef("2@15"); !ok || p != 2 || o != 15 {
		t.Errorf("parseRef(2@15) = %d, %d, %v", p, o, ok)
	}
	for _, bad := range []string{"", "2", "a@1", "1@b", "-1@2", "1@-2"} {
		if _, _, ok := parseRef(bad); ok {
			t.Errorf("parseRef(%q) accepted", bad)
		}
	}
	for host, want := range map[string]bool{"127.0.0.1:8082": true, "localhost:8082": true, "[::1]:8082": true,
		"10.0.0.5": true, "evil.example:8082": false, "127.0.0.1.nip.io:8082": false} {
		if got := localHost(host); got != want {
			t.Errorf("localHost(%q) = %v, want %v", host, got, want)
		}
	}
}
