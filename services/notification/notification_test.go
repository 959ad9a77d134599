package notification_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	notificationv1 "github.com/herald-events/herald/gen/go/herald/notification/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/module"
	"github.com/herald-events/herald/platform/registry"
	"github.com/herald-events/herald/platform/schema"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/services/notification"
	"github.com/herald-events/herald/services/notification/adapters"
)

// feed is a bus.Subscriber that hands each message sent on in to the
// consumer's handler and sends back what the handler returned.
type feed struct {
	in  chan *bus.Message
	out chan error
}

func (f *feed) Capabilities() bus.Capabilities { return bus.Capabilities{} }

func (f *feed) Run(ctx context.Context, _ string, _ []string, h bus.Handler) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-f.in:
			f.out <- h(ctx, m)
		}
	}
}

// deadLetters records what the consumer dead-letters.
type deadLetters struct {
	mu   sync.Mutex
	msgs []*bus.Message
}

func (d *deadLetters) Publish(_ context.Context, msgs ...*bus.Message) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.msgs = append(d.msgs, msgs...)
	return nil
}
func (d *deadLetters) Capabilities() bus.Capabilities { return bus.Capabilities{} }
func (d *deadLetters) Close() error                   { return nil }

// delivery is one POST the webhook received.
type delivery struct {
	key     string
	payload adapters.WebhookPayload
}

func platform(t *testing.T, webhookURL string) (module.Platform, *schema.Codec) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg, err := registry.New(registry.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	rs := httptest.NewServer(reg.Handler())
	t.Cleanup(rs.Close)
	client, err := schema.NewClient(rs.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	codec, err := schema.NewCodec(client, schema.AutoRegister(true))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqldb.OpenSQLite(filepath.Join(t.TempDir(), "n.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return module.Platform{
		Codec: codec, DeadLetter: &deadLetters{}, Logger: quiet,
		DB:       func(string) (*sqldb.DB, error) { return db, nil },
		Settings: map[string]map[string]string{notification.Name: {notification.SettingWebhookURL: webhookURL}},
	}, codec
}

// frame encodes msg as the orders service's outbox relay would, with ce_id
// id.
func frame(t *testing.T, codec *schema.Codec, id string, msg proto.Message) *bus.Message {
	t.Helper()
	route, err := event.RouteOf(msg.ProtoReflect().Descriptor())
	if err != nil {
		t.Fatal(err)
	}
	value, err := codec.Encode(route.Topic, msg)
	if err != nil {
		t.Fatal(err)
	}
	key := route.Key(msg)
	return &bus.Message{Topic: route.Topic, Key: []byte(key), Value: value, Headers: event.Headers(id,
		string(msg.ProtoReflect().Descriptor().FullName()), "herald/orders", time.Now().UTC().Format(event.TimeLayout), key, "")}
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
	p, codec := platform(t, hook.URL)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in, err := notification.Module().Start(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if group, topics := in.Subscription(); group != "herald-notification" || len(topics) != 1 || topics[0] != "herald.orders.v1" {
		t.Fatalf("Subscription = %s %v, want herald-notification [herald.orders.v1]", group, topics)
	}
	sub := &feed{in: make(chan *bus.Message), out: make(chan error)}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, sub) }()
	deliver := func(m *bus.Message) {
		t.Helper()
		sub.in <- m
		if err := <-sub.out; err != nil {
			t.Fatalf("handling %s: %v", m, err)
		}
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
	dl := p.DeadLetter.(*deadLetters)
	dl.mu.Lock()
	if len(dl.msgs) != 0 {
		t.Errorf("%d dead letters", len(dl.msgs))
	}
	dl.mu.Unlock()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil on shutdown", err)
	}
}

// TestModuleRefusesBadWebhookURL: a webhook-url that is not an http(s) URL
// stops the module from starting, naming the flag and its variable.
func TestModuleRefusesBadWebhookURL(t *testing.T) {
	p, _ := platform(t, "ftp://example.com/hook")
	_, err := notification.Module().Start(context.Background(), p)
	if err == nil || !strings.Contains(err.Error(), "--notification-webhook-url") || !strings.Contains(err.Error(), "HERALD_NOTIFICATION_WEBHOOK_URL") {
		t.Fatalf("Start = %v, want an error naming --notification-webhook-url and HERALD_NOTIFICATION_WEBHOOK_URL", err)
	}
}
