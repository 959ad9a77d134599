package server_test

import (
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

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/internal/server"
)

// TestDashboardQueriesReturnSeries runs every query of the Grafana
// dashboard in compose/ through a real Prometheus (the `prometheus` server
// binary, Debian's package in CI) scraping a fresh herald dev under light
// load: none may come back empty, which Grafana shows as "No data". It
// skips when prometheus is not installed.
func TestDashboardQueriesReturnSeries(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Prometheus server (-short)")
	}
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("the prometheus server binary is not installed (apt-get install prometheus): dashboard queries not checked")
	}
	exprs := dashboardExprs(t)

	s := startProcessWith(t, t.TempDir(), func(*server.Config) {})
	s.setStock(t, "APPLE", 1000)
	load := func() {
		for range 3 {
			s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "alice", Items: []*ordersv1.LineItem{item("APPLE", 1)}})
		}
	}
	load()

	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: herald
    honor_labels: true
    static_configs:
      - targets: [%q]
        labels:
          service: dev
`, s.proc.HTTPAddr())
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus logs:\n%s", logs.String())
		}
	})

	// Rates need two samples in their window: the dashboard's
	// $__rate_interval becomes 30s, more than four scrapes.
	empty := map[string]bool{}
	for _, e := range exprs {
		empty[e] = true
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && len(empty) > 0 {
		load() // light, steady load
		for e := range empty {
			n, err := promQuery(addr, strings.ReplaceAll(e, "$__rate_interval", "30s"))
			if err == nil && n > 0 {
				delete(empty, e)
			}
		}
		time.Sleep(time.Second)
	}
	for e := range empty {
		t.Errorf("dashboard query returns no series on a healthy herald dev: %s", e)
	}
	// Every consumer group reports its lag, risk's (whose handler
	// publishes in the consumer's transaction) included.
	for _, g := range []string{"herald-inventory", "herald-orders", "herald-risk", "herald-points", "herald-notification", "herald-logistics"} {
		q := fmt.Sprintf(`herald_consumer_lag{group=%q}`, s.group(g))
		if n, err := promQuery(addr, q); err != nil || n == 0 {
			t.Errorf("%s: %d series (%v)", q, n, err)
		}
	}
}

// dashboardExprs reads the PromQL of every panel target of the dashboard.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../../compose/grafana/dashboards/herald.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("parse dashboard: %v", err)
	}
	var out []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			if tg.Expr != "" {
				out = append(out, tg.Expr)
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("dashboard has %d queries; the file changed shape?", len(out))
	}
	return out
}

// promQuery runs an instant query against Prometheus's HTTP API and
// returns how many series it answered.
func promQuery(addr, q string) (int, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query %s: %s", q, r.Error)
	}
	return len(r.Data.Result), nil
}
