package server_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	logisticsv1 "github.com/herald-events/herald/gen/go/herald/logistics/v1"
	notificationv1 "github.com/herald-events/herald/gen/go/herald/notification/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	pointsv1 "github.com/herald-events/herald/gen/go/herald/points/v1"
)

// subscribers are gRPC clients of the services that only consume events.
type subscribers struct {
	notification notificationv1.NotificationServiceClient
	points       pointsv1.PointsServiceClient
	logistics    logisticsv1.LogisticsServiceClient
}

func dialSubscribers(t *testing.T, s *stack) *subscribers {
	t.Helper()
	conn, err := grpc.NewClient(s.proc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", s.proc.GRPCAddr(), err)
	}
	t.Cleanup(func() { conn.Close() })
	return &subscribers{
		notification: notificationv1.NewNotificationServiceClient(conn),
		points:       pointsv1.NewPointsServiceClient(conn),
		logistics:    logisticsv1.NewLogisticsServiceClient(conn),
	}
}

func (c *subscribers) notifications(t *testing.T, orderID string) []*notificationv1.Notification {
	t.Helper()
	resp, err := c.notification.ListNotifications(callCtx(t), &notificationv1.ListNotificationsRequest{OrderId: orderID})
	if err != nil {
		t.Fatalf("ListNotifications %s: %v", orderID, err)
	}
	return resp.GetNotifications()
}

func (c *subscribers) balance(t *testing.T, customerID string) *pointsv1.GetBalanceResponse {
	t.Helper()
	resp, err := c.points.GetBalance(callCtx(t), &pointsv1.GetBalanceRequest{CustomerId: customerID})
	if err != nil {
		t.Fatalf("GetBalance %s: %v", customerID, err)
	}
	return resp
}

// shipment returns the shipment of an order, or nil when logistics has none.
func (c *subscribers) shipment(t *testing.T, orderID string) *logisticsv1.GetShipmentResponse {
	t.Helper()
	resp, err := c.logistics.GetShipment(callCtx(t), &logisticsv1.GetShipmentRequest{OrderId: orderID})
	if status.Code(err) == codes.NotFound {
		return nil
	}
	if err != nil {
		t.Fatalf("GetShipment %s: %v", orderID, err)
	}
	return resp
}

// waitNotifications waits until the order has n notifications, all
// delivered (the log channel: herald has no webhook in tests), and returns
// them oldest first.
func (c *subscribers) waitNotifications(t *testing.T, orderID string, n int) []*notificationv1.Notification {
	t.Helper()
	var got []*notificationv1.Notification
	eventually(t, 20*time.Second, func() bool {
		got = c.notifications(t, orderID)
		if len(got) != n {
			return false
		}
		for _, x := range got {
			if x.GetDeliveryStatus() != notificationv1.DeliveryStatus_DELIVERY_STATUS_DELIVERED {
				return false
			}
		}
		return true
	}, "%d delivered notifications for order %s (have %v)", n, orderID, func() any { return got })
	out := make([]*notificationv1.Notification, len(got))
	for i, x := range got { // newest first on the wire
		out[len(got)-1-i] = x
	}
	return out
}

// waitGroupPast waits until every group committed past the record of type
// typ for key on topic, so whatever those groups do with it is done.
func (s *stack) waitGroupPast(t *testing.T, topic, typ, key string, groups ...string) *kgo.Record {
	t.Helper()
	recs := s.read(t, topic, keyed(typ, key))
	if len(recs) != 1 {
		t.Fatalf("%d %s records for %s, want 1", len(recs), typ, key)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.proc.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, g := range groups {
		waitCommitted(t, cl, s.group(g), recs[0])
	}
	return recs[0]
}

func awards(entries []*pointsv1.Entry, kind pointsv1.EntryKind) []*pointsv1.Entry {
	var out []*pointsv1.Entry
	for _, e := range entries {
		if e.GetKind() == kind {
			out = append(out, e)
		}
	}
	return out
}

// TestSubscribersEndToEnd runs the order saga with the notification, points
// and logistics services in the process: each reacts to the orders and
// inventory events in its own database and consumer group.
func TestSubscribersEndToEnd(t *testing.T) {
	s := startProcess(t, t.TempDir(), nil)
	c := dialSubscribers(t, s)
	s.setStock(t, "APPLE", 100)
	s.setStock(t, "PEAR", 2)
	price := func(units int64, nanos int32) *ordersv1.LineItem {
		return &ordersv1.LineItem{Sku: "APPLE", Quantity: 1, UnitPrice: eur(units, nanos)}
	}

	var confirmed *ordersv1.Order // reused by the redelivery subtest
	t.Run("confirmed: one notification, points awarded, shipment reserved", func(t *testing.T) {
		// 3 × 2.50 + 1 × 4.99 = 12.49: 12 points, the nanos truncated.
		confirmed = s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "sub-alice",
			Items: []*ordersv1.LineItem{item("APPLE", 3), price(4, 990_000_000)}})
		s.waitStatus(t, confirmed.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)

		ns := c.waitNotifications(t, confirmed.GetOrderId(), 1)
		n := ns[0]
		if n.GetKind() != notificationv1.NotificationKind_NOTIFICATION_KIND_CONFIRMED || n.GetCustomerId() != "sub-alice" ||
			!strings.Contains(n.GetText(), "EUR 12.49") || n.GetNotificationId() == "" || n.GetDeliveryAttempts() != 1 ||
			n.GetDeliverTime() == nil {
			t.Fatalf("notification = %v, want one delivered CONFIRMED for sub-alice naming EUR 12.49", n)
		}

		var bal *pointsv1.GetBalanceResponse
		eventually(t, 20*time.Second, func() bool { bal = c.balance(t, "sub-alice"); return len(bal.GetEntries()) > 0 },
			"points for sub-alice")
		if bal.GetBalance() != 12 || len(bal.GetEntries()) != 1 || bal.GetEntries()[0].GetOrderId() != confirmed.GetOrderId() ||
			bal.GetEntries()[0].GetKind() != pointsv1.EntryKind_ENTRY_KIND_AWARD || bal.GetEntries()[0].GetPoints() != 12 {
			t.Fatalf("balance = %v, want 12 points from one award", bal)
		}

		var sh *logisticsv1.GetShipmentResponse
		eventually(t, 20*time.Second, func() bool { sh = c.shipment(t, confirmed.GetOrderId()); return sh != nil },
			"shipment of %s", confirmed.GetOrderId())
		if sh.GetStatus() != logisticsv1.ShipmentStatus_SHIPMENT_STATUS_RESERVED || len(sh.GetLines()) != 1 ||
			sh.GetLines()[0].GetSku() != "APPLE" || sh.GetLines()[0].GetQuantity() != 4 {
			t.Fatalf("shipment = %v, want RESERVED with APPLE × 4", sh)
		}
	})

	t.Run("rejected: one notification, no points, no shipment", func(t *testing.T) {
		o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "sub-bob", Items: []*ordersv1.LineItem{item("PEAR", 5)}})
		s.waitStatus(t, o.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_REJECTED)
		ns := c.waitNotifications(t, o.GetOrderId(), 1)
		if n := ns[0]; n.GetKind() != notificationv1.NotificationKind_NOTIFICATION_KIND_REJECTED ||
			!strings.Contains(n.GetText(), "INSUFFICIENT_STOCK") {
			t.Fatalf("notification = %v, want REJECTED with the reason", n)
		}
		// Points and logistics have read past the rejection: nothing came of it.
		s.waitGroupPast(t, "herald.orders.v1", "herald.orders.v1.OrderRejected", o.GetOrderId(), "herald-points", "herald-logistics")
		s.waitGroupPast(t, "herald.inventory.v1", "herald.inventory.v1.InventoryDeductionFailed", o.GetOrderId(), "herald-logistics")
		if bal := c.balance(t, "sub-bob"); bal.GetBalance() != 0 || len(bal.GetEntries()) != 0 {
			t.Fatalf("balance of a rejected order's customer = %v, want nothing", bal)
		}
		if sh := c.shipment(t, o.GetOrderId()); sh != nil {
			t.Fatalf("shipment of a rejected order = %v, want NotFound", sh)
		}
		if got := c.notifications(t, o.GetOrderId()); len(got) != 1 {
			t.Fatalf("%d notifications for a rejected order, want 1", len(got))
		}
	})

	t.Run("cancel after confirm: cancelled notification, points taken back, shipment released", func(t *testing.T) {
		o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "sub-carol", Items: []*ordersv1.LineItem{price(20, 0)}})
		s.waitStatus(t, o.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)
		eventually(t, 20*time.Second, func() bool { return c.balance(t, "sub-carol").GetBalance() == 20 }, "20 points for sub-carol")
		eventually(t, 20*time.Second, func() bool {
			sh := c.shipment(t, o.GetOrderId())
			return sh.GetStatus() == logisticsv1.ShipmentStatus_SHIPMENT_STATUS_RESERVED
		}, "shipment of %s reserved", o.GetOrderId())

		if _, err := s.orders.CancelOrder(callCtx(t), &ordersv1.CancelOrderRequest{OrderId: o.GetOrderId()}); err != nil {
			t.Fatalf("CancelOrder: %v", err)
		}
		ns := c.waitNotifications(t, o.GetOrderId(), 2)
		if ns[0].GetKind() != notificationv1.NotificationKind_NOTIFICATION_KIND_CONFIRMED ||
			ns[1].GetKind() != notificationv1.NotificationKind_NOTIFICATION_KIND_CANCELLED {
			t.Fatalf("notifications = %v, want CONFIRMED then CANCELLED", ns)
		}
		var bal *pointsv1.GetBalanceResponse
		eventually(t, 20*time.Second, func() bool { bal = c.balance(t, "sub-carol"); return len(bal.GetEntries()) == 2 },
			"the reversal for sub-carol")
		rev := awards(bal.GetEntries(), pointsv1.EntryKind_ENTRY_KIND_REVERSAL)
		if bal.GetBalance() != 0 || len(rev) != 1 || rev[0].GetPoints() != -20 {
			t.Fatalf("balance after cancel = %v, want 0 with one reversal of -20", bal)
		}
		var sh *logisticsv1.GetShipmentResponse
		eventually(t, 20*time.Second, func() bool {
			sh = c.shipment(t, o.GetOrderId())
			return sh.GetStatus() == logisticsv1.ShipmentStatus_SHIPMENT_STATUS_RELEASED
		}, "shipment of %s released", o.GetOrderId())
		if len(sh.GetLines()) != 1 || sh.GetLines()[0].GetQuantity() != 1 {
			t.Fatalf("released shipment = %v, want its APPLE × 1 line kept", sh)
		}
	})

	t.Run("cancel while pending: the shipment ends released whatever arrives first", func(t *testing.T) {
		o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "sub-dave", Items: []*ordersv1.LineItem{item("APPLE", 2)}})
		if _, err := s.orders.CancelOrder(callCtx(t), &ordersv1.CancelOrderRequest{OrderId: o.GetOrderId()}); err != nil {
			t.Fatalf("CancelOrder: %v", err)
		}
		// Inventory deducts, then releases (same partition); logistics sees
		// InventoryDeducted and OrderCancelled in either order. Once it has
		// read both, the shipment must be released.
		s.waitGroupPast(t, "herald.inventory.v1", "herald.inventory.v1.InventoryDeducted", o.GetOrderId(), "herald-logistics")
		s.waitGroupPast(t, "herald.orders.v1", "herald.orders.v1.OrderCancelled", o.GetOrderId(), "herald-logistics", "herald-points")
		if sh := c.shipment(t, o.GetOrderId()); sh.GetStatus() != logisticsv1.ShipmentStatus_SHIPMENT_STATUS_RELEASED {
			t.Fatalf("shipment of an order cancelled while pending = %v, want RELEASED", sh)
		}
		// The saga may confirm the order before the cancel lands (a
		// confirmed order can be cancelled too), and then points are
		// awarded: only an order cancelled while still pending earns none.
		// Its OrderConfirmed, if any, precedes the OrderCancelled read above.
		if recs := s.read(t, "herald.orders.v1", keyed("herald.orders.v1.OrderConfirmed", o.GetOrderId())); len(recs) > 0 {
			t.Logf("the order was confirmed before the cancel landed; points not checked")
			return
		}
		if bal := c.balance(t, "sub-dave"); bal.GetBalance() != 0 || len(bal.GetEntries()) != 0 {
			t.Fatalf("points of an order cancelled before confirmation = %v, want none", bal)
		}
	})

	t.Run("redelivered OrderConfirmed: still one notification and one award", func(t *testing.T) {
		if confirmed == nil {
			t.Skip("the confirmed subtest did not run")
		}
		recs := s.read(t, "herald.orders.v1", keyed("herald.orders.v1.OrderConfirmed", confirmed.GetOrderId()))
		if len(recs) != 1 {
			t.Fatalf("found %d OrderConfirmed records, want 1", len(recs))
		}
		orig := recs[0]
		cl, err := kgo.NewClient(kgo.SeedBrokers(s.proc.Brokers()...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		var dup *kgo.Record
		for range 2 { // redelivered twice, byte for byte
			res, err := cl.ProduceSync(callCtx(t), &kgo.Record{Topic: orig.Topic, Key: orig.Key, Value: orig.Value, Headers: orig.Headers}).First()
			if err != nil {
				t.Fatalf("republish: %v", err)
			}
			dup = res
		}
		for _, g := range []string{"herald-notification", "herald-points"} {
			waitCommitted(t, cl, s.group(g), dup)
		}
		if ns := c.notifications(t, confirmed.GetOrderId()); len(ns) != 1 {
			t.Fatalf("%d notifications after a redelivered OrderConfirmed, want 1", len(ns))
		}
		bal := c.balance(t, "sub-alice")
		if bal.GetBalance() != 12 || len(awards(bal.GetEntries(), pointsv1.EntryKind_ENTRY_KIND_AWARD)) != 1 {
			t.Fatalf("balance after a redelivered OrderConfirmed = %v, want 12 from one award", bal)
		}

		// The copies were seen as duplicates, not silently applied.
		body := s.metrics(t)
		for _, g := range []string{"herald-notification", "herald-points"} {
			// Delivery is at least once, so the copies count at least
			// twice (a redelivered poll counts again); the effects above
			// are what must be exact.
			series := fmt.Sprintf(`herald_events_consumed_total{group="%s",result="duplicate",type="herald.orders.v1.OrderConfirmed"} `, s.group(g))
			if n := metricValue(body, series); n < 2 {
				t.Errorf("/metrics: %s= %v, want at least 2", series, n)
			}
		}
		if strings.Contains(body, `herald_outbox_pending{service="notification"}`) {
			t.Error("/metrics has an outbox gauge for notification, which has no outbox")
		}
	})
}

// metricValue returns the value after series (name and labels, then a
// space) in a Prometheus exposition, or -1 when absent.
func metricValue(body, series string) float64 {
	i := strings.Index(body, series)
	if i < 0 {
		return -1
	}
	line := body[i+len(series):]
	if j := strings.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(line), 64)
	if err != nil {
		return -1
	}
	return v
}
