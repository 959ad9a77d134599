package loadgen_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/internal/loadgen"
	"github.com/herald-events/herald/internal/server"
)

// startDev starts a herald dev process in the test, on free ports.
func startDev(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := server.Start(ctx, server.Config{
		DataDir: t.TempDir(), Embedded: true,
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("start herald dev: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p.GRPCAddr()
}

func runCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestAgainstDev runs the generator against one in-process herald dev.
func TestAgainstDev(t *testing.T) {
	if testing.Short() {
		t.Skip("starts herald dev")
	}
	addr := startDev(t)

	t.Run("orders reach final states", func(t *testing.T) {
		var snaps []loadgen.Snapshot
		var mu sync.Mutex
		s, err := loadgen.Run(runCtx(t), loadgen.Config{
			Target: addr, Count: 200, Concurrency: 8, Seed: 7, FollowTimeout: 30 * time.Second,
			ProgressEvery: 50 * time.Millisecond,
		}, func(s loadgen.Snapshot) {
			mu.Lock()
			defer mu.Unlock()
			snaps = append(snaps, s)
		})
		if err != nil {
			t.Fatal(err)
		}
		if s.Sent != 200 || s.Accepted != 200 || s.NotAccepted != 0 {
			t.Fatalf("sent %d accepted %d not accepted %d (errors %v), want 200/200/0", s.Sent, s.Accepted, s.NotAccepted, s.Errors)
		}
		if s.Completed != 200 || s.NotCompleted != 0 {
			t.Fatalf("completed %d, not completed %d %v; want all 200", s.Completed, s.NotCompleted, s.NotCompletedIDs)
		}
		if len(s.Orders) != 200 || len(s.AcceptedIDs()) != 200 {
			t.Fatalf("%d orders, %d accepted ids; want 200", len(s.Orders), len(s.AcceptedIDs()))
		}
		want := map[string]int{}
		for _, o := range s.Orders {
			st := ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED
			if o.SKU == "OUTOFSTOCK" {
				st = ordersv1.OrderStatus_ORDER_STATUS_REJECTED
			}
			if o.Status != st {
				t.Errorf("order %s of %s is %s, want %s", o.OrderID, o.SKU, o.Status, st)
			}
			want[st.String()[len("ORDER_STATUS_"):]]++
			if o.Final <= 0 || o.Accept <= 0 {
				t.Errorf("order %s: accept %s, final %s; want both positive", o.OrderID, o.Accept, o.Final)
			}
		}
		if want["REJECTED"] == 0 || want["CONFIRMED"] == 0 {
			t.Fatalf("statuses %v: want both confirmed and rejected orders", want)
		}
		if s.ByStatus["CONFIRMED"] != want["CONFIRMED"] || s.ByStatus["REJECTED"] != want["REJECTED"] {
			t.Fatalf("ByStatus %v, want %v", s.ByStatus, want)
		}
		if s.Accept.Count != 200 || s.Final.Count != 200 || s.Accept.P50 <= 0 || s.Final.P99 < s.Final.P50 || s.Final.Max < s.Final.P99 {
			t.Fatalf("latencies accept %+v final %+v", s.Accept, s.Final)
		}
		if s.Saga.Count != 200 || s.Saga.Max > s.Final.Max+time.Second {
			t.Fatalf("saga latency %+v", s.Saga)
		}
		if s.AcceptedPerSec <= 0 || s.CompletedPerSec <= 0 || s.Polls == 0 {
			t.Fatalf("rates %g/%g, polls %d", s.AcceptedPerSec, s.CompletedPerSec, s.Polls)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(snaps) == 0 {
			t.Fatal("no progress reported")
		}
	})

	t.Run("count is exact", func(t *testing.T) {
		s, err := loadgen.Run(runCtx(t), loadgen.Config{Target: addr, Count: 37, Concurrency: 5}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.Sent != 37 || s.Accepted != 37 || s.Completed != 37 {
			t.Fatalf("sent %d accepted %d completed %d, want 37", s.Sent, s.Accepted, s.Completed)
		}
	})

	t.Run("rate is obeyed", func(t *testing.T) {
		// Health checks, so that the server keeps up on a busy machine:
		// 300 are due in 1.5 s (the first at 0, none at 1.5 s).
		s, err := loadgen.Run(runCtx(t), loadgen.Config{Target: addr, Method: loadgen.MethodHealth, Rate: 200, Duration: 1500 * time.Millisecond, Concurrency: 4}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.Sent < 240 || s.Sent > 300 {
			t.Fatalf("sent %d in 1.5s at 200/s, want about 300 and at most 300", s.Sent)
		}
		s, err = loadgen.Run(runCtx(t), loadgen.Config{Target: addr, Rate: 30, Duration: time.Second, Concurrency: 8}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.Sent < 20 || s.Sent > 30 {
			t.Fatalf("sent %d orders in 1s at 30/s, want about 30 and at most 30", s.Sent)
		}
		if s.NotCompleted != 0 || s.Completed != s.Accepted {
			t.Fatalf("completed %d of %d", s.Completed, s.Accepted)
		}
	})

	t.Run("count and rate together", func(t *testing.T) {
		began := time.Now()
		s, err := loadgen.Run(runCtx(t), loadgen.Config{Target: addr, Rate: 50, Count: 25, Concurrency: 4}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.Sent != 25 {
			t.Fatalf("sent %d, want 25", s.Sent)
		}
		// 25 at 50/s: the last is due at 0.48s.
		if took := time.Since(began); took < 450*time.Millisecond {
			t.Fatalf("25 orders at 50/s took %s, want at least 0.48s", took)
		}
	})

	t.Run("follow with GetOrder", func(t *testing.T) {
		s, err := loadgen.Run(runCtx(t), loadgen.Config{Target: addr, Count: 40, Concurrency: 4, Follow: loadgen.FollowGet}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.Completed != 40 || s.NotCompleted != 0 {
			t.Fatalf("completed %d, not completed %d", s.Completed, s.NotCompleted)
		}
	})

	t.Run("health method", func(t *testing.T) {
		s, err := loadgen.Run(runCtx(t), loadgen.Config{Target: addr, Method: loadgen.MethodHealth, Count: 500, Concurrency: 8}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.Sent != 500 || s.Accepted != 500 || s.Accept.Count != 500 || s.Completed != 0 || len(s.Orders) != 0 {
			t.Fatalf("health: sent %d accepted %d samples %d completed %d orders %d", s.Sent, s.Accepted, s.Accept.Count, s.Completed, len(s.Orders))
		}
	})
}

// flaky is an OrderService that refuses each request id's first attempts
// with Unavailable, and an order stays pending for a few polls.
type flaky struct {
	ordersv1.UnimplementedOrderServiceServer
	inventoryv1.UnimplementedInventoryServiceServer
	refusals int
	refuse   codes.Code    // the code of the refusals; default Unavailable
	retryIn  time.Duration // a RetryInfo delay sent with the refusals; 0: none
	neverEnd string        // SKU whose orders stay pending

	mu       sync.Mutex
	attempts map[string]int
	orders   map[string]*ordersv1.Order
	polls    map[string]int
	stock    map[string]int64
}

func (f *flaky) CreateOrder(_ context.Context, req *ordersv1.CreateOrderRequest) (*ordersv1.CreateOrderResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts[req.GetRequestId()]++
	if f.attempts[req.GetRequestId()] <= f.refusals {
		if f.refuse != codes.OK {
			st := status.New(f.refuse, "refused")
			if f.retryIn > 0 {
				st, _ = st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(f.retryIn)})
			}
			return nil, st.Err()
		}
		return nil, status.Error(codes.Unavailable, "restarting")
	}
	id := "o-" + req.GetRequestId()
	if _, ok := f.orders[id]; !ok {
		now := timestamppb.Now()
		f.orders[id] = &ordersv1.Order{OrderId: id, RequestId: req.GetRequestId(), CustomerId: req.GetCustomerId(),
			Items: req.GetItems(), Status: ordersv1.OrderStatus_ORDER_STATUS_PENDING, CreateTime: now, UpdateTime: now}
	}
	return &ordersv1.CreateOrderResponse{Order: f.orders[id]}, nil
}

func (f *flaky) GetOrder(_ context.Context, req *ordersv1.GetOrderRequest) (*ordersv1.GetOrderResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.orders[req.GetOrderId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "no such order")
	}
	f.polls[o.GetOrderId()]++
	if f.polls[o.GetOrderId()] >= 2 && o.GetItems()[0].GetSku() != f.neverEnd {
		o.Status, o.UpdateTime = ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED, timestamppb.Now()
	}
	return &ordersv1.GetOrderResponse{Order: o}, nil
}

func (f *flaky) SetStock(_ context.Context, req *inventoryv1.SetStockRequest) (*inventoryv1.SetStockResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stock[req.GetSku()] = req.GetQuantity()
	return &inventoryv1.SetStockResponse{Sku: req.GetSku(), Quantity: req.GetQuantity()}, nil
}

func serveFlaky(t *testing.T, f *flaky, opts ...grpc.ServerOption) string {
	t.Helper()
	f.attempts, f.orders, f.polls, f.stock = map[string]int{}, map[string]*ordersv1.Order{}, map[string]int{}, map[string]int64{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(opts...)
	ordersv1.RegisterOrderServiceServer(gs, f)
	inventoryv1.RegisterInventoryServiceServer(gs, f)
	hs := health.NewServer()
	hs.SetServingStatus(ordersv1.OrderService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	return ln.Addr().String()
}

// TestRetriesAndFallbacks checks, against a fake server, that Unavailable
// is retried with the same request id, that a server without ListOrders is
// followed with GetOrder, that stock is set up, and that orders that never
// end are reported.
func TestRetriesAndFallbacks(t *testing.T) {
	f := &flaky{refusals: 2, neverEnd: "STUCK"}
	addr := serveFlaky(t, f)
	skus := []loadgen.SKU{{Name: "A", Weight: 5}, {Name: "STUCK", Weight: 1}, {Name: "GONE", Weight: 1, OutOfStock: true}}
	s, err := loadgen.Run(runCtx(t), loadgen.Config{
		Target: addr, Count: 30, Concurrency: 4, SKUs: skus, Seed: 3, RunID: "r1",
		FollowTimeout: 300 * time.Millisecond, PollInterval: 5 * time.Millisecond,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Accepted != 30 || s.Retries != 60 || s.Errors["Unavailable"] != 60 {
		t.Fatalf("accepted %d retries %d errors %v; want 30, 60, 60 Unavailable", s.Accepted, s.Retries, s.Errors)
	}
	f.mu.Lock()
	for id, n := range f.attempts {
		if n != 3 {
			t.Errorf("request %s sent %d times, want 3", id, n)
		}
	}
	if len(f.attempts) != 30 || len(f.orders) != 30 {
		t.Errorf("%d request ids, %d orders; want 30 each", len(f.attempts), len(f.orders))
	}
	if f.stock["A"] != loadgen.PlentyStock || f.stock["GONE"] != 0 {
		t.Errorf("stock %v", f.stock)
	}
	f.mu.Unlock()
	stuck := 0
	for _, o := range s.Orders {
		if o.SKU == "STUCK" {
			stuck++
			if o.Status != ordersv1.OrderStatus_ORDER_STATUS_PENDING {
				t.Errorf("stuck order %s is %s", o.OrderID, o.Status)
			}
		}
	}
	if stuck == 0 || s.NotCompleted != stuck || s.Completed != 30-stuck || len(s.NotCompletedIDs) != min(stuck, 10) {
		t.Fatalf("stuck %d: completed %d, not completed %d %v", stuck, s.Completed, s.NotCompleted, s.NotCompletedIDs)
	}
	if s.PollErrors["Unimplemented"] == 0 {
		t.Fatalf("poll errors %v: want ListOrders' Unimplemented counted", s.PollErrors)
	}
}

// TestNotAccepted checks that an order refused until RetryFor runs out is
// reported with its request id.
func TestNotAccepted(t *testing.T) {
	f := &flaky{refusals: 1000}
	addr := serveFlaky(t, f)
	s, err := loadgen.Run(runCtx(t), loadgen.Config{
		Target: addr, Count: 3, Concurrency: 3, RunID: "r2", RetryFor: 100 * time.Millisecond,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Accepted != 0 || s.NotAccepted != 3 || len(s.NotAcceptedIDs) != 3 || s.Retries == 0 {
		t.Fatalf("accepted %d, not accepted %d %v, retries %d", s.Accepted, s.NotAccepted, s.NotAcceptedIDs, s.Retries)
	}
}

// TestShedApart: calls the server sheds (RESOURCE_EXHAUSTED) are counted
// as shed, not as errors, and retried with the same request id.
func TestShedApart(t *testing.T) {
	f := &flaky{refusals: 1, refuse: codes.ResourceExhausted}
	addr := serveFlaky(t, f)
	s, err := loadgen.Run(runCtx(t), loadgen.Config{
		Target: addr, Count: 20, Concurrency: 4, RunID: "r3",
		FollowTimeout: 300 * time.Millisecond, PollInterval: 5 * time.Millisecond,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Accepted != 20 || s.Shed != 20 || s.Retries != 20 || len(s.Errors) != 0 {
		t.Fatalf("accepted %d shed %d retries %d errors %v; want 20, 20, 20, none", s.Accepted, s.Shed, s.Retries, s.Errors)
	}
	b, err := json.Marshal(s)
	if err != nil || !strings.Contains(string(b), `"shed":20`) {
		t.Fatalf("JSON %s, %v: want shed", b, err)
	}
}

// TestRetryInfo: a refusal that names when to come back (google.rpc.RetryInfo,
// as the orders door sends when the saga is behind) is retried after that
// delay, not after the doubling backoff: three refusals 1 ms apart fit in
// a RetryFor of 50 ms that the backoff (20, 40, 80 ms) would overrun.
func TestRetryInfo(t *testing.T) {
	for _, tc := range []struct {
		retryIn  time.Duration
		accepted int
	}{{time.Millisecond, 5}, {0, 0}} {
		f := &flaky{refusals: 3, refuse: codes.ResourceExhausted, retryIn: tc.retryIn}
		addr := serveFlaky(t, f)
		s, err := loadgen.Run(runCtx(t), loadgen.Config{
			Target: addr, Count: 5, Concurrency: 5, RunID: "r5", RetryFor: 50 * time.Millisecond,
			FollowTimeout: 300 * time.Millisecond, PollInterval: 5 * time.Millisecond,
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.Accepted != tc.accepted {
			t.Errorf("RetryInfo %s: accepted %d of 5 (shed %d, retries %d); want %d", tc.retryIn, s.Accepted, s.Shed, s.Retries, tc.accepted)
		}
	}
}

// TestBearerToken: with a Token every call carries "authorization: Bearer
// <token>" over a plaintext connection (the stock set-up, the health check,
// the orders and the follower's polls); without one, a server that wants
// it refuses the run before it starts.
func TestBearerToken(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{} // method -> calls with the right header
	refused := 0
	check := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		mu.Lock()
		defer mu.Unlock()
		if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer s3cret.jwt" {
			refused++
			return nil, status.Errorf(codes.Unauthenticated, "authorization %q", got)
		}
		seen[info.FullMethod]++
		return handler(ctx, req)
	}
	addr := serveFlaky(t, &flaky{}, grpc.UnaryInterceptor(check))

	s, err := loadgen.Run(runCtx(t), loadgen.Config{
		Target: addr, Count: 10, Concurrency: 2, RunID: "tok", Token: "s3cret.jwt",
		FollowTimeout: 2 * time.Second, PollInterval: 5 * time.Millisecond,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Accepted != 10 || s.Completed != 10 || len(s.Errors) != 0 {
		t.Fatalf("accepted %d completed %d errors %v; want 10, 10, none", s.Accepted, s.Completed, s.Errors)
	}
	mu.Lock()
	for _, m := range []string{"/grpc.health.v1.Health/Check", "/herald.inventory.v1.InventoryService/SetStock",
		"/herald.orders.v1.OrderService/CreateOrder", "/herald.orders.v1.OrderService/GetOrder"} {
		if seen[m] == 0 {
			t.Errorf("no call of %s with the token (calls: %v)", m, seen)
		}
	}
	if refused != 0 {
		t.Errorf("%d calls went without the token", refused)
	}
	mu.Unlock()

	if _, err := loadgen.Run(runCtx(t), loadgen.Config{Target: addr, Count: 1, RunID: "notok"}, nil); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("run without a token: %v, want Unauthenticated", err)
	}
}
