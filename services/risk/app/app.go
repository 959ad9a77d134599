// Package app holds the risk use case: assess an order from its
// OrderCreated event and describe the outcome as a RiskAssessed event. It has
// no state and no side effects; publishing is the ports' business.
package app

import (
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	riskv1 "github.com/herald-events/herald/gen/go/herald/risk/v1"
	"github.com/herald-events/herald/services/risk/domain"
)

// App implements the use case.
type App struct {
	policy domain.Policy
}

// New returns the use case with the rules' configuration.
func New(p domain.Policy) *App { return &App{policy: p} }

// Assess scores an order.
func (a *App) Assess(o *ordersv1.OrderCreated) *riskv1.RiskAssessed {
	qs := make([]int64, 0, len(o.GetLines()))
	for _, l := range o.GetLines() {
		qs = append(qs, int64(l.GetQuantity()))
	}
	res := a.policy.Assess(domain.Order{CustomerID: o.GetCustomerId(), TotalUnits: o.GetTotal().GetUnits(), Quantities: qs})
	return &riskv1.RiskAssessed{
		OrderId:    o.GetOrderId(),
		CustomerId: o.GetCustomerId(),
		Score:      int32(res.Score),
		Level:      riskv1.RiskLevel(res.Level),
		Reasons:    res.Reasons,
	}
}
