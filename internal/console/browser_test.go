package console_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/schema"
)

// chromium returns Debian's chromium, or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium on PATH: the browser tests need Debian's chromium (apt-get install chromium); CI installs it")
	return ""
}

// devProcess starts herald dev (the embedded stack) with the console.
func devProcess(t *testing.T) *server.Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := server.Start(ctx, server.Config{
		DataDir: t.TempDir(), Embedded: true, Console: true,
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// browser is a headless chromium tab.
func browser(t *testing.T, exe string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1200, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 120*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return ctx
}

func shot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitText polls the page's HTML until it holds every want.
func waitText(t *testing.T, ctx context.Context, sel string, within time.Duration, want ...string) string {
	t.Helper()
	var html string
	deadline := time.Now().Add(within)
	for {
		// A node read while a reload replaces the document is gone: read
		// again until the deadline.
		var err error
		html, err = chromedp.Run(ctx, chromedp.OuterHTML(sel))
		if err != nil {
			if time.Now().After(deadline) || ctx.Err() != nil {
				t.Fatalf("read %s: %v", sel, err)
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		missing := ""
		for _, w := range want {
			if !strings.Contains(html, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return html
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never showed %q:\n%s", sel, missing, html)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestConsoleInChromium drives the console in headless chromium against
// herald dev: an order's saga timeline, a poison record's dead letter and
// its replay, and a schema diff. Screenshots go to the test's artifact
// directory (go test -artifacts keeps them).
func TestConsoleInChromium(t *testing.T) {
	exe := chromium(t)
	p := devProcess(t)
	shots := t.ArtifactDir()
	t.Logf("screenshots in %s", shots)
	base := "http://" + p.HTTPAddr() + "/console/"
	ctx := browser(t, exe)

	conn, err := grpc.NewClient(p.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := inventoryv1.NewInventoryServiceClient(conn).SetStock(gctx, &inventoryv1.SetStockRequest{Sku: "APPLE", Quantity: 10}); err != nil {
		t.Fatal(err)
	}
	created, err := ordersv1.NewOrderServiceClient(conn).CreateOrder(gctx, &ordersv1.CreateOrderRequest{
		RequestId: "console-1", CustomerId: "alice",
		Items: []*ordersv1.LineItem{{Sku: "APPLE", Quantity: 2, UnitPrice: &moneyv1.Money{CurrencyCode: "EUR", Units: 3}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetOrder().GetOrderId()

	t.Run("timeline", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"orders"),
			chromedp.SendKeys("#q", "alice"), chromedp.Submit("#q"),
			chromedp.WaitVisible(`a[href$="`+id+`"]`),
			chromedp.Click(`a[href$="`+id+`"]`),
			chromedp.WaitVisible("#timeline")); err != nil {
			t.Fatal(err)
		}
		html := waitText(t, ctx, "#timeline", 30*time.Second, "herald.orders.v1.OrderConfirmed", "CONFIRMED")
		if _, rest, ok := strings.Cut(html, "of each topic; "); ok {
			took, _, _ := strings.Cut(rest, "<")
			t.Logf("the timeline read its windows in %s", strings.TrimSpace(strings.Split(took, ";")[0]))
		}
		order := []string{"herald.orders.v1.OrderCreated", "herald.inventory.v1.InventoryDeducted", "herald.orders.v1.OrderConfirmed"}
		at := 0
		for _, typ := range order {
			i := strings.Index(html[at:], `<span class="type">`+typ+`</span>`)
			if i < 0 {
				t.Fatalf("timeline lacks %s after the previous steps:\n%s", typ, html)
			}
			at += i
		}
		// Decoded through the registry: the payload's fields as JSON, and
		// the CloudEvents headers.
		for _, want := range []string{`"orderId": "` + id, `"customerId": "alice"`, "ce_source", "herald/inventory", "traceparent"} {
			if !strings.Contains(html, want) {
				t.Errorf("timeline lacks %q:\n%s", want, html)
			}
		}
		if err := chromedp.Do(ctx, chromedp.Click(".event summary")); err != nil {
			t.Fatal(err)
		}
		shot(t, ctx, shots, "timeline")
	})

	t.Run("dead letter and replay", func(t *testing.T) {
		key := fmt.Sprintf("poison-%d", time.Now().UnixNano())
		poison(t, p.Brokers(), key)
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"dlq")); err != nil {
			t.Fatal(err)
		}
		groups := 0 // each group reading herald.orders.v1 dead-letters it
		for _, topics := range p.Subscriptions() {
			if slices.Contains(topics, "herald.orders.v1") {
				groups++
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		var html string
		for {
			if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
				t.Fatal(err)
			}
			html = waitText(t, ctx, "main", time.Second)
			if strings.Count(html, `name="ref"`) >= groups {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the poison record never showed under dead letters:\n%s", html)
			}
			time.Sleep(300 * time.Millisecond)
		}
		// One dead letter per group that reads herald.orders.v1.
		for g, topics := range p.Subscriptions() {
			if slices.Contains(topics, "herald.orders.v1") {
				if !strings.Contains(html, "<td>"+g+"</td>") {
					t.Errorf("no dead letter of group %s", g)
				}
			}
		}
		section := `section[aria-labelledby="h-herald.orders.v1.dlq"]`
		html = waitText(t, ctx, section, 10*time.Second)
		if n := strings.Count(html, `name="ref"`); n != groups {
			t.Fatalf("%d dead letters, want one per group reading herald.orders.v1 (%d):\n%s", n, groups, html)
		}
		if _, rest, ok := strings.Cut(html, "Answered in "); ok {
			took, _, _ := strings.Cut(rest, "<")
			t.Logf("the dead-letter page answered in %s", took)
		}
		shot(t, ctx, shots, "dead-letters")
		box := `section[aria-labelledby="h-herald.orders.v1.dlq"] input[type=checkbox]`
		if err := chromedp.Do(ctx, chromedp.Click(box),
			chromedp.Click(`section[aria-labelledby="h-herald.orders.v1.dlq"] button[type=submit]`)); err != nil {
			t.Fatal(err)
		}
		waitText(t, ctx, "main", 5*time.Second, "Send these 1 dead letter(s)", "undecodable")
		shot(t, ctx, shots, "replay-confirm")
		if err := chromedp.Do(ctx, chromedp.Click(`main form button[type=submit]`),
			chromedp.WaitVisible(`[data-testid=replayed]`)); err != nil {
			t.Fatal(err)
		}
		waitText(t, ctx, "main", 5*time.Second, "Replayed 1 of 1")
		// The replayed record is still poison: every group that reads
		// herald.orders.v1 dead-letters it again, marked as replayed.
		before := groups
		deadline = time.Now().Add(30 * time.Second)
		for {
			if err := chromedp.Do(ctx, chromedp.Navigate(base+"dlq")); err != nil {
				t.Fatal(err)
			}
			html = waitText(t, ctx, section, time.Second)
			if n := strings.Count(html, `name="ref"`); n == 2*before && strings.Contains(html, "replayed from herald.orders.v1.dlq/") {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("after the replay, %d dead letters (want %d, some replayed):\n%s", n, 2*before, html)
			}
			time.Sleep(300 * time.Millisecond)
		}
	})

	t.Run("schema diff", func(t *testing.T) {
		client, err := schema.NewClient(p.RegistryURL(), "", "")
		if err != nil {
			t.Fatal(err)
		}
		const subject = "console.test-value"
		v1 := "syntax = \"proto3\";\npackage console.test.v1;\n\nmessage Thing {\n  string id = 1;\n}\n"
		v2 := "syntax = \"proto3\";\npackage console.test.v1;\n\nmessage Thing {\n  string id = 1;\n  string colour = 2;\n}\n"
		for _, text := range []string{v1, v2} {
			if _, err := client.Register(subject, schemaregistry.SchemaInfo{Schema: text, SchemaType: "PROTOBUF"}, false); err != nil {
				t.Fatal(err)
			}
		}
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"schemas"),
			chromedp.Click(`a[href$="`+subject+`"]`),
			chromedp.WaitVisible(`[data-testid=diff]`)); err != nil {
			t.Fatal(err)
		}
		html := waitText(t, ctx, "main", 5*time.Second, "Changes from version 1", `<span class="d add">+   string colour = 2;</span>`, "console.test.v1.Thing.colour")
		_ = html
		shot(t, ctx, shots, "schema-diff")
	})

	t.Run("topics and services", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"topics/herald.orders.v1?type=herald.orders.v1.OrderCreated")); err != nil {
			t.Fatal(err)
		}
		waitText(t, ctx, "main", 5*time.Second, "herald-inventory", id)
		shot(t, ctx, shots, "topic")
		// Open (no authentication): a Host that is a DNS name is refused.
		req, _ := http.NewRequest("GET", base+"topics", nil)
		req.Host = "rebound.example:8082"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("Host rebound.example: %d, want 421", resp.StatusCode)
		}
		// Two samples a second apart around another order: the charts
		// draw the rates between them. The console's own sample (every
		// 5 s) can fall between the order's events and the reload and
		// leave the newest rate at 0; then another order, up to five.
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"services")); err != nil {
			t.Fatal(err)
		}
		for try := 1; ; try++ {
			if _, err := ordersv1.NewOrderServiceClient(conn).CreateOrder(gctx, &ordersv1.CreateOrderRequest{
				RequestId: fmt.Sprintf("console-%d", try+1), CustomerId: "bob",
				Items: []*ordersv1.LineItem{{Sku: "APPLE", Quantity: 1, UnitPrice: &moneyv1.Money{CurrencyCode: "EUR", Units: 3}}},
			}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1100 * time.Millisecond)
			if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
				t.Fatal(err)
			}
			html := waitText(t, ctx, "main", 5*time.Second, "<svg", "p99 handler time", "<polyline", "schema registry: up")
			if !strings.Contains(html, "published</figcaption>") && !strings.Contains(html, `published <span class="muted">0 /s`) {
				break
			}
			if try == 5 {
				t.Errorf("no publishing rate after %d orders:\n%s", try, html)
				break
			}
		}
		shot(t, ctx, shots, "services")
	})
}

// poison writes a record that does not decode onto herald.orders.v1 with
// kcat, as an operator would by mistake, or with franz-go without kcat.
func poison(t *testing.T, brokers []string, key string) {
	t.Helper()
	if kcat, err := exec.LookPath("kcat"); err == nil {
		cmd := exec.Command(kcat, "-P", "-b", strings.Join(brokers, ","), "-t", "herald.orders.v1", "-k", key, "-H", "ce_id="+key)
		cmd.Stdin = strings.NewReader("not an event")
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("kcat: %v: %s", err, errb.String())
		}
		return
	}
	t.Log("no kcat on PATH: producing the poison record with franz-go")
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "herald.orders.v1", Key: []byte(key), Value: []byte("not an event"),
		Headers: []kgo.RecordHeader{{Key: "ce_id", Value: []byte(key)}}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestTimelineLiveUpdate opens the timeline of an order in flight (orders
// runs, inventory does not) and, without reloading, sees it move on when an
// inventory answer arrives: the rejection and its reason.
func TestTimelineLiveUpdate(t *testing.T) {
	exe := chromium(t)
	ctx0, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := server.Start(ctx0, server.Config{
		DataDir: t.TempDir(), Embedded: true, Console: true, Services: []string{"orders"},
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	conn, err := grpc.NewClient(p.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	created, err := ordersv1.NewOrderServiceClient(conn).CreateOrder(ctx0, &ordersv1.CreateOrderRequest{
		RequestId: "live-1", CustomerId: "carol",
		Items: []*ordersv1.LineItem{{Sku: "PEAR", Quantity: 5, UnitPrice: &moneyv1.Money{CurrencyCode: "EUR", Units: 1}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetOrder().GetOrderId()
	ctx := browser(t, exe)
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+p.HTTPAddr()+"/console/orders/"+id)); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#timeline", 10*time.Second, "PENDING", "herald.orders.v1.OrderCreated", "waiting: herald-inventory", "refreshing while")

	// Inventory's answer, as the inventory service would publish it.
	client, err := schema.NewClient(p.RegistryURL(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	codec, err := schema.NewCodec(client)
	if err != nil {
		t.Fatal(err)
	}
	msg := &inventoryv1.InventoryDeductionFailed{OrderId: id, Reason: inventoryv1.DeductionFailureReason_DEDUCTION_FAILURE_REASON_INSUFFICIENT_STOCK,
		Sku: "PEAR", Requested: 5, Available: 1}
	v, err := codec.Encode("herald.inventory.v1", msg)
	if err != nil {
		t.Fatal(err)
	}
	env, err := event.New("herald/inventory", msg)
	if err != nil {
		t.Fatal(err)
	}
	rec := &kgo.Record{Topic: "herald.inventory.v1", Key: []byte(id), Value: v}
	for _, h := range event.Headers(env.ID, env.Type(), "herald/inventory", time.Now().UTC().Format(event.TimeLayout), id, "") {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.Brokers()...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx0, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// No reload: the page's script brings the rest.
	html := waitText(t, ctx, "#timeline", 20*time.Second, "REJECTED", "herald.inventory.v1.InventoryDeductionFailed",
		"herald.orders.v1.OrderRejected", "Stopped", "rejected: ")
	if strings.Contains(html, "refreshing while") {
		t.Errorf("a final order's timeline still says it refreshes:\n%s", html)
	}
}
