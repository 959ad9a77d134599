package server_test

import (
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
	real, ok := realStack()
	if !ok {
		t.Skip("needs the real stack (HERALD_KAFKA_BROKERS, HERALD_SCHEMA_REGISTRY_URL, HERALD_DATABASE_URL)")
	}
	ns := namespaceFor(t.TempDir())
	if _, err := server.RegisterSchemas(real.Registry, "", ns); err != nil {
		t.Fatal(err)
	}
	bin := heraldtest.Build(t)
	env := []string{
		"HERALD_KAFKA_BROKERS=" + real.Kafka.Brokers[0],
		"HERALD_SCHEMA_REGISTRY_URL=" + real.Registry.URL,
		"HERALD_DATABASE_URL=" + real.DatabaseURL,
		"HERALD_NAMESPACE=" + ns,
		"HERALD_GRPC_ADDR=127.0.0.1:0",
		"HERALD_HTTP_ADDR=127.0.0.1:0",
	}
	startSvc := func(name string) (*heraldtest.Proc, *grpc.ClientConn) {
		p := heraldtest.Start(t, bin, []string{"serve", "--services=" + name, "--insecure-no-auth"}, env...)
		conn, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return p, conn
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
