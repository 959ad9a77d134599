// Package domain holds the notification rules: one notification per change
// of an order's state, the text it carries, and how its delivery moves from
// pending to delivered or failed.
//
// Delivery is at least once. A failed round is tried again after a backoff
// that doubles from [Policy].Backoff up to [Policy].MaxBackoff; after
// [Policy].MaxRounds failed rounds, or at once when the receiver refused the
// notification, it is failed for good.
package domain

import (
	"fmt"
	"strings"
	"time"
)

// Kind is the change of an order's state a notification tells about. The
// values match the NotificationKind enum of the API.
type Kind int

// Notification kinds.
const (
	KindConfirmed Kind = 1
	KindRejected  Kind = 2
	KindCancelled Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindConfirmed:
		return "CONFIRMED"
	case KindRejected:
		return "REJECTED"
	case KindCancelled:
		return "CANCELLED"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Status is where a notification's delivery stands. The values match the
// DeliveryStatus enum of the API.
type Status int

// Delivery statuses.
const (
	StatusPending   Status = 1
	StatusDelivered Status = 2
	StatusFailed    Status = 3
)

func (s Status) String() string {
	switch s {
	case StatusPending:
		return "PENDING"
	case StatusDelivered:
		return "DELIVERED"
	case StatusFailed:
		return "FAILED"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Money is an amount in whole units and billionths of one currency.
type Money struct {
	Currency string
	Units    int64
	Nanos    int32
}

// String renders m as "EUR 7.50": at least two decimals, more only when
// the amount has them.
func (m Money) String() string {
	sign := ""
	units, nanos := m.Units, int64(m.Nanos)
	if units < 0 || nanos < 0 {
		sign = "-"
	}
	units, nanos = max(units, -units), max(nanos, -nanos)
	frac := strings.TrimRight(fmt.Sprintf("%09d", nanos), "0")
	for len(frac) < 2 {
		frac += "0"
	}
	return fmt.Sprintf("%s %s%d.%s", m.Currency, sign, units, frac)
}

// Notification is one message to a customer and the state of its delivery.
type Notification struct {
	ID         string
	OrderID    string
	CustomerID string
	Kind       Kind
	Text       string
	Created    time.Time

	Status Status
	// Attempts counts failed and successful delivery rounds.
	Attempts  int
	LastError string
	// NextAttempt is when a pending notification is due.
	NextAttempt time.Time
	// Delivered is when it was delivered; zero until then.
	Delivered time.Time
}

// New returns a pending notification, due at once.
func New(id, orderID, customerID string, kind Kind, text string, now time.Time) *Notification {
	return &Notification{
		ID: id, OrderID: orderID, CustomerID: customerID, Kind: kind, Text: text, Created: now,
		Status: StatusPending, NextAttempt: now,
	}
}

// ConfirmedText is the text of a [KindConfirmed] notification.
func ConfirmedText(orderID string, total Money) string {
	return fmt.Sprintf("Your order %s is confirmed. Total: %s.", orderID, total)
}

// RejectedText is the text of a [KindRejected] notification.
func RejectedText(orderID, reason string) string {
	if reason == "" {
		return fmt.Sprintf("Sorry, your order %s could not be accepted.", orderID)
	}
	return fmt.Sprintf("Sorry, your order %s could not be accepted: %s.", orderID, reason)
}

// CancelledText is the text of a [KindCancelled] notification.
func CancelledText(orderID string) string {
	return fmt.Sprintf("Your order %s has been cancelled.", orderID)
}

// Policy bounds the delivery rounds of one notification.
type Policy struct {
	// MaxRounds is how many rounds may fail before the notification is
	// failed for good.
	MaxRounds int
	// Backoff is the pause after the first failed round, doubled after
	// each further one up to MaxBackoff.
	Backoff, MaxBackoff time.Duration
}

// Delay is the pause after the given number of failed rounds (1 or more).
func (p Policy) Delay(failed int) time.Duration {
	d := p.Backoff
	for i := 1; i < failed && d < p.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, p.MaxBackoff)
}

// MarkDelivered records a successful round.
func (n *Notification) MarkDelivered(now time.Time) {
	n.Attempts++
	n.Status = StatusDelivered
	n.Delivered = now
	n.LastError = ""
}

// MarkFailed records a failed round. A refused notification (permanent), or
// one that failed p.MaxRounds rounds, is failed for good; otherwise it is
// due again after p's backoff.
func (n *Notification) MarkFailed(reason string, permanent bool, now time.Time, p Policy) {
	n.Attempts++
	n.LastError = reason
	if permanent || n.Attempts >= p.MaxRounds {
		n.Status = StatusFailed
		return
	}
	n.NextAttempt = now.Add(p.Delay(n.Attempts))
}
