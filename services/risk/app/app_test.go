package app_test

import (
	"slices"
	"testing"

	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	riskv1 "github.com/herald-events/herald/gen/go/herald/risk/v1"
	"github.com/herald-events/herald/services/risk/app"
	"github.com/herald-events/herald/services/risk/domain"
)

func TestAssess(t *testing.T) {
	a := app.New(domain.Policy{DenyList: []string{"mallory"}})
	cases := []struct {
		name    string
		in      *ordersv1.OrderCreated
		score   int32
		level   riskv1.RiskLevel
		reasons []string
	}{
		{"small", &ordersv1.OrderCreated{OrderId: "o1", CustomerId: "alice",
			Lines: []*ordersv1.OrderLine{{Sku: "A", Quantity: 2}}, Total: &moneyv1.Money{CurrencyCode: "EUR", Units: 5}},
			0, riskv1.RiskLevel_RISK_LEVEL_LOW, nil},
		{"large bulk order of a denied customer", &ordersv1.OrderCreated{OrderId: "o2", CustomerId: "mallory",
			Lines: []*ordersv1.OrderLine{{Sku: "A", Quantity: 400}}, Total: &moneyv1.Money{CurrencyCode: "EUR", Units: 1000}},
			90, riskv1.RiskLevel_RISK_LEVEL_HIGH, []string{"large_total", "bulk_order", "denied_customer"}},
		{"no total", &ordersv1.OrderCreated{OrderId: "o3", CustomerId: "bob"}, 0, riskv1.RiskLevel_RISK_LEVEL_LOW, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := a.Assess(tc.in)
			if got.GetOrderId() != tc.in.GetOrderId() || got.GetCustomerId() != tc.in.GetCustomerId() ||
				got.GetScore() != tc.score || got.GetLevel() != tc.level || !slices.Equal(got.GetReasons(), tc.reasons) {
				t.Fatalf("Assess = %v, want %s/%s %d %s %v", got, tc.in.GetOrderId(), tc.in.GetCustomerId(), tc.score, tc.level, tc.reasons)
			}
		})
	}
}
