package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/event"
)

// stack is a started process with gRPC clients.
type stack struct {
	proc      *server.Process
	ns        string
	orders    ordersv1.OrderServiceClient
	inventory inventoryv1.InventoryServiceClient
}

// get fetches path from the process's HTTP address (metrics, profiles).
func (s *stack) get(path string) (status int, body string, err error) {
	resp, err := http.Get("http://" + s.proc.HTTPAddr() + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// metrics returns the process's /metrics page.
func (s *stack) metrics(t *testing.T) string {
	t.Helper()
	_, body, err := s.get("/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	return body
}

// topic and group name a topic or consumer group inside the test's namespace.
func (s *stack) topic(name string) string { return event.Namespaced(s.ns, name) }
func (s *stack) group(name string) string { return event.Namespaced(s.ns, name) }

// read returns the committed records of a (namespaced) topic that match keep.
func (s *stack) read(t *testing.T, topic string, keep func(*kgo.Record) bool) []*kgo.Record {
	t.Helper()
	return readTopic(t, s.proc.Brokers(), s.topic(topic), keep)
}

// realStack returns the real infrastructure named by the environment
// (HERALD_KAFKA_BROKERS, HERALD_SCHEMA_REGISTRY_URL, HERALD_DATABASE_URL);
// without it the tests run on the embedded stack.
func realStack() (server.Config, bool) {
	brokers := os.Getenv("HERALD_KAFKA_BROKERS")
	if brokers == "" {
		return server.Config{}, false
	}
	return server.Config{
		Kafka:       server.KafkaConfig{Brokers: strings.Split(brokers, ",")},
		Registry:    server.RegistryConfig{URL: os.Getenv("HERALD_SCHEMA_REGISTRY_URL")},
		DatabaseURL: os.Getenv("HERALD_DATABASE_URL"),
	}, true
}

// namespaceFor derives a namespace from a test's data dir, so a restarted
// process in the same dir finds the same topics, groups and schemas.
func namespaceFor(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return "t" + hex.EncodeToString(sum[:5])
}

func testLogger(t *testing.T) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("HERALD_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// startProcess starts herald on the embedded stack in dir, on free ports
// (or on the real stack when its addresses are in the environment).
func startProcess(t *testing.T, dir string, hooks *server.Hooks) *stack {
	t.Helper()
	return startProcessWith(t, dir, func(c *server.Config) { c.Hooks = hooks })
}

// startProcessWith is startProcess with a hook to adjust the configuration.
func startProcessWith(t *testing.T, dir string, adjust func(*server.Config)) *stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := server.Config{
		DataDir: dir, Embedded: true,
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
		Logger: testLogger(t),
	}
	adjust(&cfg)
	if real, ok := realStack(); ok {
		cfg.Embedded = false
		cfg.Kafka, cfg.Registry, cfg.DatabaseURL = real.Kafka, real.Registry, real.DatabaseURL
		cfg.Namespace = namespaceFor(dir)
		// The deploy step: schemas are registered before the services start.
		if _, err := server.RegisterSchemas(cfg.Registry, "", cfg.Namespace); err != nil {
			t.Fatalf("register schemas: %v", err)
		}
	}
	p, err := server.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start herald: %v", err)
	}
	conn, err := grpc.NewClient(p.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", p.GRPCAddr(), err)
	}
	t.Cleanup(func() {
		conn.Close()
		_ = p.Close()
	})
	return &stack{proc: p, ns: cfg.Namespace, orders: ordersv1.NewOrderServiceClient(conn), inventory: inventoryv1.NewInventoryServiceClient(conn)}
}

func callCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func eur(units int64, nanos int32) *moneyv1.Money {
	return &moneyv1.Money{CurrencyCode: "EUR", Units: units, Nanos: nanos}
}

func item(sku string, qty int32) *ordersv1.LineItem {
	return &ordersv1.LineItem{Sku: sku, Quantity: qty, UnitPrice: eur(2, 500_000_000)}
}

func (s *stack) setStock(t *testing.T, sku string, qty int64) {
	t.Helper()
	if _, err := s.inventory.SetStock(callCtx(t), &inventoryv1.SetStockRequest{Sku: sku, Quantity: qty}); err != nil {
		t.Fatalf("SetStock %s: %v", sku, err)
	}
}

func (s *stack) stock(t *testing.T, sku string) int64 {
	t.Helper()
	resp, err := s.inventory.GetStock(callCtx(t), &inventoryv1.GetStockRequest{Sku: sku})
	if err != nil {
		t.Fatalf("GetStock %s: %v", sku, err)
	}
	return resp.GetQuantity()
}

func (s *stack) create(t *testing.T, req *ordersv1.CreateOrderRequest) *ordersv1.Order {
	t.Helper()
	resp, err := s.orders.CreateOrder(callCtx(t), req)
	if err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}
	return resp.GetOrder()
}

// waitStatus polls GetOrder until the order has want.
func (s *stack) waitStatus(t *testing.T, id string, want ordersv1.OrderStatus) *ordersv1.Order {
	t.Helper()
	var last *ordersv1.Order
	eventually(t, 20*time.Second, func() bool {
		resp, err := s.orders.GetOrder(callCtx(t), &ordersv1.GetOrderRequest{OrderId: id})
		if err != nil {
			t.Fatalf("GetOrder %s: %v", id, err)
		}
		last = resp.GetOrder()
		return last.GetStatus() == want
	}, "order %s to become %s (last: %v)", id, want, func() any { return last.GetStatus() })
	return last
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			for i, a := range args {
				if f, ok := a.(func() any); ok {
					args[i] = f()
				}
			}
			t.Fatalf("timed out after %s waiting for "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readTopic returns the committed records of topic that match keep,
// reading from the start to the topic's last stable offsets as of the call.
// Callers first wait for the effects they expect, so the records are there.
// A transactional batch ends with a commit marker that takes an offset no
// record reaches, so a partition one short of its end counts as read once
// the topic has been quiet for two polls; a long quiet ends the read anyway
// (aborted batches at the end).
func readTopic(t *testing.T, brokers []string, topic string, keep func(*kgo.Record) bool) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var ends kadm.ListedOffsets
	for {
		ends, err = kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("end offsets of %s: %v", topic, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { want[o.Partition] = o.Offset })
	next := map[int32]int64{}
	reached := func(slack int64) bool {
		for p, end := range want {
			if next[p] < end-slack {
				return false
			}
		}
		return true
	}
	var out []*kgo.Record
	for empty := 0; !reached(0) && !(empty >= 2 && reached(1)) && empty < 4; {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pctx)
		pcancel()
		if ctx.Err() != nil {
			t.Fatalf("read %s: %v", topic, ctx.Err())
		}
		if fs.NumRecords() == 0 {
			empty++
			continue
		}
		empty = 0
		fs.EachRecord(func(r *kgo.Record) {
			next[r.Partition] = r.Offset + 1
			if keep == nil || keep(r) {
				out = append(out, r)
			}
		})
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
