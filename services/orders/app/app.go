// Package app holds the orders use cases: create, read, list and cancel
// orders, and react to inventory's answers. Each use case writes its state
// change and the event announcing it in one transaction, through the
// outbox.
package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/apperr"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/services/orders/domain"
)

// Store persists orders. Methods taking a tx run inside it.
type Store interface {
	InTx(ctx context.Context, fn func(tx *sqldb.Tx) error) error
	Insert(ctx context.Context, tx *sqldb.Tx, o *domain.Order, requestHash string) error
	// Get returns the order or an apperr NotFound error.
	Get(ctx context.Context, tx *sqldb.Tx, id string) (*domain.Order, error)
	// GetByRequestID returns the order created with requestID and the hash
	// of that request, or nil when there is none.
	GetByRequestID(ctx context.Context, tx *sqldb.Tx, requestID string) (*domain.Order, string, error)
	Update(ctx context.Context, tx *sqldb.Tx, o *domain.Order) error
	// List returns up to limit orders older than the cursor (0: newest),
	// newest first, and the cursor of the last one.
	List(ctx context.Context, customerID string, cursor int64, limit int) ([]*domain.Order, int64, error)
}

// Outbox stores events in a transaction.
type Outbox interface {
	Add(ctx context.Context, tx *sqldb.Tx, msg proto.Message) (*event.Envelope, error)
}

// App implements the use cases.
type App struct {
	store  Store
	outbox Outbox
	now    func() time.Time
}

// New returns the use cases over a store and an outbox.
func New(store Store, outbox Outbox) *App {
	return &App{store: store, outbox: outbox, now: func() time.Time { return time.Now().UTC() }}
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
// with AlreadyExists.
func (a *App) CreateOrder(ctx context.Context, in CreateOrder) (*domain.Order, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("order id: %w", err)
	}
	o, err := domain.NewOrder(id.String(), in.CustomerID, in.RequestID, in.Lines, a.now())
	if err != nil {
		return nil, err
	}
	hash := in.hash()
	var result *domain.Order
	err = a.store.InTx(ctx, func(tx *sqldb.Tx) error {
		if in.RequestID != "" {
			prev, prevHash, err := a.store.GetByRequestID(ctx, tx, in.RequestID)
			if err != nil {
				return err
			}
			if prev != nil {
				if prevHash != hash {
					return apperr.AlreadyExists("request_id %q was already used for order %s with a different request", in.RequestID, prev.ID)
				}
				result = prev
				return nil
			}
		}
		if err := a.store.Insert(ctx, tx, o, hash); err != nil {
			return err
		}
		if _, err := a.outbox.Add(ctx, tx, orderCreated(o)); err != nil {
			return err
		}
		result = o
		return nil
	})
	if err != nil && in.RequestID != "" {
		// Two requests with one key can race past the lookup; the unique
		// index lets one insert win, and the other answers as a replay.
		if prev, prevHash, lerr := a.lookupRequest(ctx, in.RequestID); lerr == nil && prev != nil {
			if prevHash != hash {
				return nil, apperr.AlreadyExists("request_id %q was already used for order %s with a different request", in.RequestID, prev.ID)
			}
			return prev, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("create order: %w", err)
	}
	return result, nil
}

func (a *App) lookupRequest(ctx context.Context, requestID string) (*domain.Order, string, error) {
	var (
		o    *domain.Order
		hash string
	)
	err := a.store.InTx(ctx, func(tx *sqldb.Tx) error {
		var err error
		o, hash, err = a.store.GetByRequestID(ctx, tx, requestID)
		return err
	})
	return o, hash, err
}

// GetOrder returns one order.
func (a *App) GetOrder(ctx context.Context, id string) (*domain.Order, error) {
	if id == "" {
		var v apperr.Violations
		v.Add("order_id", "must not be empty")
		return nil, v.Err()
	}
	var o *domain.Order
	err := a.store.InTx(ctx, func(tx *sqldb.Tx) error {
		var err error
		o, err = a.store.Get(ctx, tx, id)
		return err
	})
	return o, err
}

// ListOrders returns a page of orders, newest first.
func (a *App) ListOrders(ctx context.Context, customerID string, cursor int64, limit int) ([]*domain.Order, int64, error) {
	return a.store.List(ctx, customerID, cursor, limit)
}

// CancelOrder cancels a pending or confirmed order and publishes
// OrderCancelled.
func (a *App) CancelOrder(ctx context.Context, id string) (*domain.Order, error) {
	if id == "" {
		var v apperr.Violations
		v.Add("order_id", "must not be empty")
		return nil, v.Err()
	}
	var o *domain.Order
	err := a.store.InTx(ctx, func(tx *sqldb.Tx) error {
		var err error
		if o, err = a.store.Get(ctx, tx, id); err != nil {
			return err
		}
		prev := o.Status
		changed, err := o.Cancel(a.now())
		if err != nil || !changed {
			return err
		}
		if err := a.store.Update(ctx, tx, o); err != nil {
			return err
		}
		_, err = a.outbox.Add(ctx, tx, &ordersv1.OrderCancelled{
			OrderId: o.ID, CustomerId: o.CustomerID, PreviousStatus: ordersv1.OrderStatus(prev),
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cancel order %s: %w", id, err)
	}
	return o, nil
}

// Confirm marks a pending order confirmed and publishes OrderConfirmed. It is
// run by the inventory answer handler inside tx, after the inbox claim.
func (a *App) Confirm(ctx context.Context, tx *sqldb.Tx, id string) error {
	o, err := a.store.Get(ctx, tx, id)
	if err != nil {
		return err
	}
	if !o.Confirm(a.now()) {
		return nil
	}
	if err := a.store.Update(ctx, tx, o); err != nil {
		return err
	}
	_, err = a.outbox.Add(ctx, tx, &ordersv1.OrderConfirmed{OrderId: o.ID, CustomerId: o.CustomerID, Total: toMoney(o.Total)})
	return err
}

// Reject marks a pending order rejected with reason and publishes
// OrderRejected.
func (a *App) Reject(ctx context.Context, tx *sqldb.Tx, id, reason string) error {
	o, err := a.store.Get(ctx, tx, id)
	if err != nil {
		return err
	}
	if !o.Reject(reason, a.now()) {
		return nil
	}
	if err := a.store.Update(ctx, tx, o); err != nil {
		return err
	}
	_, err = a.outbox.Add(ctx, tx, &ordersv1.OrderRejected{OrderId: o.ID, CustomerId: o.CustomerID, Reason: reason})
	return err
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
