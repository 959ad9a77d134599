package notification_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	notificationv1 "github.com/herald-events/herald/gen/go/herald/notification/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/module"
	"github.com/herald-events/herald/platform/module/moduletest"
	"github.com/herald-events/herald/platform/schema"
	"github.com/herald-events/herald/services/notification"
	"github.com/herald-events/herald/services/notification/adapters"
)

// delivery is one POST the webhook received.
type delivery struct {
	key     string
	payload adapters.WebhookPayload
}

func platform(t *testing.T, webhookURL string) (module.Platform, *moduletest.Recorder, *schema.Codec) {
	t.Helper()
	codec := moduletest.Codec(t)
	p, _, dead := moduletest.Platform(t, codec)
	p.Settings = map[string]map[string]string{notification.Name: {notification.SettingWebhookURL: webhookURL}}
	return p, dead, codec
}

// frame encodes msg as the orders service's outbox relay would, with ce_id
// id.
func frame(t *testing.T, codec *schema.Codec, id string, msg proto.Message) *bus.Message {
	return moduletest.Frame(t, codec, "", id, "herald/orders", msg)
}

// TestModuleDeliversToWebhook starts the module as a process does, with its
// webhook-url setting pointing at a real HTTP server, and drives orders
// events through its consumer: each notification is recorded in the
// event's unit of work (a redelivered ce_id is dropped by the inbox the
// platform claims) and POSTed to the webhook by the module's worker.
func TestModuleDeliversToWebhook(t *testing.T) {
	posts := make(chan delivery, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var d delivery
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&d.payload) != nil {
			http.Error(w, "want a JSON POST", http.StatusBadRequest)
			return
		}
		d.key = r.Header.Get(adapters.HeaderIdempotencyKey)
		posts <- d
	}))
	defer hook.Close()
	p, dead, codec := platform(t, hook.URL)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in, err := notification.Module().Start(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if group, topics := in.Subscription(); group != "herald-notification" || len(topics) != 1 || topics[0] != "herald.orders.v1" {
		t.Fatalf("Subscription = %s %v, want herald-notification [herald.orders.v1]", group, topics)
	}
	sub := moduletest.NewFeed(nil)
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, sub) }()
	deliver := func(m *bus.Message) {
		t.Helper()
		sub.Deliver(t, m)
	}
	next := func() delivery {
		t.Helper()
		select {
		case d := <-posts:
			return d
		case <-time.After(10 * time.Second):
			t.Fatal("no webhook POST within 10s")
			return delivery{}
		}
	}

	deliver(frame(t, codec, "e-1", &ordersv1.OrderConfirmed{OrderId: "o-1", CustomerId: "alice",
		Total: &moneyv1.Money{CurrencyCode: "EUR", Units: 12}}))
	first := next()
	if first.payload.OrderID != "o-1" || first.payload.CustomerID != "alice" || first.payload.Kind != "CONFIRMED" ||
		first.key == "" || first.key != first.payload.NotificationID {
		t.Fatalf("webhook got %+v, want o-1 CONFIRMED for alice keyed by its notification id", first)
	}
	// The same ce_id is the same event, whatever it carries now: the
	// inbox drops it, so o-1 gets no CANCELLED notification.
	deliver(frame(t, codec, "e-1", &ordersv1.OrderCancelled{OrderId: "o-1", CustomerId: "alice"}))
	deliver(frame(t, codec, "e-2", &ordersv1.OrderRejected{OrderId: "o-2", CustomerId: "bob", Reason: "out of stock"}))
	if second := next(); second.payload.OrderID != "o-2" || second.payload.Kind != "REJECTED" ||
		!strings.Contains(second.payload.Text, "out of stock") {
		t.Fatalf("second webhook POST = %+v, want o-2 REJECTED with its reason", second)
	}

	// The module's gRPC service reads what the handlers recorded and the
	// worker delivered.
	grpcs := in.GRPC()
	if len(grpcs) != 1 || grpcs[0].Desc.ServiceName != notificationv1.NotificationService_ServiceDesc.ServiceName {
		t.Fatalf("GRPC = %+v, want NotificationService", grpcs)
	}
	srv := grpcs[0].Impl.(notificationv1.NotificationServiceServer)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := srv.ListNotifications(ctx, &notificationv1.ListNotificationsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		ns := resp.GetNotifications()
		if len(ns) != 2 || ns[0].GetOrderId() != "o-2" || ns[1].GetOrderId() != "o-1" ||
			ns[1].GetKind() != notificationv1.NotificationKind_NOTIFICATION_KIND_CONFIRMED {
			t.Fatalf("ListNotifications = %v, want o-2 then o-1 CONFIRMED only", ns)
		}
		if ns[0].GetDeliveryStatus() == notificationv1.DeliveryStatus_DELIVERY_STATUS_DELIVERED &&
			ns[1].GetDeliveryStatus() == notificationv1.DeliveryStatus_DELIVERY_STATUS_DELIVERED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("notifications not marked delivered within 10s: %v", ns)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case d := <-posts:
		t.Fatalf("an extra webhook POST: %+v", d)
	default:
	}
	if n := len(dead.Messages()); n != 0 {
		t.Errorf("%d dead letters", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil on shutdown", err)
	}
}

// TestModuleRefusesBadWebhookURL: a webhook-url that is not an http(s) URL
// stops the module from starting, naming the flag and its variable.
func TestModuleRefusesBadWebhookURL(t *testing.T) {
	p, _, _ := platform(t, "ftp://example.com/hook")
	_, err := notification.Module().Start(context.Background(), p)
	if err == nil || !strings.Contains(err.Error(), "--notification-webhook-url") || !strings.Contains(err.Error(), "HERALD_NOTIFICATION_WEBHOOK_URL") {
		t.Fatalf("Start = %v, want an error naming --notification-webhook-url and HERALD_NOTIFICATION_WEBHOOK_URL", err)
	}
}
