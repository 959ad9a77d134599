// Package domain holds the logistics rules: the state machine of the
// shipment of one order.
//
// A shipment is reserved when inventory deducted the order's stock
// (InventoryDeducted) and released when the order is cancelled
// (OrderCancelled). The two events travel on different topics, so a cancel
// can arrive before the deduction; then the cancellation is recorded as a
// released shipment with no lines, and the late deduction does not reserve
// it. Every transition is idempotent:
//
//	(none)   --Reserve--> RESERVED
//	(none)   --Release--> RELEASED (no lines; cancelled first)
//	RESERVED --Release--> RELEASED (keeps its lines)
//	RESERVED --Reserve--> RESERVED (unchanged)
//	RELEASED --Reserve--> RELEASED (unchanged: never reserve after a cancel)
//	RELEASED --Release--> RELEASED (unchanged)
package domain

import (
	"fmt"
	"time"
)

// Status is where a shipment stands. The values match the ShipmentStatus
// enum of the API.
type Status int

// Shipment statuses.
const (
	StatusReserved Status = 1
	StatusReleased Status = 2
)

func (s Status) String() string {
	switch s {
	case StatusReserved:
		return "RESERVED"
	case StatusReleased:
		return "RELEASED"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Line is a quantity of one SKU.
type Line struct {
	SKU      string
	Quantity int32
}

// Shipment is the shipment of one order.
type Shipment struct {
	OrderID string
	Status  Status
	// Lines are what was reserved; empty when the order was cancelled
	// before it was reserved.
	Lines   []Line
	Created time.Time
	Updated time.Time
}

// Reserve applies a deduction of lines to the shipment cur of orderID (nil
// when there is none yet). It returns the shipment to store and whether it
// changed; only a shipment that does not exist yet is reserved.
func Reserve(cur *Shipment, orderID string, lines []Line, now time.Time) (*Shipment, bool) {
	if cur != nil {
		return cur, false
	}
	return &Shipment{OrderID: orderID, Status: StatusReserved, Lines: lines, Created: now, Updated: now}, true
}

// Release applies a cancellation to the shipment cur of orderID (nil when
// there is none yet). It returns the shipment to store and whether it
// changed: a reserved shipment is released, and an unknown one is recorded
// as released so that a later deduction does not reserve it.
func Release(cur *Shipment, orderID string, now time.Time) (*Shipment, bool) {
	switch {
	case cur == nil:
		return &Shipment{OrderID: orderID, Status: StatusReleased, Created: now, Updated: now}, true
	case cur.Status == StatusReleased:
		return cur, false
	}
	next := *cur
	next.Status = StatusReleased
	next.Updated = now
	return &next, true
}
