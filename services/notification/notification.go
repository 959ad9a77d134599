// Package notification is the notification service: it tells a customer
// about every change of their order's state (OrderConfirmed, OrderRejected,
// OrderCancelled), one notification per change.
//
// A notification is stored in the unit of work of the event that caused it
// (one transaction with the event's inbox claim, which the platform opens)
// and delivered after commit by a dispatcher, a worker of the module, so a
// slow or failing receiver never holds up event consumption and a crash
// loses nothing. Delivery is at least once; the notification id travels as
// Idempotency-Key. Notifications go to a webhook when the module's
// webhook-url setting is set (--notification-webhook-url,
// HERALD_NOTIFICATION_WEBHOOK_URL), and to the log otherwise.
//
// [Module] declares the service to the platform. It consumes the orders
// events and publishes none. Its code is split into domain (rules), app
// (use cases and dispatcher), adapters (SQL store, channels) and ports
// (gRPC and event handlers).
package notification

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	notificationv1 "github.com/herald-events/herald/gen/go/herald/notification/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/module"
	"github.com/herald-events/herald/services/notification/adapters"
	"github.com/herald-events/herald/services/notification/app"
	"github.com/herald-events/herald/services/notification/ports"
)

// Name is the service's name in configuration and logs.
const Name = "notification"

// SettingWebhookURL is the key of the setting naming the URL that receives
// every notification as a JSON POST (see adapters.Webhook); unset, the
// notifications are written to the log.
const SettingWebhookURL = "webhook-url"

// Module declares the notification service: it consumes OrderConfirmed,
// OrderRejected and OrderCancelled, keeps notifications in a database,
// serves NotificationService and runs the dispatcher that delivers them.
func Module() module.Module {
	return module.Module{
		Name:       Name,
		Consumes:   []proto.Message{&ordersv1.OrderConfirmed{}, &ordersv1.OrderRejected{}, &ordersv1.OrderCancelled{}},
		Database:   true,
		Migrations: adapters.Migrations,
		Settings: []module.Setting{{Key: SettingWebhookURL,
			Usage: "URL that receives every notification as a JSON POST (http or https); empty: notifications are logged"}},
		Build: build,
	}
}

func build(_ context.Context, d module.Deps) (*module.Parts, error) {
	store := adapters.New(d.DB)
	var ch app.Channel = adapters.NewLog(d.Logger)
	if url := d.Settings[SettingWebhookURL]; url != "" {
		wh, err := adapters.NewWebhook(adapters.WebhookConfig{URL: url})
		if err != nil {
			return nil, fmt.Errorf("--notification-webhook-url (HERALD_NOTIFICATION_WEBHOOK_URL): %w", err)
		}
		ch = wh
	}
	disp, err := app.NewDispatcher(app.DispatcherConfig{Store: store, Channel: ch, Logger: d.Logger})
	if err != nil {
		return nil, err
	}
	a := app.New(store, disp.Notify)
	return &module.Parts{
		GRPC:     []module.GRPC{{Desc: &notificationv1.NotificationService_ServiceDesc, Impl: ports.NewGRPC(a)}},
		Handlers: ports.NewEvents(a).Handlers(),
		Workers:  []func(context.Context) error{disp.Run},
	}, nil
}
