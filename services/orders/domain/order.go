// Package domain holds the order rules: what a valid order is, how its total
// is computed and which status changes are allowed. It knows nothing of
// storage, gRPC or the bus.
package domain

import (
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/herald-events/herald/platform/apperr"
)

// Status is where an order stands in the saga. The values match the
// OrderStatus enum of the API.
type Status int

// Order statuses.
const (
	StatusPending   Status = 1
	StatusConfirmed Status = 2
	StatusRejected  Status = 3
	StatusCancelled Status = 4
)

func (s Status) String() string {
	switch s {
	case StatusPending:
		return "PENDING"
	case StatusConfirmed:
		return "CONFIRMED"
	case StatusRejected:
		return "REJECTED"
	case StatusCancelled:
		return "CANCELLED"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Limits on what one order may hold.
const (
	MaxLines        = 100
	MaxQuantity     = 10_000
	MaxUnitPrice    = 1_000_000_000 // whole currency units
	MaxIDLength     = 128
	nanosPerUnit    = 1_000_000_000
	maxNanosInField = nanosPerUnit - 1
)

// currencies are the ISO 4217 codes the shop accepts.
var currencies = []string{
	"AED", "AUD", "BGN", "BRL", "CAD", "CHF", "CLP", "CNY", "COP", "CZK", "DKK", "EUR", "GBP", "HKD",
	"HUF", "IDR", "ILS", "INR", "ISK", "JPY", "KRW", "MXN", "MYR", "NOK", "NZD", "PHP", "PLN", "RON",
	"SAR", "SEK", "SGD", "THB", "TRY", "TWD", "UAH", "USD", "ZAR",
}

// KnownCurrency reports whether code is an accepted ISO 4217 code.
func KnownCurrency(code string) bool {
	_, ok := slices.BinarySearch(currencies, code)
	return ok
}

// Money is an amount in whole units and billionths of one currency.
type Money struct {
	Currency string
	Units    int64
	Nanos    int32
}

// Line is one product line.
type Line struct {
	SKU       string
	Quantity  int32
	UnitPrice Money
}

// Order is an order and its state.
type Order struct {
	ID              string
	CustomerID      string
	RequestID       string
	Status          Status
	RejectionReason string
	Lines           []Line
	Total           Money
	Created         time.Time
	Updated         time.Time
}

// NewOrder validates the input of CreateOrder and returns a pending order.
// Every problem is reported as a field violation, named as in the API.
func NewOrder(id, customerID, requestID string, lines []Line, now time.Time) (*Order, error) {
	var v apperr.Violations
	if utf8.RuneCountInString(requestID) > MaxIDLength {
		v.Add("request_id", "must be at most %d characters", MaxIDLength)
	}
	switch {
	case customerID == "":
		v.Add("customer_id", "must not be empty")
	case utf8.RuneCountInString(customerID) > MaxIDLength:
		v.Add("customer_id", "must be at most %d characters", MaxIDLength)
	}
	switch {
	case len(lines) == 0:
		v.Add("items", "must contain at least one item")
	case len(lines) > MaxLines:
		v.Add("items", "must contain at most %d items", MaxLines)
	}
	currency := ""
	for i, l := range lines {
		f := func(name string) string { return fmt.Sprintf("items[%d].%s", i, name) }
		switch {
		case l.SKU == "":
			v.Add(f("sku"), "must not be empty")
		case utf8.RuneCountInString(l.SKU) > MaxIDLength:
			v.Add(f("sku"), "must be at most %d characters", MaxIDLength)
		}
		switch {
		case l.Quantity <= 0:
			v.Add(f("quantity"), "must be greater than 0, got %d", l.Quantity)
		case l.Quantity > MaxQuantity:
			v.Add(f("quantity"), "must be at most %d, got %d", MaxQuantity, l.Quantity)
		}
		p := l.UnitPrice
		switch {
		case p.Currency == "":
			v.Add(f("unit_price.currency_code"), "must not be empty")
		case !KnownCurrency(p.Currency):
			v.Add(f("unit_price.currency_code"), "unknown currency %q", p.Currency)
		case currency == "":
			currency = p.Currency
		case p.Currency != currency:
			v.Add(f("unit_price.currency_code"), "must be %s like the first item, got %s", currency, p.Currency)
		}
		if p.Units < 0 || p.Units > MaxUnitPrice {
			v.Add(f("unit_price.units"), "must be between 0 and %d", MaxUnitPrice)
		}
		if p.Nanos < 0 || p.Nanos > maxNanosInField {
			v.Add(f("unit_price.nanos"), "must be between 0 and %d", maxNanosInField)
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	o := &Order{
		ID: id, CustomerID: customerID, RequestID: requestID, Status: StatusPending,
		Lines: slices.Clone(lines), Created: now, Updated: now,
	}
	o.Total = total(currency, lines)
	return o, nil
}

// total sums quantity × unit price; validation bounds keep it within int64.
func total(currency string, lines []Line) Money {
	var units, nanos int64
	for _, l := range lines {
		units += int64(l.Quantity) * l.UnitPrice.Units
		nanos += int64(l.Quantity) * int64(l.UnitPrice.Nanos)
	}
	units += nanos / nanosPerUnit
	return Money{Currency: currency, Units: units, Nanos: int32(nanos % nanosPerUnit)}
}

// Confirm records that inventory deducted the stock. It reports whether the
// status changed: a cancelled order stays cancelled (inventory returns the
// stock when it sees the cancellation), and a repeated answer is a no-op.
func (o *Order) Confirm(now time.Time) bool {
	if o.Status != StatusPending {
		return false
	}
	o.Status, o.Updated = StatusConfirmed, now
	return true
}

// Reject records that inventory refused the order, with the reason.
func (o *Order) Reject(reason string, now time.Time) bool {
	if o.Status != StatusPending {
		return false
	}
	o.Status, o.RejectionReason, o.Updated = StatusRejected, reason, now
	return true
}

// Cancel cancels a pending or confirmed order. It reports whether the status
// changed; cancelling a cancelled order is a no-op, cancelling a rejected one
// is a failed precondition.
func (o *Order) Cancel(now time.Time) (bool, error) {
	switch o.Status {
	case StatusPending, StatusConfirmed:
		o.Status, o.Updated = StatusCancelled, now
		return true, nil
	case StatusCancelled:
		return false, nil
	default:
		return false, apperr.FailedPrecondition("order %s is %s and cannot be cancelled", o.ID, o.Status)
	}
}
