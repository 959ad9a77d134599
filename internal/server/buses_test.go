package server_test

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	notificationv1 "github.com/herald-events/herald/gen/go/herald/notification/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	pointsv1 "github.com/herald-events/herald/gen/go/herald/points/v1"
	"github.com/herald-events/herald/internal/heraldtest"
	"github.com/herald-events/herald/internal/server"
)

// TestSagaOnEveryBus runs the order flow with `herald serve` on each bus
// whose server is in the environment (HERALD_NATS_URL, HERALD_RABBITMQ_URL;
// Kafka is covered by the rest of the suite), with orders and its
// subscribers in one process and inventory and logistics in another: the
// same services, events, headers and registry framing, another broker.
func TestSagaOnEveryBus(t *testing.T) {
	real, ok := realStack()
	if !ok {
		t.Skip("needs the real stack (HERALD_SCHEMA_REGISTRY_URL, HERALD_DATABASE_URL) and a bus (HERALD_NATS_URL, HERALD_RABBITMQ_URL)")
	}
	buses := []struct{ bus, urlVar string }{
		{server.BusNATS, "HERALD_NATS_URL"},
		{server.BusRabbitMQ, "HERALD_RABBITMQ_URL"},
	}
	bin := heraldtest.Build(t)
	for _, b := range buses {
		t.Run(b.bus, func(t *testing.T) {
			url := os.Getenv(b.urlVar)
			if url == "" {
				t.Skipf("%s is not set: start the server with scripts/infra/up.sh", b.urlVar)
			}
			ns := namespaceFor(t.TempDir())
			if _, err := server.RegisterSchemas(real.Registry, "", ns); err != nil {
				t.Fatal(err)
			}
			env := []string{
				"HERALD_BUS=" + b.bus,
				b.urlVar + "=" + url,
				"HERALD_SCHEMA_REGISTRY_URL=" + real.Registry.URL,
				"HERALD_DATABASE_URL=" + real.DatabaseURL,
				"HERALD_NAMESPACE=" + ns,
				"HERALD_GRPC_ADDR=127.0.0.1:0",
				"HERALD_HTTP_ADDR=127.0.0.1:0",
			}
			dial := func(services string) *grpc.ClientConn {
				p := heraldtest.Start(t, bin, []string{"serve", "--services=" + services, "--insecure-no-auth"}, env...)
				conn, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close() })
				return conn
			}
			front := dial("orders,notification,points")
			back := dial("inventory,logistics")
			s := &stack{ns: ns, orders: ordersv1.NewOrderServiceClient(front), inventory: inventoryv1.NewInventoryServiceClient(back)}
			notes := notificationv1.NewNotificationServiceClient(front)
			points := pointsv1.NewPointsServiceClient(front)

			s.setStock(t, "APPLE", 10)
			s.setStock(t, "PEAR", 2)
			confirmed := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "alice", Items: []*ordersv1.LineItem{item("APPLE", 3), item("PEAR", 1)}})
			s.waitStatus(t, confirmed.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)
			if a, p := s.stock(t, "APPLE"), s.stock(t, "PEAR"); a != 7 || p != 1 {
				t.Fatalf("stock after confirmation: APPLE %d PEAR %d, want 7 and 1", a, p)
			}
			rejected := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "bob", Items: []*ordersv1.LineItem{item("APPLE", 1), item("PEAR", 5)}})
			got := s.waitStatus(t, rejected.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_REJECTED)
			if !strings.Contains(got.GetRejectionReason(), "INSUFFICIENT_STOCK") {
				t.Fatalf("rejection reason %q, want INSUFFICIENT_STOCK", got.GetRejectionReason())
			}
			if _, err := s.orders.CancelOrder(callCtx(t), &ordersv1.CancelOrderRequest{OrderId: confirmed.GetOrderId()}); err != nil {
				t.Fatalf("CancelOrder: %v", err)
			}
			eventually(t, 30*time.Second, func() bool { return s.stock(t, "APPLE") == 10 && s.stock(t, "PEAR") == 2 },
				"stock to come back after the cancel")

			// The subscribers saw every state change once.
			kinds := func(order string) []notificationv1.NotificationKind {
				resp, err := notes.ListNotifications(callCtx(t), &notificationv1.ListNotificationsRequest{OrderId: order})
				if err != nil {
					t.Fatalf("ListNotifications: %v", err)
				}
				var out []notificationv1.NotificationKind
				for _, n := range resp.GetNotifications() {
					out = append(out, n.GetKind())
				}
				return out
			}
			eventually(t, 30*time.Second, func() bool {
				return len(kinds(confirmed.GetOrderId())) == 2 && len(kinds(rejected.GetOrderId())) == 1
			}, "notifications: confirmed+cancelled for %s, rejected for %s", confirmed.GetOrderId(), rejected.GetOrderId())
			if k := kinds(rejected.GetOrderId()); k[0] != notificationv1.NotificationKind_NOTIFICATION_KIND_REJECTED {
				t.Fatalf("rejected order's notification: %v", k)
			}
			var bal *pointsv1.GetBalanceResponse
			eventually(t, 30*time.Second, func() bool {
				var err error
				bal, err = points.GetBalance(callCtx(t), &pointsv1.GetBalanceRequest{CustomerId: "alice"})
				if err != nil {
					t.Fatalf("GetBalance: %v", err)
				}
				return len(bal.GetEntries()) == 2
			}, "an award and its reversal for alice")
			if bal.GetBalance() != 0 {
				t.Fatalf("alice's balance after award and reversal = %d, want 0 (entries %v)", bal.GetBalance(), bal.GetEntries())
			}
		})
	}
}

// TestSubscriptionsTable: the table RabbitMQ deployments declare their
// queues from is what the services really subscribe to.
func TestSubscriptionsTable(t *testing.T) {
	s := startProcess(t, t.TempDir(), nil)
	got := s.proc.Subscriptions()
	want := server.Subscriptions(s.ns)
	if len(got) != len(server.KnownServices()) {
		t.Fatalf("process runs %d consumer groups, want one per service (%d): %v", len(got), len(server.KnownServices()), got)
	}
	for group, topics := range got {
		if !slices.Equal(topics, want[group]) {
			t.Errorf("group %s reads %v; server.Subscriptions says %v", group, topics, want[group])
		}
	}
	if len(want) != len(got) {
		t.Errorf("server.Subscriptions has %d groups, the services %d", len(want), len(got))
	}
}
