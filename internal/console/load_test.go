package console_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/schema"
)

// TestPagesOn100kRecords puts 100,000 OrderCreated events on herald.orders.v1
// and reports how long each page takes to answer: every page reads bounded
// windows, so the figures do not grow with the topic. It reports, it does
// not judge (speed is not checked by timed tests); it runs without -short.
func TestPagesOn100kRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("produces 100,000 records: not with -short")
	}
	const total = 100_000
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The console alone: nothing consumes the records, so the lag is the
	// whole topic and the machine's two cores stay on the pages.
	p, err := server.Start(ctx, server.Config{
		DataDir: t.TempDir(), Embedded: true, Services: []string{server.ConsoleService},
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	client, err := schema.NewClient(p.RegistryURL(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	codec, err := schema.NewCodec(client)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.Brokers()...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const topic = "herald.orders.v1"
	start := time.Now()
	var lastID string
	for i := range total {
		id := fmt.Sprintf("load-%06d", i)
		msg := &ordersv1.OrderCreated{OrderId: id, CustomerId: fmt.Sprintf("c%d", i%1000), CreateTime: timestamppb.Now()}
		v, err := codec.Encode(topic, msg)
		if err != nil {
			t.Fatal(err)
		}
		env, err := event.New("herald/load", msg)
		if err != nil {
			t.Fatal(err)
		}
		rec := &kgo.Record{Topic: topic, Key: []byte(id), Value: v}
		for _, h := range event.Headers(env.ID, env.Type(), "herald/load", time.Now().UTC().Format(time.RFC3339Nano), id, "") {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
		lastID = id
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("produced %d records in %s", total, time.Since(start).Round(time.Millisecond))

	base := "http://" + p.HTTPAddr() + "/console/"
	pages := []struct{ path, want string }{
		{"topics", "100000"},
		{"topics/" + topic, "herald.orders.v1.OrderCreated"},
		{"topics/" + topic + "?type=herald.orders.v1.OrderCreated&page=3", "load-"},
		{"topics/" + topic + "?key=" + lastID, lastID},
		{"orders/" + lastID, "herald.orders.v1.OrderCreated"},
		{"dlq", "herald.orders.v1.dlq"},
		{"schemas", "herald.orders.v1-value"},
		{"services", "p99 handler time"},
	}
	for _, pg := range pages {
		get := func() (time.Duration, string) {
			t0 := time.Now()
			resp, err := http.Get(base + pg.path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %d\n%s", pg.path, resp.StatusCode, b)
			}
			return time.Since(t0), string(b)
		}
		get() // warm: the first read of a topic connects
		var worst time.Duration
		var body string
		for range 5 {
			d, b := get()
			worst, body = max(worst, d), b
		}
		if !strings.Contains(body, pg.want) {
			t.Errorf("GET %s lacks %q", pg.path, pg.want)
		}
		t.Logf("GET /console/%-60s worst of 5: %6.1f ms, %5d bytes", pg.path, float64(worst.Microseconds())/1000, len(body))
	}
}
