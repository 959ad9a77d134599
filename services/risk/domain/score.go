// Package domain holds the risk rules: pure functions that score an order
// from 0 to 100 and bucket the score into a level.
//
// The rules, each adding to the score when it matches (the reason code in
// brackets is what RiskAssessed.reasons carries):
//
//   - +40 [large_total]: the order total is 1000 units of its currency or
//     more (EUR 1000.00 and up; the total's whole units are compared, so
//     999.99 does not match).
//   - +30 [bulk_order]: the order has 10 lines or more, or any line orders a
//     quantity of 100 or more.
//   - +20 [denied_customer]: the customer id is on the deny list of the
//     [Policy] (exact, case-sensitive match).
//
// The score is the sum, capped at 100 (the rules add up to 90 today). Its
// level: 0–29 [Low], 30–69 [Medium], 70 and above [High].
package domain

import "slices"

// Rule thresholds and points; see the package documentation.
const (
	LargeTotalUnits  = 1000
	LargeTotalPoints = 40
	BulkLines        = 10
	BulkQuantity     = 100
	BulkPoints       = 30
	DeniedPoints     = 20
	MaxScore         = 100
)

// Level thresholds: a score from MediumFrom is [Medium], from HighFrom [High].
const (
	MediumFrom = 30
	HighFrom   = 70
)

// Reason codes, one per rule.
const (
	ReasonLargeTotal     = "large_total"
	ReasonBulkOrder      = "bulk_order"
	ReasonDeniedCustomer = "denied_customer"
)

// Level buckets a score. The values match the RiskLevel enum of the events.
type Level int

// Levels.
const (
	Low    Level = 1
	Medium Level = 2
	High   Level = 3
)

// String names the level.
func (l Level) String() string {
	switch l {
	case Low:
		return "LOW"
	case Medium:
		return "MEDIUM"
	case High:
		return "HIGH"
	}
	return "UNSPECIFIED"
}

// LevelOf buckets a score: below [MediumFrom] is [Low], below [HighFrom]
// [Medium], the rest [High].
func LevelOf(score int) Level {
	switch {
	case score >= HighFrom:
		return High
	case score >= MediumFrom:
		return Medium
	}
	return Low
}

// Order is what the rules look at.
type Order struct {
	CustomerID string
	// TotalUnits is the whole-currency-unit part of the order total.
	TotalUnits int64
	// Quantities holds the quantity of each line.
	Quantities []int64
}

// Assessment is the outcome of the rules for one order.
type Assessment struct {
	Score   int
	Level   Level
	Reasons []string
}

// Policy holds the rules' configuration.
type Policy struct {
	// DenyList are customer ids that add [DeniedPoints].
	DenyList []string
}

// Assess applies the rules to o.
func (p Policy) Assess(o Order) Assessment {
	var a Assessment
	add := func(points int, reason string) {
		a.Score += points
		a.Reasons = append(a.Reasons, reason)
	}
	if o.TotalUnits >= LargeTotalUnits {
		add(LargeTotalPoints, ReasonLargeTotal)
	}
	if len(o.Quantities) >= BulkLines || slices.ContainsFunc(o.Quantities, func(q int64) bool { return q >= BulkQuantity }) {
		add(BulkPoints, ReasonBulkOrder)
	}
	if slices.Contains(p.DenyList, o.CustomerID) {
		add(DeniedPoints, ReasonDeniedCustomer)
	}
	a.Score = min(a.Score, MaxScore)
	a.Level = LevelOf(a.Score)
	return a
}
