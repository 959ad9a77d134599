package orders_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/fault"
	"github.com/herald-events/herald/platform/module/moduletest"
	"github.com/herald-events/herald/platform/observe"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
	"github.com/herald-events/herald/services/orders"
)

// TestCancelsCrossConfirms: round by round, a poll of inventory's answers
// about 40 orders is applied while 16 customers cancel the same orders
// over gRPC, the newest first. Orders runs several shared transactions side
// by side on PostgreSQL, and a transaction of cancels and one of answers
// that changed two orders in opposite orders used to deadlock; PostgreSQL
// then failed one of them (a conflict: the consumer ran its events again,
// the gRPC callers got ABORTED). Now both lock their orders first, in one
// order: every cancel succeeds, no event is run again, and every order
// ends cancelled.
func TestCancelsCrossConfirms(t *testing.T) {
	db := sqldbtest.Postgres(t)
	ctx := context.Background()
	codec := moduletest.Codec(t)
	p, _, _ := moduletest.Platform(t, codec)
	p.DB = func(string) (*sqldb.DB, error) { return db, nil }
	p.Metrics = observe.New()
	p.Settings = map[string]map[string]string{orders.Name: {orders.SettingMaxPending: "0"}}
	in, err := orders.Module().Start(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	feed := moduletest.Run(t, in)
	api := in.GRPC()[0].Impl.(ordersv1.OrderServiceServer)

	const (
		count   = 1200
		perPoll = 40
		callers = 16
	)
	ids := make([]string, count)
	var place sync.WaitGroup
	for c := range callers {
		place.Go(func() {
			for i := c; i < count; i += callers {
				resp, err := api.CreateOrder(ctx, &ordersv1.CreateOrderRequest{
					CustomerId: "c-locks", RequestId: fmt.Sprintf("r-%d", i),
					Items: []*ordersv1.LineItem{{Sku: "APPLE", Quantity: 1, UnitPrice: &moneyv1.Money{CurrencyCode: "EUR", Units: 1}}},
				})
				if err != nil {
					t.Errorf("create order %d: %v", i, err)
					return
				}
				ids[i] = resp.GetOrder().GetOrderId()
			}
		})
	}
	place.Wait()
	if t.Failed() {
		return
	}

	// Round by round, inventory's answers about a set of orders come in
	// one poll while the customers cancel the same orders, the newest
	// first.
	var aborted atomic.Int32
	for start := 0; start < count; start += perPoll {
		var work sync.WaitGroup
		work.Go(func() {
			var poll []*bus.Message
			for i := start; i < start+perPoll; i++ {
				m := &inventoryv1.InventoryDeducted{OrderId: ids[i], Lines: []*inventoryv1.StockChange{{Sku: "APPLE", Quantity: 1}}}
				poll = append(poll, moduletest.Frame(t, codec, "", "e-deducted-"+ids[i], "herald/inventory", m))
			}
			feed.DeliverPoll(t, poll...)
		})
		for c := range callers {
			work.Go(func() {
				for i := start + perPoll - 1 - c; i >= start; i -= callers {
					_, err := api.CancelOrder(ctx, &ordersv1.CancelOrderRequest{OrderId: ids[i]})
					if fault.IsConflict(err) {
						aborted.Add(1)
					} else if err != nil {
						t.Errorf("cancel order %d: %v", i, err)
					}
				}
			})
		}
		work.Wait()
	}

	if n := moduletest.FailedEvents(t, p.Metrics, "conflict"); n != 0 {
		t.Errorf("%d units of work of inventory's answers lost a deadlock", n)
	}
	if n := aborted.Load(); n != 0 {
		t.Errorf("%d cancels lost a deadlock", n)
	}
	// A cancel that lost is what the client retries; every order is
	// cancelled in the end either way.
	for i, id := range ids {
		resp, err := api.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: id})
		if err != nil {
			t.Fatalf("get order %d: %v", i, err)
		}
		if st := resp.GetOrder().GetStatus(); st != ordersv1.OrderStatus_ORDER_STATUS_CANCELLED && !t.Failed() {
			t.Fatalf("order %d is %v, want cancelled", i, st)
		}
	}
}
