package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	logisticsv1 "github.com/herald-events/herald/gen/go/herald/logistics/v1"
	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	notificationv1 "github.com/herald-events/herald/gen/go/herald/notification/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	pointsv1 "github.com/herald-events/herald/gen/go/herald/points/v1"
	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/contract"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/schema"
)

// TestRequestRules calls each service with requests that break the rules
// of their .proto contracts: the contract interceptor answers
// INVALID_ARGUMENT with one google.rpc.BadRequest field violation per
// broken rule, before any handler runs.
func TestRequestRules(t *testing.T) {
	s := startProcess(t, t.TempDir(), nil)
	sub := dialSubscribers(t, s)
	long := strings.Repeat("x", 129)
	items := func(n int) []*ordersv1.LineItem {
		out := make([]*ordersv1.LineItem, n)
		for i := range out {
			out[i] = item(fmt.Sprintf("S%d", i), 1)
		}
		return out
	}
	price := func(code string, units int64, nanos int32) *moneyv1.Money {
		return &moneyv1.Money{CurrencyCode: code, Units: units, Nanos: nanos}
	}
	cases := []struct {
		name   string
		call   func(ctx context.Context) error
		fields []string
	}{
		{"request_id too long", func(ctx context.Context) error {
			_, err := s.orders.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: long, CustomerId: "a", Items: items(1)})
			return err
		}, []string{"request_id"}},
		{"customer_id too long", func(ctx context.Context) error {
			_, err := s.orders.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: long, Items: items(1)})
			return err
		}, []string{"customer_id"}},
		{"101 items", func(ctx context.Context) error {
			_, err := s.orders.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: "a", Items: items(101)})
			return err
		}, []string{"items"}},
		{"sku too long, quantity over 10000", func(ctx context.Context) error {
			_, err := s.orders.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: "a", Items: []*ordersv1.LineItem{item(long, 10001)}})
			return err
		}, []string{"items[0].sku", "items[0].quantity"}},
		{"lower-case currency code", func(ctx context.Context) error {
			_, err := s.orders.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: "a", Items: []*ordersv1.LineItem{
				{Sku: "A", Quantity: 1, UnitPrice: price("eur", 1, 0)}}})
			return err
		}, []string{"items[0].unit_price.currency_code"}},
		{"nanos out of range, opposite signs", func(ctx context.Context) error {
			_, err := s.orders.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: "a", Items: []*ordersv1.LineItem{
				{Sku: "A", Quantity: 1, UnitPrice: price("EUR", 1, -2_000_000_000)}}})
			return err
		}, []string{"items[0].unit_price", "items[0].unit_price", "items[0].unit_price.nanos"}},
		{"price over a billion", func(ctx context.Context) error {
			_, err := s.orders.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: "a", Items: []*ordersv1.LineItem{
				{Sku: "A", Quantity: 1, UnitPrice: price("EUR", 1_000_000_001, 0)}}})
			return err
		}, []string{"items[0].unit_price"}},
		{"GetOrder without id", func(ctx context.Context) error {
			_, err := s.orders.GetOrder(ctx, &ordersv1.GetOrderRequest{})
			return err
		}, []string{"order_id"}},
		{"CancelOrder with a long id", func(ctx context.Context) error {
			_, err := s.orders.CancelOrder(ctx, &ordersv1.CancelOrderRequest{OrderId: long})
			return err
		}, []string{"order_id"}},
		{"ListOrders page too large", func(ctx context.Context) error {
			_, err := s.orders.ListOrders(ctx, &ordersv1.ListOrdersRequest{PageSize: 501, CustomerId: long})
			return err
		}, []string{"page_size", "customer_id"}},
		{"SetStock negative", func(ctx context.Context) error {
			_, err := s.inventory.SetStock(ctx, &inventoryv1.SetStockRequest{Sku: "A", Quantity: -1})
			return err
		}, []string{"quantity"}},
		{"GetStock without sku", func(ctx context.Context) error {
			_, err := s.inventory.GetStock(ctx, &inventoryv1.GetStockRequest{})
			return err
		}, []string{"sku"}},
		{"ListNotifications negative page", func(ctx context.Context) error {
			_, err := sub.notification.ListNotifications(ctx, &notificationv1.ListNotificationsRequest{PageSize: -1})
			return err
		}, []string{"page_size"}},
		{"GetBalance without customer", func(ctx context.Context) error {
			_, err := sub.points.GetBalance(ctx, &pointsv1.GetBalanceRequest{})
			return err
		}, []string{"customer_id"}},
		{"GetShipment with a long id", func(ctx context.Context) error {
			_, err := sub.logistics.GetShipment(ctx, &logisticsv1.GetShipmentRequest{OrderId: long})
			return err
		}, []string{"order_id"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := status.Convert(tc.call(callCtx(t)))
			if st.Code() != codes.InvalidArgument {
				t.Fatalf("code = %s (%v), want InvalidArgument", st.Code(), st.Err())
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
	if recs := s.read(t, "herald.orders.v1", nil); len(recs) != 0 {
		t.Fatalf("%d records published for invalid requests", len(recs))
	}
}

// rawRecord is one record written to a topic as an outside producer would.
type rawRecord struct {
	topic   string
	key     string
	value   []byte
	headers map[string]string
}

// produceRaw writes records with kcat when it is installed (as an operator
// or an attacker with a console producer would), else with a plain franz-go
// client: either way nothing of herald's publishing path is involved.
func produceRaw(t *testing.T, brokers []string, recs ...rawRecord) {
	t.Helper()
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Log("kcat not installed: writing the records with franz-go")
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for _, r := range recs {
			kr := &kgo.Record{Topic: r.topic, Key: []byte(r.key), Value: r.value}
			for k, v := range r.headers {
				kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
			}
			if err := cl.ProduceSync(callCtx(t), kr).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	for i, r := range recs {
		// A file named on kcat's command line is sent whole as one
		// message, binary framing included.
		file := filepath.Join(t.TempDir(), fmt.Sprintf("value-%d.bin", i))
		if err := os.WriteFile(file, r.value, 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"-P", "-b", strings.Join(brokers, ","), "-t", r.topic, "-k", r.key}
		for k, v := range r.headers {
			args = append(args, "-H", k+"="+v)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, kcat, append(args, file)...).CombinedOutput()
		cancel()
		if err != nil || bytes.Contains(out, []byte("failed")) || bytes.Contains(out, []byte("ERROR")) {
			t.Fatalf("kcat %v: %v\n%s", args, err, out)
		}
	}
}

// frame encodes msg with Confluent framing for topic through the process's
// registry (the schema is registered: the process registered it).
func frame(t *testing.T, s *stack, topic string, msg proto.Message) []byte {
	t.Helper()
	client, err := schema.NewClient(s.proc.RegistryURL(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	codec, err := schema.NewCodec(client)
	if err != nil {
		t.Fatal(err)
	}
	b, err := codec.Encode(s.topic(topic), msg)
	if err != nil {
		t.Fatalf("frame %T for %s: %v", msg, topic, err)
	}
	return b
}

// TestConsumingDoor writes forged records onto the orders topic with valid
// framing and CloudEvents headers: an OrderCreated with quantity -50, and an
// InventoryDeducted (framed with its own schema) on the orders topic. The
// first goes to the dead-letter topic with class contract and its
// violation, and the stock is unchanged; the second with class routing, and
// logistics makes no shipment. Neither reaches a handler; both are counted.
func TestConsumingDoor(t *testing.T) {
	s := startProcess(t, t.TempDir(), nil)
	sub := dialSubscribers(t, s)
	s.setStock(t, "APPLE", 100)
	eur := func(u int64) *moneyv1.Money { return &moneyv1.Money{CurrencyCode: "EUR", Units: u} }
	forged := &ordersv1.OrderCreated{OrderId: "forged-1", CustomerId: "mallory", Total: eur(0), CreateTime: timestamppb.Now(),
		Lines: []*ordersv1.OrderLine{{Sku: "APPLE", Quantity: -50, UnitPrice: eur(0)}}}
	ghost := &inventoryv1.InventoryDeducted{OrderId: "ghost-1", Lines: []*inventoryv1.StockChange{{Sku: "APPLE", Quantity: 1}}}
	ce := func(id string, m proto.Message) map[string]string {
		return map[string]string{event.HeaderID: id, event.HeaderType: string(m.ProtoReflect().Descriptor().FullName()),
			event.HeaderSource: "kcat", event.HeaderSpecVersion: "1.0"}
	}
	produceRaw(t, s.proc.Brokers(),
		rawRecord{topic: s.topic("herald.orders.v1"), key: "forged-1", value: frame(t, s, "herald.orders.v1", forged), headers: ce("forged-1", forged)},
		rawRecord{topic: s.topic("herald.orders.v1"), key: "ghost-1", value: frame(t, s, "herald.inventory.v1", ghost), headers: ce("ghost-1", ghost)},
	)
	// A real order after the forged ones: once it is confirmed, inventory
	// and logistics have read past them.
	o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "alice", Items: []*ordersv1.LineItem{item("APPLE", 1)}})
	s.waitStatus(t, o.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)

	dead := map[string]*kgo.Record{} // by group/key
	eventually(t, 20*time.Second, func() bool {
		for _, r := range s.read(t, "herald.orders.v1.dlq", nil) {
			dead[header(r, consumer.HeaderDLQGroup)+"/"+string(r.Key)] = r
		}
		_, inv := dead[s.group("herald-inventory")+"/forged-1"]
		_, lg := dead[s.group("herald-logistics")+"/ghost-1"]
		return inv && lg
	}, "inventory's contract and logistics' routing dead letters")
	contractDL := dead[s.group("herald-inventory")+"/forged-1"]
	if c := header(contractDL, consumer.HeaderDLQClass); c != contract.ClassContract {
		t.Fatalf("forged OrderCreated dead-lettered with class %q, want contract", c)
	}
	if v := header(contractDL, consumer.HeaderDLQViolation); !strings.HasPrefix(v, "lines[0].quantity:") {
		t.Fatalf("violation header %q, want lines[0].quantity", v)
	}
	routingDL := dead[s.group("herald-logistics")+"/ghost-1"]
	if c := header(routingDL, consumer.HeaderDLQClass); c != contract.ClassRouting {
		t.Fatalf("InventoryDeducted on the orders topic dead-lettered with class %q, want routing", c)
	}
	if got := s.stock(t, "APPLE"); got != 99 {
		t.Fatalf("stock %d after the forged order and one real order of 1, want 99", got)
	}
	if sh := sub.shipment(t, "ghost-1"); sh != nil {
		t.Fatalf("logistics shipped the ghost order: %v", sh)
	}
	body := s.metrics(t)
	for _, want := range []string{
		`herald_events_dead_lettered_total{class="contract",group="` + s.group("herald-inventory") + `",type="herald.orders.v1.OrderCreated"} 1`,
		`herald_events_dead_lettered_total{class="routing",group="` + s.group("herald-logistics") + `",type="herald.inventory.v1.InventoryDeducted"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestHeaderlessEvent writes, with kcat, an OrderCreated framed as a
// Confluent serde frames it and without any CloudEvents header, as a
// producer in another language would. Inventory accepts it (its type from
// the schema, its id from topic, partition and offset) and deducts the
// stock once. Then the process stops, inventory's group is rewound to the
// start of the topic and the process starts again: the record is
// delivered again, has the same derived id, and the inbox drops it. A
// process that requires CloudEvents headers dead-letters such a record
// instead.
func TestHeaderlessEvent(t *testing.T) {
	dir := t.TempDir()
	s := startProcess(t, dir, nil)
	s.setStock(t, "PEAR", 10)
	eur := func(u int64) *moneyv1.Money { return &moneyv1.Money{CurrencyCode: "EUR", Units: u} }
	ext := &ordersv1.OrderCreated{OrderId: "ext-1", CustomerId: "python", Total: eur(9), CreateTime: timestamppb.Now(),
		Lines: []*ordersv1.OrderLine{{Sku: "PEAR", Quantity: 3, UnitPrice: eur(3)}}}
	produceRaw(t, s.proc.Brokers(), rawRecord{topic: s.topic("herald.orders.v1"), key: "ext-1", value: frame(t, s, "herald.orders.v1", ext)})
	eventually(t, 20*time.Second, func() bool { return s.stock(t, "PEAR") == 7 }, "inventory to deduct the header-less order")
	eventually(t, 20*time.Second, func() bool {
		return len(s.read(t, "herald.inventory.v1", keyed("herald.inventory.v1.InventoryDeducted", "ext-1"))) == 1
	}, "inventory to publish InventoryDeducted for the header-less order")
	if err := s.proc.Close(); err != nil {
		t.Fatal(err)
	}

	// Redelivery: rewind inventory's committed offsets on the orders
	// topic, through a process that runs the broker (embedded) but not
	// inventory, so its group has no members.
	s1 := startProcessWith(t, dir, func(c *server.Config) { c.Services = []string{"orders"} })
	rewind(t, s1.proc.Brokers(), s1.group("herald-inventory"), s1.topic("herald.orders.v1"))
	if err := s1.proc.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := startProcess(t, dir, nil)
	o := s2.create(t, &ordersv1.CreateOrderRequest{CustomerId: "alice", Items: []*ordersv1.LineItem{item("PEAR", 1)}})
	s2.waitStatus(t, o.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)
	if got := s2.stock(t, "PEAR"); got != 6 {
		t.Fatalf("stock %d after the redelivered header-less order and one order of 1, want 6", got)
	}
	if n := len(s2.read(t, "herald.inventory.v1", keyed("herald.inventory.v1.InventoryDeducted", "ext-1"))); n != 1 {
		t.Fatalf("%d InventoryDeducted for the header-less order after its redelivery, want 1", n)
	}
	// Inventory's own check (an order reserved once) would hide a second
	// claim; the inbox must have recognised the derived id. The new order
	// may sit on another partition than the redelivered record and be
	// final first: wait for the redelivery to be consumed.
	dup := `herald_events_consumed_total{group="` + s2.group("herald-inventory") + `",result="duplicate",type="herald.orders.v1.OrderCreated"} 1`
	eventually(t, 20*time.Second, func() bool { return strings.Contains(s2.metrics(t), dup) },
		"metrics to have %s: the redelivered record recognised by its derived id", dup)
}

// TestHeaderlessEventRefused: with --require-cloudevents for inventory, a
// record without CloudEvents headers is dead-lettered and the stock stays.
func TestHeaderlessEventRefused(t *testing.T) {
	s := startProcessWith(t, t.TempDir(), func(c *server.Config) { c.RequireCloudEvents = []string{"inventory"} })
	s.setStock(t, "PEAR", 10)
	eur := func(u int64) *moneyv1.Money { return &moneyv1.Money{CurrencyCode: "EUR", Units: u} }
	ext := &ordersv1.OrderCreated{OrderId: "ext-2", CustomerId: "python", Total: eur(9), CreateTime: timestamppb.Now(),
		Lines: []*ordersv1.OrderLine{{Sku: "PEAR", Quantity: 3, UnitPrice: eur(3)}}}
	produceRaw(t, s.proc.Brokers(), rawRecord{topic: s.topic("herald.orders.v1"), key: "ext-2", value: frame(t, s, "herald.orders.v1", ext)})
	var dead []*kgo.Record
	eventually(t, 20*time.Second, func() bool {
		dead = s.read(t, "herald.orders.v1.dlq", func(r *kgo.Record) bool {
			return header(r, consumer.HeaderDLQGroup) == s.group("herald-inventory")
		})
		return len(dead) == 1
	}, "inventory's dead letter")
	if reason := header(dead[0], consumer.HeaderDLQError); !strings.Contains(reason, consumer.ErrNoCloudEvents.Error()) {
		t.Fatalf("dead letter reason %q, want %q", reason, consumer.ErrNoCloudEvents)
	}
	if got := s.stock(t, "PEAR"); got != 10 {
		t.Fatalf("stock %d, want 10", got)
	}
}

// rewind sets group's committed offsets on every partition of topic back
// to the start; the group must have no members.
func rewind(t *testing.T, brokers []string, group, topic string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	committed, err := adm.FetchOffsets(callCtx(t), group)
	if err != nil {
		t.Fatal(err)
	}
	to := kadm.Offsets{}
	committed.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic {
			to.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: 0, LeaderEpoch: -1})
		}
	})
	if len(to) == 0 {
		t.Fatalf("group %s has no committed offsets on %s", group, topic)
	}
	resp, err := adm.CommitOffsets(callCtx(t), group, to)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("rewind %s on %s: %v", group, topic, err)
	}
}

// TestContractTravelsWithSchema: the rules reach the registry with the
// schema. The orders subject references buf/validate/validate.proto like
// any import, and that subject holds the rule definitions, so a consumer
// in another language that fetches the schema sees the rules.
func TestContractTravelsWithSchema(t *testing.T) {
	s := startProcess(t, t.TempDir(), nil)
	get := func(path string, out any) {
		t.Helper()
		req, err := http.NewRequestWithContext(callCtx(t), http.MethodGet, strings.TrimSuffix(s.proc.RegistryURL(), "/")+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	var version struct {
		Schema     string `json:"schema"`
		References []struct {
			Name, Subject string
		} `json:"references"`
	}
	get("/subjects/"+url.PathEscape(s.topic("herald.orders.v1")+"-value")+"/versions/latest", &version)
	if !strings.Contains(version.Schema, "buf.validate.field") {
		t.Fatalf("the orders schema has no rules:\n%s", version.Schema)
	}
	subject := ""
	for _, r := range version.References {
		if r.Name == "buf/validate/validate.proto" {
			subject = r.Subject
		}
	}
	if subject == "" {
		t.Fatalf("the orders schema does not reference buf/validate/validate.proto: %+v", version.References)
	}
	var rules struct {
		Schema string `json:"schema"`
	}
	get("/subjects/"+url.PathEscape(subject)+"/versions/latest", &rules)
	if !strings.Contains(rules.Schema, "package buf.validate;") || !strings.Contains(rules.Schema, "message FieldRules") {
		t.Fatalf("subject %s does not hold the rule definitions", subject)
	}
}
