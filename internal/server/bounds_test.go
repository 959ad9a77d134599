package server_test

import (
	"context"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/internal/server"
)

// TestStockOverflowRefused is the sequence that once turned a stock level
// into a SQLite REAL, after which GetStock failed and every later order for
// the SKU was dead-lettered: the level that would overflow is refused, the
// cancel returns the stock, and the SKU keeps working.
func TestStockOverflowRefused(t *testing.T) {
	s := startProcess(t, t.TempDir(), nil)
	s.setStock(t, "OVF", 100)
	o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "ovf", Items: []*ordersv1.LineItem{item("OVF", 5)}})
	s.waitStatus(t, o.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)

	_, err := s.inventory.SetStock(callCtx(t), &inventoryv1.SetStockRequest{Sku: "OVF", Quantity: math.MaxInt64})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "hold 5") {
		t.Fatalf("SetStock OVF MaxInt64 with 5 held: %v, want FailedPrecondition naming the 5 held", err)
	}
	if got := s.stock(t, "OVF"); got != 95 {
		t.Fatalf("OVF after the refused SetStock = %d, want 95", got)
	}
	if _, err := s.orders.CancelOrder(callCtx(t), &ordersv1.CancelOrderRequest{OrderId: o.GetOrderId()}); err != nil {
		t.Fatalf("CancelOrder: %v", err)
	}
	eventually(t, 20*time.Second, func() bool { return s.stock(t, "OVF") == 100 }, "OVF back to 100 after the cancel")

	later := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "ovf", Items: []*ordersv1.LineItem{item("OVF", 7)}})
	s.waitStatus(t, later.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)
	if got := s.stock(t, "OVF"); got != 93 {
		t.Fatalf("OVF after a later order of 7 = %d, want 93", got)
	}
}

// rawBytes is a client codec that sends the bytes it is given, so a test
// can put any wire data on a call.
type rawBytes struct{}

func (rawBytes) Name() string { return "proto" }

func (rawBytes) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawBytes) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// TestRequestBounds: what a client sends that does not parse is its fault
// (INVALID_ARGUMENT, not INTERNAL); what comes back in an error is short;
// lengths are counted in characters.
func TestRequestBounds(t *testing.T) {
	s := startProcess(t, t.TempDir(), nil)
	conn, err := grpc.NewClient(s.proc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// CreateOrderRequest: request_id = 1, customer_id = 2.
	field := func(num protowire.Number, b []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
	}
	cases := []struct {
		name string
		body []byte
	}{
		{"truncated", field(2, []byte("a-customer-id"))[:6]},
		{"invalid utf-8", field(2, []byte{'c', 0xc3, 0x28, 0xff})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out []byte
			body := tc.body
			err := conn.Invoke(callCtx(t), "/herald.orders.v1.OrderService/CreateOrder", &body, &out, grpc.ForceCodecV2(rawBytes{}))
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("CreateOrder with %s bytes: %v, want InvalidArgument", tc.name, err)
			}
		})
	}

	t.Run("100 KB order id is not echoed", func(t *testing.T) {
		_, err := s.orders.GetOrder(callCtx(t), &ordersv1.GetOrderRequest{OrderId: strings.Repeat("x", 100_000)})
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument || len(st.Message()) > 1024 {
			t.Fatalf("GetOrder with a 100 KB id: %s, %d bytes of message", st.Code(), len(st.Message()))
		}
	})

	t.Run("limits count characters", func(t *testing.T) {
		wide := strings.Repeat("é", 100) // 200 bytes, 100 characters
		o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: wide, Items: []*ordersv1.LineItem{item("WIDE", 1)}})
		if o.GetCustomerId() != wide {
			t.Fatalf("customer id %q", o.GetCustomerId())
		}
		_, err := s.orders.CreateOrder(callCtx(t), &ordersv1.CreateOrderRequest{
			CustomerId: strings.Repeat("é", 129), Items: []*ordersv1.LineItem{item("WIDE", 1)}})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("129 characters: %v, want InvalidArgument", err)
		}
	})
}

// TestLoadShedding: with room for one call at a time, a call that arrives
// while another is in flight is refused with RESOURCE_EXHAUSTED, at once
// and counted; calls that arrive together are never failed otherwise;
// health checks are never refused.
func TestLoadShedding(t *testing.T) {
	s := startProcessWith(t, t.TempDir(), func(c *server.Config) { c.GRPCMaxInFlight = 1; c.GRPCReflection = true })
	conn, err := grpc.NewClient(s.proc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)

	// A reflection stream holds the one place while it is open.
	sctx, closeStream := context.WithCancel(context.Background())
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("reflection: %v", err)
	}
	if _, err := s.orders.ListOrders(callCtx(t), &ordersv1.ListOrdersRequest{PageSize: 5}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("ListOrders while the one place is taken: %v, want ResourceExhausted", err)
	}
	if r, err := health.Check(callCtx(t), &healthpb.HealthCheckRequest{}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("a health check while the place is taken: %v %v, want SERVING", r, err)
	}
	closeStream()
	eventually(t, 10*time.Second, func() bool {
		_, err := s.orders.ListOrders(callCtx(t), &ordersv1.ListOrdersRequest{PageSize: 5})
		return err == nil
	}, "ListOrders answered once the stream closed")

	var (
		wg                    sync.WaitGroup
		ok, shed, other, hbad atomic.Int64
	)
	for range 32 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 10 {
				_, err := s.orders.ListOrders(callCtx(t), &ordersv1.ListOrdersRequest{PageSize: 5})
				switch status.Code(err) {
				case codes.OK:
					ok.Add(1)
				case codes.ResourceExhausted:
					shed.Add(1)
				default:
					other.Add(1)
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range 10 {
				if r, err := health.Check(callCtx(t), &healthpb.HealthCheckRequest{}); err != nil ||
					r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					hbad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	// How many of these are shed depends on how the calls overlap.
	if ok.Load() == 0 || other.Load() != 0 || hbad.Load() != 0 {
		t.Fatalf("ok %d, shed %d, other errors %d, failed health checks %d; want some ok, the rest shed, nothing else",
			ok.Load(), shed.Load(), other.Load(), hbad.Load())
	}
	if m := s.metrics(t); !strings.Contains(m, `herald_grpc_shed_total{method="/herald.orders.v1.OrderService/ListOrders"}`) {
		t.Fatal("herald_grpc_shed_total does not count the shed calls")
	}
}
