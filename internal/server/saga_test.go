package server_test

import (
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/schema"
)

func TestSagaEndToEnd(t *testing.T) {
	s := startProcessWith(t, t.TempDir(), func(c *server.Config) { c.PProf = true })
	s.setStock(t, "APPLE", 10)
	s.setStock(t, "PEAR", 2)

	t.Run("confirmed", func(t *testing.T) {
		o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "alice", Items: []*ordersv1.LineItem{item("APPLE", 3), item("PEAR", 1)}})
		if o.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PENDING {
			t.Fatalf("new order status = %s, want PENDING", o.GetStatus())
		}
		if got := o.GetTotal(); got.GetUnits() != 10 || got.GetNanos() != 0 || got.GetCurrencyCode() != "EUR" {
			t.Fatalf("total = %v, want EUR 10.0 (4 × 2.50)", got)
		}
		s.waitStatus(t, o.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)
		if got := s.stock(t, "APPLE"); got != 7 {
			t.Fatalf("APPLE stock = %d, want 7", got)
		}
		if got := s.stock(t, "PEAR"); got != 1 {
			t.Fatalf("PEAR stock = %d, want 1", got)
		}

		cancelled, err := s.orders.CancelOrder(callCtx(t), &ordersv1.CancelOrderRequest{OrderId: o.GetOrderId()})
		if err != nil {
			t.Fatalf("CancelOrder: %v", err)
		}
		if cancelled.GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_CANCELLED {
			t.Fatalf("cancelled status = %s", cancelled.GetOrder().GetStatus())
		}
		eventually(t, 20*time.Second, func() bool { return s.stock(t, "APPLE") == 10 && s.stock(t, "PEAR") == 2 },
			"stock to come back after cancel")
	})

	t.Run("rejected for insufficient stock", func(t *testing.T) {
		before := s.stock(t, "APPLE")
		o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "bob", Items: []*ordersv1.LineItem{item("APPLE", 1), item("PEAR", 5)}})
		got := s.waitStatus(t, o.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_REJECTED)
		if !strings.Contains(got.GetRejectionReason(), "INSUFFICIENT_STOCK") || !strings.Contains(got.GetRejectionReason(), "PEAR") {
			t.Fatalf("rejection_reason = %q, want INSUFFICIENT_STOCK naming PEAR", got.GetRejectionReason())
		}
		if after := s.stock(t, "APPLE"); after != before {
			t.Fatalf("APPLE stock changed from %d to %d by a rejected order: deduction must be all or nothing", before, after)
		}
		_, err := s.orders.CancelOrder(callCtx(t), &ordersv1.CancelOrderRequest{OrderId: o.GetOrderId()})
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("cancel rejected order: %v, want FailedPrecondition", err)
		}
	})

	t.Run("rejected for unknown sku", func(t *testing.T) {
		o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "carol", Items: []*ordersv1.LineItem{item("KIWI", 1)}})
		got := s.waitStatus(t, o.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_REJECTED)
		if !strings.HasPrefix(got.GetRejectionReason(), "UNKNOWN_SKU") {
			t.Fatalf("rejection_reason = %q, want UNKNOWN_SKU", got.GetRejectionReason())
		}
	})

	t.Run("events carry CloudEvents headers and Confluent framing", func(t *testing.T) {
		recs := s.read(t, "herald.orders.v1", nil)
		if len(recs) == 0 {
			t.Fatal("no records on herald.orders.v1")
		}
		ids := map[string]bool{}
		for _, r := range recs {
			for _, h := range []string{event.HeaderID, event.HeaderType, event.HeaderSource, event.HeaderTime,
				event.HeaderSpecVersion, event.HeaderContentType, event.HeaderTraceParent} {
				if header(r, h) == "" {
					t.Errorf("record %d/%d lacks header %s", r.Partition, r.Offset, h)
				}
			}
			if ids[header(r, event.HeaderID)] {
				t.Errorf("ce_id %s repeated", header(r, event.HeaderID))
			}
			ids[header(r, event.HeaderID)] = true
			if !strings.HasPrefix(header(r, event.HeaderType), "herald.orders.v1.Order") {
				t.Errorf("ce_type = %q", header(r, event.HeaderType))
			}
			if len(r.Value) < 6 || r.Value[0] != 0 {
				t.Errorf("value does not start with the Confluent magic byte: % x", r.Value[:min(6, len(r.Value))])
			}
		}
		// A fresh codec, knowing nothing but the registry's address, decodes
		// every value: the schema ids resolve on the registry.
		cl, err := schema.NewClient(s.proc.RegistryURL(), "", "")
		if err != nil {
			t.Fatal(err)
		}
		codec, err := schema.NewCodec(cl)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			m, err := codec.Decode(r.Topic, r.Value)
			if err != nil {
				t.Fatalf("decode %s/%d@%d: %v", r.Topic, r.Partition, r.Offset, err)
			}
			if got := string(m.ProtoReflect().Descriptor().FullName()); got != header(r, event.HeaderType) {
				t.Errorf("value decodes as %s but ce_type is %s", got, header(r, event.HeaderType))
			}
		}
	})

	t.Run("with pprof on, the profiler answers next to the metrics", func(t *testing.T) {
		status, body, err := s.get("/debug/pprof/goroutine?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
			t.Fatalf("GET /debug/pprof/goroutine: %d\n%.300s", status, body)
		}
	})

	t.Run("metrics count the saga", func(t *testing.T) {
		text := s.metrics(t)
		for _, want := range []string{
			`herald_events_published_total{service="orders",type="herald.orders.v1.OrderCreated"} 3`,
			`herald_events_consumed_total{group="` + s.group("herald-inventory") + `",result="ok",type="herald.orders.v1.OrderCreated"} 3`,
			`herald_grpc_requests_total{code="OK",method="/herald.orders.v1.OrderService/CreateOrder"} 3`,
			`herald_outbox_pending{service="orders"} 0`,
			`herald_outbox_pending{service="inventory"} 0`,
			`herald_db_transactions_rerun_total{service="orders"} `,
			`herald_outbox_oldest_pending_seconds{service="orders"} 0`,
			`herald_consumer_lag{group="` + s.group("herald-inventory") + `",partition=`,
			"go_goroutines",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		// Deliveries are at least once (an aborted consumer transaction
		// delivers again), so timings count every delivery: at least one
		// per event.
		for series, least := range map[string]float64{
			`herald_event_latency_seconds_count{group="` + s.group("herald-inventory") + `",type="herald.orders.v1.OrderCreated"} `:         3,
			`herald_handler_duration_seconds_count{group="` + s.group("herald-orders") + `",type="herald.inventory.v1.InventoryDeducted"} `: 1,
			// Three CreateOrder and three OrderCreated at least, each a
			// unit of work in a transaction of its service's database.
			`herald_db_units_total{service="orders"} `:                        3,
			`herald_db_units_total{service="inventory"} `:                     3,
			`herald_db_transactions_total{service="inventory"} `:              1,
			`herald_db_statements_total{service="inventory"} `:                12,
			`herald_outbox_publish_duration_seconds_count{service="orders"} `: 1,
			`herald_outbox_delay_seconds_count{service="orders"} `:            3,
		} {
			if v := metricValue(text, series); v < least {
				t.Errorf("/metrics: %s= %v, want at least %v", series, v, least)
			}
		}
		promtool, err := exec.LookPath("promtool")
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("promtool is not installed; CI installs it (Debian package prometheus)")
			}
			t.Log("promtool not installed; exposition format not checked")
			return
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(text)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool check metrics: %v\n%s", err, out)
		}
	})

	t.Run("consumer lag returns to zero", func(t *testing.T) {
		// Every event the saga published has been handled, so each
		// partition inventory reads is at its end: lag 0, commit markers
		// included.
		prefix := `herald_consumer_lag{group="` + s.group("herald-inventory") + `",`
		var last []string
		eventually(t, 10*time.Second, func() bool {
			_, body, err := s.get("/metrics")
			if err != nil {
				return false
			}
			last = last[:0]
			zero := true
			for _, line := range strings.Split(body, "\n") {
				if strings.HasPrefix(line, prefix) {
					last = append(last, line)
					zero = zero && strings.HasSuffix(line, "} 0")
				}
			}
			return len(last) > 0 && zero
		}, "inventory's lag to read 0 on every partition (last: %v)", func() any { return last })
	})

	t.Run("pages through orders", func(t *testing.T) {
		var all []string
		tok := ""
		for range 10 {
			resp, err := s.orders.ListOrders(callCtx(t), &ordersv1.ListOrdersRequest{PageSize: 2, PageToken: tok})
			if err != nil {
				t.Fatalf("ListOrders: %v", err)
			}
			for _, o := range resp.GetOrders() {
				all = append(all, o.GetOrderId())
			}
			if tok = resp.GetNextPageToken(); tok == "" {
				break
			}
		}
		if len(all) != 3 {
			t.Fatalf("listed %d orders, want 3", len(all))
		}
		_, err := s.orders.ListOrders(callCtx(t), &ordersv1.ListOrdersRequest{PageToken: "garbage"})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("bad page token: %v, want InvalidArgument", err)
		}
	})
}

func TestCreateOrderValidation(t *testing.T) {
	s := startProcess(t, t.TempDir(), nil)
	cases := []struct {
		name   string
		req    *ordersv1.CreateOrderRequest
		fields []string
	}{
		{"no items", &ordersv1.CreateOrderRequest{CustomerId: "a"}, []string{"items"}},
		{"no customer", &ordersv1.CreateOrderRequest{Items: []*ordersv1.LineItem{item("A", 1)}}, []string{"customer_id"}},
		{"zero quantity", &ordersv1.CreateOrderRequest{CustomerId: "a", Items: []*ordersv1.LineItem{item("A", 0)}}, []string{"items[0].quantity"}},
		{"negative quantity and empty sku", &ordersv1.CreateOrderRequest{CustomerId: "a", Items: []*ordersv1.LineItem{item("A", 1), item("", -2)}},
			[]string{"items[1].sku", "items[1].quantity"}},
		{"unknown currency", &ordersv1.CreateOrderRequest{CustomerId: "a", Items: []*ordersv1.LineItem{
			{Sku: "A", Quantity: 1, UnitPrice: &moneyv1.Money{CurrencyCode: "XYZ", Units: 1}}}}, []string{"items[0].unit_price.currency_code"}},
		{"missing price", &ordersv1.CreateOrderRequest{CustomerId: "a", Items: []*ordersv1.LineItem{{Sku: "A", Quantity: 1}}},
			[]string{"items[0].unit_price"}},
		{"mixed currencies", &ordersv1.CreateOrderRequest{CustomerId: "a", Items: []*ordersv1.LineItem{
			item("A", 1), {Sku: "B", Quantity: 1, UnitPrice: &moneyv1.Money{CurrencyCode: "USD", Units: 1}}}},
			[]string{"items[1].unit_price.currency_code"}},
		{"negative price", &ordersv1.CreateOrderRequest{CustomerId: "a", Items: []*ordersv1.LineItem{
			{Sku: "A", Quantity: 1, UnitPrice: &moneyv1.Money{CurrencyCode: "EUR", Units: -1, Nanos: -5}}}},
			[]string{"items[0].unit_price"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.orders.CreateOrder(callCtx(t), tc.req)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument {
				t.Fatalf("code = %s (%v), want InvalidArgument", st.Code(), err)
			}
			var got []string
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok {
					for _, v := range br.GetFieldViolations() {
						got = append(got, v.GetField())
						if v.GetDescription() == "" {
							t.Errorf("violation of %s has no description", v.GetField())
						}
					}
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.fields, ",") {
				t.Fatalf("field violations = %v, want %v", got, tc.fields)
			}
		})
	}
	// Nothing was accepted, so nothing was published.
	resp, err := s.orders.ListOrders(callCtx(t), &ordersv1.ListOrdersRequest{})
	if err != nil || len(resp.GetOrders()) != 0 {
		t.Fatalf("ListOrders after invalid requests = %d orders, %v; want none", len(resp.GetOrders()), err)
	}
	if recs := s.read(t, "herald.orders.v1", nil); len(recs) != 0 {
		t.Fatalf("%d records published for invalid requests", len(recs))
	}
}
