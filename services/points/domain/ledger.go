// Package domain holds the loyalty rules of the points service.
//
// The earning rule: a confirmed order earns one point per whole currency
// unit of its total. The fractional part (the total's nanos) is dropped,
// never rounded: a total of 10.99 earns 10 points, 0.99 earns none, and a
// zero or negative total earns none. The currency is not looked at: 10 EUR
// and 10 JPY both earn 10 points.
//
// The ledger holds at most one [KindAward] and one [KindReversal] entry per
// order. A cancelled order that earned points gets a reversal of the same
// size, negative, so its points are taken back exactly once; an order that
// earned nothing, or whose points were already taken back, gets none.
package domain

import (
	"fmt"
	"time"
)

// Kind says why an entry was written. The values match the EntryKind enum
// of the API.
type Kind int

// Entry kinds.
const (
	KindAward    Kind = 1
	KindReversal Kind = 2
)

func (k Kind) String() string {
	switch k {
	case KindAward:
		return "AWARD"
	case KindReversal:
		return "REVERSAL"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Money is an amount in whole units and billionths of one currency.
type Money struct {
	Currency string
	Units    int64
	Nanos    int32
}

// Entry is one line of the ledger.
type Entry struct {
	OrderID    string
	CustomerID string
	Kind       Kind
	// Points is positive for an award and negative for a reversal.
	Points  int64
	Created time.Time
}

// PointsFor returns the points an order total earns: its whole units,
// nanos truncated, and zero for a total that is not positive.
func PointsFor(total Money) int64 {
	if total.Units <= 0 {
		return 0
	}
	return total.Units
}

// Award returns the entry awarding the points of a confirmed order, given
// the order's entries so far, or nil when there is nothing to write: the
// order already has an entry (a replay, or a cancellation seen first) or its
// total earns no points.
func Award(orderID, customerID string, total Money, existing []Entry, now time.Time) *Entry {
	if len(existing) > 0 {
		return nil
	}
	p := PointsFor(total)
	if p == 0 {
		return nil
	}
	return &Entry{OrderID: orderID, CustomerID: customerID, Kind: KindAward, Points: p, Created: now}
}

// Reverse returns the entry taking back the points of a cancelled order,
// given the order's entries so far, or nil when nothing was awarded or the
// award was already reversed.
func Reverse(orderID string, existing []Entry, now time.Time) *Entry {
	var award *Entry
	for i, e := range existing {
		switch e.Kind {
		case KindReversal:
			return nil
		case KindAward:
			award = &existing[i]
		}
	}
	if award == nil || award.Points == 0 {
		return nil
	}
	return &Entry{OrderID: orderID, CustomerID: award.CustomerID, Kind: KindReversal, Points: -award.Points, Created: now}
}

// Balance sums the points of entries.
func Balance(entries []Entry) int64 {
	var sum int64
	for _, e := range entries {
		sum += e.Points
	}
	return sum
}
