package server_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/module"
	"github.com/herald-events/herald/platform/sqldb"
)

// audit is a service written in a test: it records every confirmed order
// in a table of its own. It is one module value; nothing in
// internal/server knows of it.
func audit(db **sqldb.DB) module.Module {
	return module.Module{
		Name:     "audit",
		Consumes: []proto.Message{&ordersv1.OrderConfirmed{}},
		Database: true,
		Migrations: func(sqldb.Dialect) []sqldb.Migration {
			return []sqldb.Migration{{ID: "0001_audit", SQL: []string{
				`CREATE TABLE IF NOT EXISTS audit_log (order_id TEXT NOT NULL, customer_id TEXT NOT NULL)`,
			}}}
		},
		Build: func(_ context.Context, d module.Deps) (*module.Parts, error) {
			*db = d.DB
			record := func(ctx context.Context, _ *consumer.Event, msg *ordersv1.OrderConfirmed) ([]proto.Message, error) {
				_, err := d.DB.Conn(ctx).ExecContext(ctx, `INSERT INTO audit_log (order_id, customer_id) VALUES (?, ?)`,
					msg.GetOrderId(), msg.GetCustomerId())
				return nil, err
			}
			return &module.Parts{Handlers: []module.Handler{module.On(record)}}, nil
		},
	}
}

// TestModuleAddedByOneValue: a new subscriber service joins a process by
// one module value in the list: it gets its database, consumer group and
// inbox from the platform and records each confirmed order once.
func TestModuleAddedByOneValue(t *testing.T) {
	var db *sqldb.DB
	s := startProcessWith(t, t.TempDir(), func(c *server.Config) {
		c.Modules = append(server.Modules(), audit(&db))
		c.Services = append(server.KnownServices(), "audit")
	})
	subs := s.proc.Subscriptions()
	if topics, ok := subs[s.group("herald-audit")]; !ok || !slices.Equal(topics, []string{s.topic("herald.orders.v1")}) {
		t.Fatalf("subscriptions %v: want group %s reading %s", subs, s.group("herald-audit"), s.topic("herald.orders.v1"))
	}
	s.setStock(t, "APPLE", 10)
	var ids []string
	for range 3 {
		o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "alice", Items: []*ordersv1.LineItem{item("APPLE", 1)}})
		s.waitStatus(t, o.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)
		ids = append(ids, o.GetOrderId())
	}
	var got []string
	eventually(t, 30*time.Second, func() bool {
		rows, err := db.QueryContext(callCtx(t), `SELECT order_id FROM audit_log ORDER BY order_id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		got = got[:0]
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			got = append(got, id)
		}
		return len(got) >= len(ids)
	}, "the audit log records the %d confirmed orders", len(ids))
	slices.Sort(ids)
	if !slices.Equal(got, ids) {
		t.Fatalf("audit log %v, want each confirmed order once: %v", got, ids)
	}
}
