package server_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
)

// TestOutagePostgres runs orders and inventory as two processes on the real
// stack, with the database behind a proxy the test cuts for ten seconds
// while clients keep placing orders. During the outage CreateOrder answers
// UNAVAILABLE (and nothing else), and the clients retry with the same
// request id; the consumers wait with their circuit open instead of
// dead-lettering. Once the database is back, every accepted order reaches a
// final state, no dead letter was written, and every circuit is closed.
func TestOutagePostgres(t *testing.T) {
	real, ok := realStack()
	if !ok || !strings.HasPrefix(real.DatabaseURL, "postgres") {
		t.Skip("needs the real stack (HERALD_KAFKA_BROKERS, HERALD_SCHEMA_REGISTRY_URL, HERALD_DATABASE_URL)")
	}
	proxy, dbURL := sqldbtest.NewProxy(t, real.DatabaseURL)
	dir := t.TempDir()
	ns := namespaceFor(dir)
	if _, err := server.RegisterSchemas(real.Registry, "", ns); err != nil {
		t.Fatalf("register schemas: %v", err)
	}
	start := func(svc string) (*server.Process, *grpc.ClientConn) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		p, err := server.Start(ctx, server.Config{
			DataDir: dir, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
			Kafka: real.Kafka, Registry: real.Registry, DatabaseURL: dbURL, Namespace: ns,
			Services: []string{svc}, Logger: testLogger(t),
		})
		if err != nil {
			t.Fatalf("start %s: %v", svc, err)
		}
		conn, err := grpc.NewClient(p.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			conn.Close()
			_ = p.Close()
		})
		return p, conn
	}
	ordersProc, ordersConn := start("orders")
	invProc, invConn := start("inventory")
	procs := []*stack{{proc: ordersProc, ns: ns}, {proc: invProc, ns: ns}}
	s := &stack{proc: ordersProc, ns: ns, orders: ordersv1.NewOrderServiceClient(ordersConn),
		inventory: inventoryv1.NewInventoryServiceClient(invConn)}
	s.setStock(t, "APPLE", 1_000_000)
	s.setStock(t, "PEAR", 3) // some orders are rejected

	// Clients place orders until stopped, each retrying an order that was
	// not answered (UNAVAILABLE, or no answer in time) with the same
	// request id, as a client of an idempotent API does.
	var (
		mu       sync.Mutex
		accepted []string
		answers  = map[codes.Code]int{}
	)
	stop := make(chan struct{})
	var clients sync.WaitGroup
	for w := range 6 {
		clients.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req := &ordersv1.CreateOrderRequest{RequestId: fmt.Sprintf("outage-%d-%d", w, i), CustomerId: "c" + strconv.Itoa(w),
					Items: []*ordersv1.LineItem{item("APPLE", 1)}}
				if i%5 == 0 {
					req.Items = append(req.Items, item("PEAR", 1))
				}
				backoff := 50 * time.Millisecond
				for {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					resp, err := s.orders.CreateOrder(ctx, req)
					cancel()
					code := status.Code(err)
					mu.Lock()
					answers[code]++
					if err == nil {
						accepted = append(accepted, resp.GetOrder().GetOrderId())
					}
					mu.Unlock()
					if code != codes.Unavailable && code != codes.DeadlineExceeded {
						break
					}
					time.Sleep(backoff)
					backoff = min(backoff*2, time.Second)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}

	time.Sleep(2 * time.Second)
	proxy.Cut()
	cutAt := time.Now()
	sawOpen := map[string]bool{}
	for time.Since(cutAt) < 10*time.Second {
		for _, p := range procs {
			for g, open := range circuits(t, p) {
				if open == 1 {
					sawOpen[g] = true
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	proxy.Restore()
	restoredAt := time.Now()
	// No new orders from now on; the clients still retry the ones the
	// outage left unanswered until they are accepted.
	close(stop)
	clients.Wait()

	mu.Lock()
	t.Logf("answers to CreateOrder: %v; %d orders accepted", answers, len(accepted))
	for code, n := range answers {
		if code != codes.OK && code != codes.Unavailable && code != codes.DeadlineExceeded {
			t.Errorf("%d CreateOrder answers %s; an outage must answer UNAVAILABLE", n, code)
		}
	}
	if answers[codes.Unavailable] == 0 {
		t.Errorf("no UNAVAILABLE answer during the outage")
	}
	ids := accepted
	mu.Unlock()

	// Every accepted order reaches a final state.
	final := map[ordersv1.OrderStatus]int{}
	for _, id := range ids {
		var last ordersv1.OrderStatus
		eventually(t, 60*time.Second, func() bool {
			resp, err := s.orders.GetOrder(callCtx(t), &ordersv1.GetOrderRequest{OrderId: id})
			if err != nil {
				return false
			}
			last = resp.GetOrder().GetStatus()
			return last == ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED || last == ordersv1.OrderStatus_ORDER_STATUS_REJECTED
		}, "order %s to become final (last: %v)", id, func() any { return last })
		final[last]++
	}
	t.Logf("all %d accepted orders final %s after the database came back: %v", len(ids), time.Since(restoredAt).Round(time.Millisecond), final)

	// The consumers paused and resumed: every circuit that opened closed
	// again, and at least one opened.
	if len(sawOpen) == 0 {
		t.Errorf("no consumer circuit opened during the outage")
	}
	for _, p := range procs {
		page := p.metrics(t)
		for g, open := range circuits(t, p) {
			opened, closed := transitions(page, g, "open"), transitions(page, g, "closed")
			t.Logf("group %s: circuit open=%v now, seen open during the outage: %v, transitions open=%d closed=%d", g, open, sawOpen[g], opened, closed)
			if open != 0 || opened != closed || (sawOpen[g] && opened == 0) {
				t.Errorf("group %s: circuit gauge %v, %d openings and %d closings; want closed, each opening closed", g, open, opened, closed)
			}
		}
	}

	// Nothing was dead-lettered.
	for _, p := range procs {
		for g, topics := range p.proc.Subscriptions() {
			for _, topic := range topics {
				if recs := readTopic(t, p.proc.Brokers(), topic+".dlq", nil); len(recs) > 0 {
					t.Errorf("group %s: %d dead letters on %s.dlq, first: %s", g, len(recs), topic, header(recs[0], "herald_dlq_error"))
				}
			}
		}
	}
}

var circuitLine = regexp.MustCompile(`(?m)^herald_consumer_circuit_open\{group="([^"]+)"\} (\S+)$`)

// circuits reads the circuit gauges of a process by group.
func circuits(t *testing.T, s *stack) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, m := range circuitLine.FindAllStringSubmatch(s.metrics(t), -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatalf("circuit gauge %q: %v", m[0], err)
		}
		out[m[1]] = v
	}
	if len(out) == 0 {
		t.Fatalf("no herald_consumer_circuit_open series on %s", s.proc.HTTPAddr())
	}
	return out
}

// transitions reads a circuit transition counter from a metrics page.
func transitions(page, group, state string) int {
	re := regexp.MustCompile(`(?m)^herald_consumer_circuit_transitions_total\{group="` + regexp.QuoteMeta(group) + `",state="` + state + `"\} (\S+)$`)
	m := re.FindStringSubmatch(page)
	if m == nil {
		return -1
	}
	n, _ := strconv.ParseFloat(m[1], 64)
	return int(n)
}
