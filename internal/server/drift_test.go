package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/registry"
)

// TestDriftedSchemaIDsStopPublishing replaces a running process's registry
// by an empty one in which `herald schema register` assigns other ids (a
// foreign schema took id 1 first): the process reports NOT_SERVING and its
// outbox holds the order instead of framing it with an id that now names
// another schema. Putting the old ids back (here: an empty registry and
// herald schema register, which numbers in a fixed order) makes it publish
// and report SERVING again, with no manual step on the process.
func TestDriftedSchemaIDsStopPublishing(t *testing.T) {
	cluster := newKfake(t)
	reg := newRegistryServer(t, freeAddr(t))
	reg.start()
	cfg := serveConfig(t.TempDir(), cluster.ListenAddrs(), reg.url(), testLogger(t))
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.HealthInterval = 200 * time.Millisecond
	p, err := start(t, cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	s := &stack{proc: p}
	conn := dialProcess(t, p)
	hc := healthpb.NewHealthClient(conn)
	orders := ordersv1.NewOrderServiceClient(conn)
	serving := func(want healthpb.HealthCheckResponse_ServingStatus) func() bool {
		return func() bool { return health(t, hc, "") == want }
	}
	pending := func(want string) func() bool {
		return func() bool {
			return strings.Contains(s.metrics(t), `herald_outbox_pending{service="orders"} `+want+"\n")
		}
	}

	// An empty registry comes back in place of the old one; a schema
	// that is not herald's takes id 1, then the deploy step registers.
	reg.stop()
	reg.replace(t)
	reg.start()
	foreign := `{"schemaType":"PROTOBUF","schema":"syntax = \"proto3\";\npackage other.v1;\nmessage Thing { string id = 1; }\n"}`
	// A client of its own: a pooled connection to the stopped server
	// would make this POST fail with EOF.
	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	resp, err := client.Post(reg.url()+"/subjects/other-value/versions", "application/vnd.schemaregistry.v1+json", strings.NewReader(foreign))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := server.RegisterSchemas(server.RegistryConfig{URL: reg.url()}, "", ""); err != nil {
		t.Fatalf("herald schema register: %v", err)
	}
	eventually(t, 15*time.Second, serving(healthpb.HealthCheckResponse_NOT_SERVING), "NOT_SERVING once the ids drifted")
	code, body, err := s.get("/healthz")
	if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "schema ids") {
		t.Fatalf("/healthz = %d %q (%v); want 503 naming the schema ids", code, body, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := orders.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "drift-1", CustomerId: "alice",
		Items: []*ordersv1.LineItem{{Sku: "APPLE", Quantity: 1, UnitPrice: eur(1, 0)}}}); err != nil {
		t.Fatalf("CreateOrder while drifted: %v", err)
	}
	time.Sleep(time.Second)
	if !pending("1")() {
		t.Fatal("the outbox published an event while the schema ids had drifted")
	}

	// The operator puts the old ids back.
	reg.stop()
	reg.replace(t)
	reg.start()
	if _, err := server.RegisterSchemas(server.RegistryConfig{URL: reg.url()}, "", ""); err != nil {
		t.Fatalf("herald schema register: %v", err)
	}
	// Alone this takes a few seconds (a check every 5 s sees the subject
	// list change); the bound leaves room for a loaded test run, where the
	// registry compiles every schema it is asked to look up.
	eventually(t, 30*time.Second, serving(healthpb.HealthCheckResponse_SERVING), "SERVING with the ids back")
	eventually(t, 30*time.Second, pending("0"), "the held event published once the ids are back")
}

// replace swaps the registry behind the server for an empty one, as a
// registry that keeps its schemas in memory comes back after a restart.
func (r *registryServer) replace(t *testing.T) {
	t.Helper()
	reg, err := registry.New(registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	r.reg = reg
}
