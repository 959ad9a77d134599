// Package domain holds the inventory rules: an order's lines are deducted
// all together or not at all.
package domain

import (
	"fmt"
	"math"
	"slices"
)

// MaxStock bounds what one SKU holds, available and held by open orders
// together: what orders hold comes back on top of the level when they are
// cancelled, and the sum must stay an integer (a SQLite column turns to
// REAL past it, and PostgreSQL refuses).
const MaxStock = math.MaxInt64

// FitsLevel reports whether a SKU can be set to available while open orders
// hold held of it: held must still fit on top when they are cancelled.
func FitsLevel(available, held int64) bool {
	return available >= 0 && held >= 0 && held <= MaxStock-available
}

// FailureReason says why a deduction was refused. The values match the
// DeductionFailureReason enum of the events.
type FailureReason int

// Failure reasons.
const (
	InsufficientStock FailureReason = 1
	UnknownSKU        FailureReason = 2
)

// Line is a quantity of one SKU.
type Line struct {
	SKU      string
	Quantity int64
}

// Failure describes a refused deduction: the first SKU that failed.
type Failure struct {
	Reason    FailureReason
	SKU       string
	Requested int64
	Available int64
}

func (f *Failure) Error() string {
	if f.Reason == UnknownSKU {
		return fmt.Sprintf("unknown sku %s", f.SKU)
	}
	return fmt.Sprintf("insufficient stock for %s: requested %d, available %d", f.SKU, f.Requested, f.Available)
}

// Merge adds up lines of the same SKU and sorts them by SKU, so that a
// deduction touches each SKU once and in a stable order.
func Merge(lines []Line) []Line {
	sum := map[string]int64{}
	for _, l := range lines {
		sum[l.SKU] += l.Quantity
	}
	out := make([]Line, 0, len(sum))
	for sku, q := range sum {
		out = append(out, Line{SKU: sku, Quantity: q})
	}
	slices.SortFunc(out, func(a, b Line) int {
		switch {
		case a.SKU < b.SKU:
			return -1
		case a.SKU > b.SKU:
			return 1
		}
		return 0
	})
	return out
}

// Check decides whether merged lines can be deducted from the available
// stock (a SKU missing from the map is unknown). It returns nil when every
// line fits.
func Check(merged []Line, available map[string]int64) *Failure {
	for _, l := range merged {
		have, ok := available[l.SKU]
		if !ok {
			return &Failure{Reason: UnknownSKU, SKU: l.SKU, Requested: l.Quantity}
		}
		if have < l.Quantity {
			return &Failure{Reason: InsufficientStock, SKU: l.SKU, Requested: l.Quantity, Available: have}
		}
	}
	return nil
}
