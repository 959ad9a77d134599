// Package app holds the orders use cases: create, read, list and cancel
// orders, and react to inventory's answers. Each use case that changes an
// order returns the event announcing it, and the platform's unit of work
// stores both in one transaction (through the outbox): gRPC use cases run
// in [Work.Do], event use cases in the unit the platform opens for the
// event.
package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/apperr"
	"github.com/herald-events/herald/services/orders/domain"
)

// Store persists orders, in the unit of work the context carries.
type Store interface {
	// Insert stores a new order, or reports false and stores nothing when
	// its customer already has an order with its request id.
	Insert(ctx context.Context, o *domain.Order, requestHash string) (bool, error)
	// Get returns the order or an apperr NotFound error.
	Get(ctx context.Context, id string) (*domain.Order, error)
	// GetByRequestID returns the order customerID created with requestID
	// and the hash of that request, or nil when there is none: request ids
	// are scoped per customer.
	GetByRequestID(ctx context.Context, customerID, requestID string) (*domain.Order, string, error)
	// Update reads the order, lets fn change it and stores it; an error
	// from fn stores nothing. It returns the order as fn left it.
	Update(ctx context.Context, id string, fn func(*domain.Order) error) (*domain.Order, error)
	// List returns up to limit orders older than the cursor (0: newest),
	// newest first, and the cursor of each: a page that ends after order i
	// continues from cursors[i].
	List(ctx context.Context, customerID string, cursor int64, limit int) ([]*domain.Order, []int64, error)
}

// Work runs fn as one unit of work and publishes the events it returns
// with it; module.Work is one.
type Work interface {
	Do(ctx context.Context, fn func(ctx context.Context) ([]proto.Message, error)) error
	// DoLocking is Do for a use case that changes rows the event handlers
	// change too, named as [OrderLocks] names them.
	DoLocking(ctx context.Context, locks []string, fn func(ctx context.Context) ([]proto.Message, error)) error
}

// OrderLocks names the row of an order, which a cancel and inventory's
// answer both change: their units of work lock it first (module.OnLocking
// and Work.DoLocking), so that two transactions changing the same orders
// in opposite orders wait for each other instead of deadlocking.
func OrderLocks(id string) []string { return []string{"order/" + id} }

// App implements the use cases.
type App struct {
	store Store
	work  Work
	now   func() time.Time
	admit *admission // nil: every order is admitted
}

// New returns the use cases over a store and a unit of work.
func New(store Store, work Work) *App {
	return &App{store: store, work: work, now: func() time.Time { return time.Now().UTC() }}
}

// CreateOrder is the input of [App.CreateOrder].
type CreateOrder struct {
	RequestID  string
	CustomerID string
	Lines      []domain.Line
}

func (c CreateOrder) hash() string {
	b, _ := json.Marshal(struct {
		C string
		L []domain.Line
	}{c.CustomerID, c.Lines})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// CreateOrder validates and stores a pending order and its OrderCreated
// event. With a request id it is idempotent: the same id and body return the
// first order without a second event; the same id with another body fails
// with AlreadyExists. Request ids are scoped per customer: two customers
// may use the same one, and neither learns of the other's order. With an
// [Admission], a valid order is refused with ResourceExhausted while too
// many orders wait for the saga (also a replay of an accepted request id:
// its retry is answered once the backlog falls).
func (a *App) CreateOrder(ctx context.Context, in CreateOrder) (*domain.Order, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("order id: %w", err)
	}
	o, err := domain.NewOrder(id.String(), in.CustomerID, in.RequestID, in.Lines, a.now())
	if err != nil {
		return nil, err
	}
	if err := a.admit.check(ctx); err != nil {
		return nil, err
	}
	hash := in.hash()
	var result *domain.Order
	err = a.work.Do(ctx, func(ctx context.Context) ([]proto.Message, error) {
		// The insert is the lookup: only a request id used before makes
		// it store nothing, and only then is the first order read. Two
		// requests with one id racing each other are the same case: on
		// PostgreSQL the second insert waits for the first transaction
		// and stores nothing once it has committed.
		inserted, err := a.store.Insert(ctx, o, hash)
		if err != nil {
			return nil, err
		}
		if inserted {
			result = o
			return []proto.Message{orderCreated(o)}, nil
		}
		prev, prevHash, err := a.store.GetByRequestID(ctx, in.CustomerID, in.RequestID)
		switch {
		case err != nil:
			return nil, err
		case prev == nil:
			return nil, fmt.Errorf("order of request_id %q neither stored nor found", in.RequestID)
		case prevHash != hash:
			return nil, apperr.AlreadyExists("request_id %q was already used for order %s with a different request", in.RequestID, prev.ID)
		}
		result = prev
		return nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("create order: %w", err)
	}
	return result, nil
}

// GetOrder returns one order. With an owner (a customer's id) another
// customer's order is NotFound, as one that does not exist.
func (a *App) GetOrder(ctx context.Context, id, owner string) (*domain.Order, error) {
	if err := validOrderID(id); err != nil {
		return nil, err
	}
	o, err := a.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := owns(o, owner); err != nil {
		return nil, err
	}
	return o, nil
}

// owns checks that owner ("" for anyone) owns o: another customer's order
// answers as one that does not exist, so that its existence is not told.
func owns(o *domain.Order, owner string) error {
	if owner != "" && o.CustomerID != owner {
		return apperr.NotFound("order %s not found", o.ID)
	}
	return nil
}

// validOrderID checks the order id of a request.
func validOrderID(id string) error {
	var v apperr.Violations
	switch {
	case id == "":
		v.Add("order_id", "must not be empty")
	case utf8.RuneCountInString(id) > domain.MaxIDLength:
		v.Add("order_id", "must be at most %d characters", domain.MaxIDLength)
	}
	return v.Err()
}

// ListOrders returns up to limit orders, newest first, and the cursor
// each one ends a page at (see Store.List).
func (a *App) ListOrders(ctx context.Context, customerID string, cursor int64, limit int) ([]*domain.Order, []int64, error) {
	if utf8.RuneCountInString(customerID) > domain.MaxIDLength {
		var v apperr.Violations
		v.Add("customer_id", "must be at most %d characters", domain.MaxIDLength)
		return nil, nil, v.Err()
	}
	return a.store.List(ctx, customerID, cursor, limit)
}

// CancelOrder cancels a pending or confirmed order and publishes
// OrderCancelled. With an owner (a customer's id) another customer's order
// is NotFound and stays as it is.
func (a *App) CancelOrder(ctx context.Context, id, owner string) (*domain.Order, error) {
	if err := validOrderID(id); err != nil {
		return nil, err
	}
	var o *domain.Order
	err := a.work.DoLocking(ctx, OrderLocks(id), func(ctx context.Context) ([]proto.Message, error) {
		var out []proto.Message
		var err error
		o, err = a.store.Update(ctx, id, func(o *domain.Order) error {
			if err := owns(o, owner); err != nil {
				return err
			}
			prev := o.Status
			changed, err := o.Cancel(a.now())
			if changed {
				out = append(out, &ordersv1.OrderCancelled{
					OrderId: o.ID, CustomerId: o.CustomerID, PreviousStatus: ordersv1.OrderStatus(prev),
				})
			}
			return err
		})
		return out, err
	})
	if err != nil {
		return nil, fmt.Errorf("cancel order %s: %w", id, err)
	}
	return o, nil
}

// Confirm marks a pending order confirmed and returns OrderConfirmed (none
// when the order was not pending). The handler of inventory's answer runs
// it in the event's unit of work.
func (a *App) Confirm(ctx context.Context, id string) ([]proto.Message, error) {
	var out []proto.Message
	_, err := a.store.Update(ctx, id, func(o *domain.Order) error {
		if o.Confirm(a.now()) {
			out = append(out, &ordersv1.OrderConfirmed{OrderId: o.ID, CustomerId: o.CustomerID, Total: toMoney(o.Total)})
		}
		return nil
	})
	return out, err
}

// Reject marks a pending order rejected with reason and returns
// OrderRejected (none when the order was not pending).
func (a *App) Reject(ctx context.Context, id, reason string) ([]proto.Message, error) {
	var out []proto.Message
	_, err := a.store.Update(ctx, id, func(o *domain.Order) error {
		if o.Reject(reason, a.now()) {
			out = append(out, &ordersv1.OrderRejected{OrderId: o.ID, CustomerId: o.CustomerID, Reason: reason})
		}
		return nil
	})
	return out, err
}

func orderCreated(o *domain.Order) *ordersv1.OrderCreated {
	ev := &ordersv1.OrderCreated{
		OrderId: o.ID, CustomerId: o.CustomerID, Total: toMoney(o.Total), CreateTime: timestamppb.New(o.Created),
	}
	for _, l := range o.Lines {
		ev.Lines = append(ev.Lines, &ordersv1.OrderLine{Sku: l.SKU, Quantity: l.Quantity, UnitPrice: toMoney(l.UnitPrice)})
	}
	return ev
}

func toMoney(m domain.Money) *moneyv1.Money {
	return &moneyv1.Money{CurrencyCode: m.Currency, Units: m.Units, Nanos: m.Nanos}
}
