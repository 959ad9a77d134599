package inventory_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/module/moduletest"
	"github.com/herald-events/herald/platform/observe"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
	"github.com/herald-events/herald/services/inventory"
	"github.com/herald-events/herald/services/inventory/adapters"
)

// TestTwoInstancesShareStock runs two instances of the module, each with its
// own connections, on one PostgreSQL schema, as two processes of a
// Deployment would, and feeds both polls of orders at the same time: one
// instance's polls take APPLE then PEAR, the other's PEAR then APPLE; then
// both cancel every order the same way. Every order is deducted and
// released once, the levels add up, and no unit of work lost a deadlock:
// the shared transactions lock their orders' stock rows up front, in one
// order. Before, the two took the rows in opposite orders and
// PostgreSQL failed one transaction in a deadlock, each time costing its
// deadlock_timeout (a second).
func TestTwoInstancesShareStock(t *testing.T) {
	url, schema, ok := sqldbtest.FreshPostgres(t)
	if !ok {
		t.Skip(sqldbtest.EnvURL + " does not name a PostgreSQL database")
	}
	ctx := context.Background()
	codec := moduletest.Codec(t)
	const (
		instances = 2
		rounds    = 15
		perPoll   = 20
		start     = 1000
	)
	type instance struct {
		feed    *moduletest.Feed
		metrics *observe.Metrics
	}
	var (
		ins []instance
		dbs []*sqldb.DB
	)
	for i := range instances {
		db, err := sqldb.OpenPostgres(ctx, url, schema)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		dbs = append(dbs, db)
		p, _, _ := moduletest.Platform(t, codec)
		p.DB = func(string) (*sqldb.DB, error) { return db, nil }
		p.Instance, p.Metrics = fmt.Sprintf("i%d", i), observe.New()
		in, err := inventory.Module().Start(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		ins = append(ins, instance{moduletest.Run(t, in), p.Metrics})
	}
	store := adapters.New(dbs[0])
	for _, sku := range []string{"APPLE", "PEAR"} {
		if err := store.SetStock(ctx, sku, start, func(int64) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	// Order o-<instance>-<round>-<k> takes one unit of a SKU: instance 0
	// alternates APPLE, PEAR; instance 1 PEAR, APPLE.
	skus := [2][2]string{{"APPLE", "PEAR"}, {"PEAR", "APPLE"}}
	// feed has both instances handle their polls at the same time: the
	// event of order (instance, round, k) made by msg.
	feed := func(msg func(i int, id, sku string) proto.Message) {
		var wg sync.WaitGroup
		for i, in := range ins {
			wg.Go(func() {
				for r := range rounds {
					var poll []*bus.Message
					for k := range perPoll {
						id := fmt.Sprintf("o-%d-%d-%d", i, r, k)
						m := msg(i, id, skus[i][k%2])
						poll = append(poll, moduletest.Frame(t, codec, "", fmt.Sprintf("e-%s-%T", id, m), "herald/orders", m))
					}
					in.feed.DeliverPoll(t, poll...)
				}
			})
		}
		wg.Wait()
	}
	feed(func(_ int, id, sku string) proto.Message {
		return &ordersv1.OrderCreated{OrderId: id, CustomerId: "c", Lines: []*ordersv1.OrderLine{{Sku: sku, Quantity: 1}}}
	})

	orders := instances * rounds * perPoll
	for i, in := range ins {
		if n := moduletest.FailedEvents(t, in.metrics, "conflict"); n != 0 {
			t.Errorf("instance %d: %d units of work lost a deadlock", i, n)
		}
	}
	var deducted int
	if err := dbs[0].QueryRowContext(ctx, `SELECT COUNT(DISTINCT order_id) FROM reservations`).Scan(&deducted); err != nil {
		t.Fatal(err)
	}
	levels, err := store.Stock(ctx, []string{"APPLE", "PEAR"})
	if err != nil {
		t.Fatal(err)
	}
	if deducted != orders || levels["APPLE"]+levels["PEAR"] != 2*start-int64(orders) || levels["APPLE"] != levels["PEAR"] {
		t.Fatalf("%d of %d orders deducted, levels %v; want all, %d each", deducted, orders, levels, start-orders/2)
	}

	// Then every order is cancelled, in the same pattern: a release
	// names the rows of what its order holds.
	feed(func(_ int, id, _ string) proto.Message {
		return &ordersv1.OrderCancelled{OrderId: id, CustomerId: "c", PreviousStatus: ordersv1.OrderStatus_ORDER_STATUS_PENDING}
	})
	for i, in := range ins {
		if n := moduletest.FailedEvents(t, in.metrics, "conflict"); n != 0 {
			t.Errorf("instance %d: %d units of work lost a deadlock while releasing", i, n)
		}
	}
	if levels, err = store.Stock(ctx, []string{"APPLE", "PEAR"}); err != nil {
		t.Fatal(err)
	}
	if levels["APPLE"] != start || levels["PEAR"] != start {
		t.Fatalf("levels %v after every order was cancelled, want %d each", levels, start)
	}
}
