package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/registry"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
)

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// logBuffer collects a process's log lines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// capture logs to t and to a buffer.
func capture(t *testing.T) (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(io.MultiWriter(b, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelInfo})), b
}

// registryServer serves an embedded registry on addr until the test ends
// or stop is called; the registry's contents survive a restart on the same
// address.
type registryServer struct {
	t    *testing.T
	reg  *registry.Registry
	addr string
	srv  *http.Server
}

func newRegistryServer(t *testing.T, addr string) *registryServer {
	t.Helper()
	reg, err := registry.New(registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	r := &registryServer{t: t, reg: reg, addr: addr}
	t.Cleanup(r.stop)
	return r
}

func (r *registryServer) url() string { return "http://" + r.addr }

func (r *registryServer) start() {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Errorf("registry: listen %s: %v", r.addr, err)
		return
	}
	r.srv = &http.Server{Handler: r.reg.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
}

func (r *registryServer) stop() {
	if r.srv != nil {
		_ = r.srv.Close()
		r.srv = nil
	}
}

// newKfake starts a one-broker kfake cluster that stops with the test.
func newKfake(t *testing.T) *kfake.Cluster {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	return cluster
}

// dialProcess is a plaintext gRPC client of p, closed with the test.
func dialProcess(t *testing.T, p *server.Process) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(p.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// serveConfig is `herald serve` of the orders service on kfake brokers, a
// registry URL and SQLite in dir, registering its schemas itself.
func serveConfig(dir string, brokers []string, registryURL string, log *slog.Logger) server.Config {
	return server.Config{
		GRPCAddr: "127.0.0.1:0", Services: []string{"orders"},
		Kafka: server.KafkaConfig{Brokers: brokers}, Registry: server.RegistryConfig{URL: registryURL},
		DatabaseURL: "sqlite:" + filepath.Join(dir, "db"), AutoRegister: true, Logger: log,
	}
}

// statusOf GETs path from addr and returns the status code (0: no answer).
func statusOf(addr, path string) int {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// topicsOf lists the topics of a broker.
func topicsOf(t *testing.T, brokers []string) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	td, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		t.Fatalf("list topics: %v", err)
	}
	return td.Names()
}

func start(t *testing.T, cfg server.Config) (*server.Process, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := server.Start(ctx, cfg)
	if err == nil {
		t.Cleanup(func() { _ = p.Close() })
	}
	return p, err
}

// TestStartWaitsForTheRegistry starts herald serve before its registry:
// Start waits, says so once, and returns when the registry answers; with a
// short timeout it fails naming the registry, and creates no topic.
func TestStartWaitsForTheRegistry(t *testing.T) {
	cluster := newKfake(t)
	brokers := cluster.ListenAddrs()
	reg := newRegistryServer(t, freeAddr(t))

	t.Run("gives up after the timeout", func(t *testing.T) {
		log, logs := capture(t)
		cfg := serveConfig(t.TempDir(), brokers, reg.url(), log)
		cfg.StartupTimeout = 700 * time.Millisecond
		_, err := start(t, cfg)
		if err == nil {
			t.Fatal("started without a registry")
		}
		for _, want := range []string{"schema registry at " + reg.url(), "did not answer within 700ms", "--startup-timeout", "connection refused"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
		if strings.Contains(err.Error(), "not registered") {
			t.Errorf("error %q blames missing schemas for an unreachable registry", err)
		}
		if n := strings.Count(logs.String(), "waiting for schema registry"); n != 1 {
			t.Errorf("%d lines say they wait for the registry, want 1", n)
		}
		if topics := topicsOf(t, brokers); len(topics) != 0 {
			t.Errorf("a failed start left topics behind: %v", topics)
		}
	})

	t.Run("waits until it answers", func(t *testing.T) {
		log, logs := capture(t)
		cfg := serveConfig(t.TempDir(), brokers, reg.url(), log)
		cfg.StartupTimeout = 30 * time.Second
		cfg.HTTPAddr = freeAddr(t)
		const delay = 1500 * time.Millisecond
		// While Start waits, liveness is ok and readiness says "starting".
		waiting := make(chan [2]int, 1)
		timer := time.AfterFunc(delay, func() {
			waiting <- [2]int{statusOf(cfg.HTTPAddr, "/livez"), statusOf(cfg.HTTPAddr, "/healthz")}
			reg.start()
		})
		defer timer.Stop()
		begin := time.Now()
		p, err := start(t, cfg)
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		if took := time.Since(begin); took < delay {
			t.Fatalf("Start returned after %s, before the registry started (%s)", took, delay)
		}
		if got := <-waiting; got != [2]int{http.StatusOK, http.StatusServiceUnavailable} {
			t.Errorf("while waiting: /livez %d, /healthz %d; want 200 and 503", got[0], got[1])
		}
		if p.RegistryURL() != reg.url() {
			t.Fatalf("registry %s, want %s", p.RegistryURL(), reg.url())
		}
		out := logs.String()
		if n := strings.Count(out, "waiting for schema registry at "+reg.url()); n != 1 {
			t.Errorf("%d lines say they wait for the registry, want 1:\n%s", n, out)
		}
		if !strings.Contains(out, "schema registry answered") {
			t.Errorf("no line says the registry answered:\n%s", out)
		}
	})
}

// TestStartWaitsForKafka starts herald serve before its broker.
func TestStartWaitsForKafka(t *testing.T) {
	reg, err := registry.New(registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	regSrv := httptest.NewServer(reg.Handler())
	t.Cleanup(regSrv.Close)
	addr := freeAddr(t)
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)

	t.Run("gives up after the timeout", func(t *testing.T) {
		cfg := serveConfig(t.TempDir(), []string{addr}, regSrv.URL, testLogger(t))
		cfg.StartupTimeout = 700 * time.Millisecond
		_, err := start(t, cfg)
		if err == nil || !strings.Contains(err.Error(), "kafka at "+addr+" did not answer within 700ms") {
			t.Fatalf("start without Kafka: %v; want an error naming kafka at %s", err, addr)
		}
	})

	t.Run("waits until it answers", func(t *testing.T) {
		log, logs := capture(t)
		cfg := serveConfig(t.TempDir(), []string{addr}, regSrv.URL, log)
		cfg.StartupTimeout = 30 * time.Second
		const delay = 1500 * time.Millisecond
		started := make(chan *kfake.Cluster, 1)
		timer := time.AfterFunc(delay, func() {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port))
			if err != nil {
				t.Errorf("kfake on %s: %v", addr, err)
				close(started)
				return
			}
			started <- c
		})
		defer timer.Stop()
		t.Cleanup(func() {
			if c, ok := <-started; ok {
				c.Close()
			}
		})
		begin := time.Now()
		if _, err := start(t, cfg); err != nil {
			t.Fatalf("start: %v", err)
		}
		if took := time.Since(begin); took < delay {
			t.Fatalf("Start returned after %s, before the broker started (%s)", took, delay)
		}
		if n := strings.Count(logs.String(), "waiting for kafka at "+addr); n != 1 {
			t.Errorf("%d lines say they wait for kafka, want 1:\n%s", n, logs)
		}
	})
}

// TestStartRefusesAWrongRegistryPath points herald at an HTTP server that
// is no Confluent-API registry (Apicurio without /apis/ccompat/v7 answers
// 404): a configuration error at once, and no topic created.
func TestStartRefusesAWrongRegistryPath(t *testing.T) {
	cluster := newKfake(t)
	notRegistry := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "404 page not found", http.StatusNotFound)
	}))
	t.Cleanup(notRegistry.Close)

	cfg := serveConfig(t.TempDir(), cluster.ListenAddrs(), notRegistry.URL, testLogger(t))
	cfg.StartupTimeout = 30 * time.Second
	begin := time.Now()
	_, err := start(t, cfg)
	var ce *server.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("start = %v; want a *server.ConfigError", err)
	}
	for _, want := range []string{"--schema-registry-url", "does not answer like a Confluent-API schema registry", "/apis/ccompat/v7", "404"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("a configuration error took %s: it waited", took)
	}
	if topics := topicsOf(t, cluster.ListenAddrs()); len(topics) != 0 {
		t.Errorf("a failed start left topics behind: %v", topics)
	}
}

// health asks the process's gRPC health service about service ("" is the
// process).
func health(t *testing.T, hc healthpb.HealthClient, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("health check %q: %v", service, err)
	}
	return resp.GetStatus()
}

// TestReadinessFollowsTheRegistry stops the registry under a running
// process: gRPC health and /healthz say not ready within seconds, /livez
// stays ok, and both recover by themselves when the registry returns.
func TestReadinessFollowsTheRegistry(t *testing.T) {
	cluster := newKfake(t)
	reg := newRegistryServer(t, freeAddr(t))
	reg.start()
	log, logs := capture(t)
	cfg := serveConfig(t.TempDir(), cluster.ListenAddrs(), reg.url(), log)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.HealthInterval = 200 * time.Millisecond
	p, err := start(t, cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	s := &stack{proc: p}
	conn := dialProcess(t, p)
	hc := healthpb.NewHealthClient(conn)
	const svc = "herald.orders.v1.OrderService"
	get := func(path string) (int, string) {
		code, body, err := s.get(path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return code, body
	}
	ready := func(want bool) func() bool {
		st := healthpb.HealthCheckResponse_NOT_SERVING
		code := http.StatusServiceUnavailable
		if want {
			st, code = healthpb.HealthCheckResponse_SERVING, http.StatusOK
		}
		return func() bool {
			c, _ := get("/healthz")
			return health(t, hc, "") == st && health(t, hc, svc) == st && c == code
		}
	}

	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz = %d %q at start, want 200 \"ok\\n\"", code, body)
	}
	if !ready(true)() {
		t.Fatal("not ready at start")
	}

	reg.stop()
	eventually(t, 5*time.Second, ready(false), "NOT_SERVING and /healthz 503 with the registry stopped")
	code, body := get("/healthz")
	var report struct {
		Status  string `json:"status"`
		Failing []struct {
			Dependency, Addr, Error string
		} `json:"failing"`
	}
	if err := json.Unmarshal([]byte(body), &report); err != nil {
		t.Fatalf("/healthz %d body %q: %v", code, body, err)
	}
	if len(report.Failing) != 1 || report.Failing[0].Dependency != "schema registry" || report.Failing[0].Addr != reg.url() ||
		!strings.Contains(report.Failing[0].Error, "connection refused") {
		t.Fatalf("/healthz body %s; want the schema registry failing with connection refused", body)
	}
	if code, _ := get("/livez"); code != http.StatusOK {
		t.Fatalf("/livez = %d during the outage, want 200", code)
	}
	if m := s.metrics(t); !strings.Contains(m, `herald_dependency_up{dependency="schema registry"} 0`) ||
		!strings.Contains(m, `herald_dependency_up{dependency="kafka"} 1`) {
		t.Fatalf("herald_dependency_up does not show the registry down and kafka up:\n%s", grepLines(m, "herald_dependency_up"))
	}

	reg.start()
	eventually(t, 5*time.Second, ready(true), "SERVING and /healthz 200 with the registry back")
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz = %d %q after the outage, want 200 \"ok\\n\"", code, body)
	}
	if !strings.Contains(s.metrics(t), `herald_dependency_up{dependency="schema registry"} 1`) {
		t.Fatal("herald_dependency_up does not show the registry back")
	}
	out := logs.String()
	if n := strings.Count(out, "dependency down: schema registry"); n != 1 {
		t.Errorf("%d 'dependency down' lines for one outage, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "dependency up: schema registry"); n != 1 {
		t.Errorf("%d 'dependency up' lines for one outage, want 1:\n%s", n, out)
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for l := range strings.Lines(s) {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// TestReadinessFollowsPostgres cuts the way to a real PostgreSQL under a
// running process: not ready within seconds, ready again by itself.
func TestReadinessFollowsPostgres(t *testing.T) {
	real, ok := realStack()
	if !ok || !strings.HasPrefix(real.DatabaseURL, "postgres") {
		t.Skip("HERALD_DATABASE_URL (PostgreSQL) is not set")
	}
	proxy, dbURL := sqldbtest.NewProxy(t, real.DatabaseURL)
	cluster := newKfake(t)
	reg, err := registry.New(registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	regSrv := httptest.NewServer(reg.Handler())
	t.Cleanup(regSrv.Close)

	dir := t.TempDir()
	cfg := serveConfig(dir, cluster.ListenAddrs(), regSrv.URL, testLogger(t))
	cfg.DatabaseURL, cfg.Namespace = dbURL, namespaceFor(dir)
	cfg.HTTPAddr, cfg.HealthInterval = "127.0.0.1:0", 200*time.Millisecond
	p, err := start(t, cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	s := &stack{proc: p}
	conn := dialProcess(t, p)
	hc := healthpb.NewHealthClient(conn)
	healthz := func() (int, string) {
		code, body, err := s.get("/healthz")
		if err != nil {
			t.Fatalf("GET /healthz: %v", err)
		}
		return code, body
	}

	proxy.Cut()
	eventually(t, 5*time.Second, func() bool {
		code, _ := healthz()
		return code == http.StatusServiceUnavailable && health(t, hc, "") == healthpb.HealthCheckResponse_NOT_SERVING &&
			health(t, hc, "herald.orders.v1.OrderService") == healthpb.HealthCheckResponse_NOT_SERVING
	}, "NOT_SERVING and /healthz 503 with PostgreSQL cut off")
	if _, body := healthz(); !strings.Contains(body, `"dependency":"orders database"`) || strings.Contains(body, "herald:herald@") {
		t.Fatalf("/healthz body %s; want the orders database named, without its password", body)
	}
	if code, _, _ := s.get("/livez"); code != http.StatusOK {
		t.Fatalf("/livez = %d during the outage, want 200", code)
	}

	proxy.Restore()
	eventually(t, 10*time.Second, func() bool {
		code, _ := healthz()
		return code == http.StatusOK && health(t, hc, "") == healthpb.HealthCheckResponse_SERVING
	}, "SERVING and /healthz 200 with PostgreSQL back")
}

// TestStartWithoutSchemasLeavesNoTopics starts herald serve against an
// empty registry without --auto-register-schemas: the start stops with the
// advice to run herald schema register, names what is missing and for which
// events, and has created no topic.
func TestStartWithoutSchemasLeavesNoTopics(t *testing.T) {
	cluster := newKfake(t)
	reg := newRegistryServer(t, freeAddr(t))
	reg.start()

	cfg := serveConfig(t.TempDir(), cluster.ListenAddrs(), reg.url(), testLogger(t))
	cfg.AutoRegister = false
	_, err := start(t, cfg)
	if err == nil {
		t.Fatal("start succeeded with no schema registered")
	}
	if !strings.Contains(err.Error(), "herald schema register") {
		t.Errorf("error %q does not say to run herald schema register", err)
	}
	if !strings.Contains(err.Error(), "not found") || !strings.Contains(err.Error(), "OrderCreated") {
		t.Errorf("error %q does not name what is missing and for which events", err)
	}
	if topics := topicsOf(t, cluster.ListenAddrs()); len(topics) != 0 {
		t.Errorf("a start stopped by missing schemas left topics behind: %v", topics)
	}
}

// TestReadinessFollowsKafka stops the broker under a running process:
// gRPC health says NOT_SERVING within seconds, naming kafka in /healthz,
// and SERVING again once a broker answers on the same address.
func TestReadinessFollowsKafka(t *testing.T) {
	reg := newRegistryServer(t, freeAddr(t))
	reg.start()
	addr := freeAddr(t)
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	broker := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port))
		if err != nil {
			t.Fatalf("kfake on %s: %v", addr, err)
		}
		return c
	}
	cluster := broker()
	cfg := serveConfig(t.TempDir(), []string{addr}, reg.url(), testLogger(t))
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.HealthInterval = 200 * time.Millisecond
	p, err := start(t, cfg)
	if err != nil {
		cluster.Close()
		t.Fatalf("start: %v", err)
	}
	s := &stack{proc: p}
	hc := healthpb.NewHealthClient(dialProcess(t, p))
	serving := func(want healthpb.HealthCheckResponse_ServingStatus) func() bool {
		return func() bool { return health(t, hc, "") == want }
	}

	cluster.Close()
	eventually(t, 10*time.Second, serving(healthpb.HealthCheckResponse_NOT_SERVING), "NOT_SERVING with the broker gone")
	if code, body, err := s.get("/healthz"); err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, `"dependency":"kafka"`) {
		t.Fatalf("/healthz = %d %q (%v); want 503 naming kafka", code, body, err)
	}
	cluster = broker()
	t.Cleanup(cluster.Close)
	eventually(t, 15*time.Second, serving(healthpb.HealthCheckResponse_SERVING), "SERVING with a broker back")
}
