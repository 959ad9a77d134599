package server_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/internal/heraldtest"
	"github.com/herald-events/herald/internal/server"
)

// TestServicesAsSeparateProcesses runs orders and inventory as two `herald
// serve` processes on the real stack. With inventory stopped, new orders
// stay PENDING while their events wait in Kafka; once inventory is back,
// every order reaches its final state and the stock adds up.
func TestServicesAsSeparateProcesses(t *testing.T) {
	ns, serve := realProcesses(t)
	startSvc := func(name string) (*heraldtest.Proc, *grpc.ClientConn) {
		return serve(name, "HERALD_HTTP_ADDR=127.0.0.1:0")
	}
	_, ordersConn := startSvc("orders")
	invProc, invConn := startSvc("inventory")
	s := &stack{ns: ns, orders: ordersv1.NewOrderServiceClient(ordersConn), inventory: inventoryv1.NewInventoryServiceClient(invConn)}

	s.setStock(t, "APPLE", 20)
	first := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "alice", Items: []*ordersv1.LineItem{item("APPLE", 1)}})
	s.waitStatus(t, first.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)

	if err := invProc.Stop(t, 30*time.Second); err != nil {
		t.Fatalf("inventory exited with %v on SIGTERM", err)
	}
	var ids []string
	for i := range 8 {
		qty := int32(2)
		if i == 7 {
			qty = 50 // more than there is: rejected
		}
		o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "bob", Items: []*ordersv1.LineItem{item("APPLE", qty)}})
		ids = append(ids, o.GetOrderId())
	}
	time.Sleep(2 * time.Second)
	for _, id := range ids {
		resp, err := s.orders.GetOrder(callCtx(t), &ordersv1.GetOrderRequest{OrderId: id})
		if err != nil {
			t.Fatal(err)
		}
		if st := resp.GetOrder().GetStatus(); st != ordersv1.OrderStatus_ORDER_STATUS_PENDING {
			t.Fatalf("order %s is %s while inventory is down, want PENDING", id, st)
		}
	}

	_, invConn2 := startSvc("inventory")
	s.inventory = inventoryv1.NewInventoryServiceClient(invConn2)
	for _, id := range ids[:7] {
		s.waitStatus(t, id, ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)
	}
	s.waitStatus(t, ids[7], ordersv1.OrderStatus_ORDER_STATUS_REJECTED)
	if got := s.stock(t, "APPLE"); got != 20-1-7*2 {
		t.Fatalf("APPLE stock = %d, want %d", got, 20-1-7*2)
	}
}

// TestInventoryInstancesShareStock runs orders and two inventory processes
// (distinct instance ids, one database) on the real stack, and places
// orders from 16 clients at once, each of one SKU or of both, APPLE and
// PEAR in either order, once both inventory processes have handled an
// order. Every order is confirmed, the stock adds up, and no unit of work
// lost a deadlock (herald_events_failed_total{class="conflict"} is 0 in
// both): each shared transaction locks its orders' stock rows in one
// order. With inventory's OrderCreated handler naming no locks, 1–8 units
// lost one in each of six runs (each run again at once as a conflict).
func TestInventoryInstancesShareStock(t *testing.T) {
	ns, serve := realProcesses(t)
	start := func(service, instance string) (conn *grpc.ClientConn, metrics string) {
		metrics = freeAddr(t)
		_, conn = serve(service, "HERALD_INSTANCE_ID="+instance, "HERALD_HTTP_ADDR="+metrics)
		return conn, metrics
	}
	ordersConn, _ := start("orders", "orders-1")
	invConn, inv1 := start("inventory", "inventory-1")
	_, inv2 := start("inventory", "inventory-2")
	s := &stack{ns: ns, orders: ordersv1.NewOrderServiceClient(ordersConn), inventory: inventoryv1.NewInventoryServiceClient(invConn)}
	const level = 100000
	s.setStock(t, "APPLE", level)
	s.setStock(t, "PEAR", level)

	// handled counts the OrderCreated each inventory process applied, and
	// the conflicts (deadlocks it lost).
	handled := func(addr string) (orders, conflicts float64) {
		for line := range strings.SplitSeq(scrape(t, addr), "\n") {
			switch {
			case strings.HasPrefix(line, "herald_events_consumed_total{") && strings.Contains(line, `type="herald.orders.v1.OrderCreated"`) &&
				strings.Contains(line, `result="ok"`):
				orders += lastFloat(t, line)
			case strings.HasPrefix(line, "herald_events_failed_total{") && strings.Contains(line, `class="conflict"`):
				conflicts += lastFloat(t, line)
			}
		}
		return orders, conflicts
	}
	// First, orders one at a time until both processes have handled one:
	// the second has joined the group and holds partitions.
	warm := int64(0)
	for deadline := time.Now().Add(time.Minute); ; warm++ {
		a, _ := handled(inv1)
		b, _ := handled(inv2)
		if a > 0 && b > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d orders, the inventory processes handled %.0f and %.0f: the second never took part", warm, a, b)
		}
		o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "warm", Items: []*ordersv1.LineItem{item("APPLE", 1)}})
		s.waitStatus(t, o.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)
	}

	const clients, each = 16, 60
	lines := [][]*ordersv1.LineItem{
		{item("APPLE", 1)}, {item("PEAR", 1)}, {item("APPLE", 1), item("PEAR", 1)}, {item("PEAR", 1), item("APPLE", 1)},
	}
	ids := make([][]string, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range each {
				resp, err := s.orders.CreateOrder(callCtx(t), &ordersv1.CreateOrderRequest{
					CustomerId: fmt.Sprintf("c%d", c), Items: lines[(c+i)%len(lines)], RequestId: fmt.Sprintf("%s-%d-%d", ns, c, i)})
				if err != nil {
					errs[c] = err
					return
				}
				ids[c] = append(ids[c], resp.GetOrder().GetOrderId())
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}
	for _, list := range ids {
		for _, id := range list {
			s.waitStatus(t, id, ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)
		}
	}
	// Of every four orders, one takes APPLE, one PEAR, two both.
	taken := int64(clients * each * 3 / 4)
	if a, p := s.stock(t, "APPLE"), s.stock(t, "PEAR"); a != level-taken-warm || p != level-taken {
		t.Fatalf("stock APPLE %d, PEAR %d; want %d and %d", a, p, level-taken-warm, level-taken)
	}
	for i, addr := range []string{inv1, inv2} {
		orders, conflicts := handled(addr)
		t.Logf("inventory-%d handled %.0f orders, %.0f conflicts", i+1, orders, conflicts)
		if conflicts != 0 {
			t.Errorf("inventory-%d: %.0f units of work lost a deadlock", i+1, conflicts)
		}
	}
}

// realProcesses registers the event schemas in a namespace of its own on
// the real stack (skipping t without one) and returns it with serve, which
// runs `herald serve --services=service` there, with env added to the
// stack's, until t ends, and dials its gRPC address.
func realProcesses(t *testing.T) (ns string, serve func(service string, env ...string) (*heraldtest.Proc, *grpc.ClientConn)) {
	t.Helper()
	real, ok := realStack()
	if !ok {
		t.Skip("needs the real stack (HERALD_KAFKA_BROKERS, HERALD_SCHEMA_REGISTRY_URL, HERALD_DATABASE_URL)")
	}
	ns = namespaceFor(t.TempDir())
	if _, err := server.RegisterSchemas(real.Registry, "", ns); err != nil {
		t.Fatal(err)
	}
	bin := heraldtest.Build(t)
	base := []string{
		"HERALD_KAFKA_BROKERS=" + real.Kafka.Brokers[0],
		"HERALD_SCHEMA_REGISTRY_URL=" + real.Registry.URL,
		"HERALD_DATABASE_URL=" + real.DatabaseURL,
		"HERALD_NAMESPACE=" + ns,
		"HERALD_GRPC_ADDR=127.0.0.1:0",
	}
	return ns, func(service string, env ...string) (*heraldtest.Proc, *grpc.ClientConn) {
		t.Helper()
		p := heraldtest.Start(t, bin, []string{"serve", "--services=" + service, "--insecure-no-auth"}, append(slices.Clip(base), env...)...)
		conn, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return p, conn
	}
}

// scrape returns the /metrics page of the process whose HTTP address is addr.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lastFloat is the value of an exposition line.
func lastFloat(t *testing.T, line string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return v
}
