package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
)

// maxListedIDs bounds the ids listed for orders not accepted or not
// completed.
const maxListedIDs = 10

// preflightTimeout bounds the health check made before the run.
const preflightTimeout = 10 * time.Second

// runner is one run.
type runner struct {
	cfg      Config
	orders   ordersv1.OrderServiceClient
	health   healthpb.HealthClient
	customer string
	// cumulative weights of cfg.SKUs, for picking by weight.
	cumulative []uint64

	sent, inFlight, accepted, notAccepted, errCount, shed, retries atomic.Int64

	mu             sync.Mutex
	errs           map[string]int
	notAcceptedIDs []string

	fol *follower
}

// placed is an order with its position in the run.
type placed struct {
	n     int
	order *Order
}

// worker holds what one worker recorded, merged at the end.
type worker struct {
	accept []time.Duration
	orders []placed
}

// Run places orders (or health checks) as cfg says until Duration or Count
// is reached or ctx is done, follows every accepted order to its final state
// for up to FollowTimeout after the last accept, and returns the summary.
// progress, when not nil, is called every ProgressEvery from one goroutine.
//
// A bad cfg, an unreachable target or a failed stock set-up is an error
// with an empty Summary. When ctx ends the run early, Run returns the
// summary so far with an error wrapping ctx.Err(). Orders not accepted or
// not completed are reported in the Summary, not as an error.
func Run(ctx context.Context, cfg Config, progress func(Snapshot)) (Summary, error) {
	if err := cfg.Validate(); err != nil {
		return Summary{}, fmt.Errorf("loadgen config: %w", err)
	}
	cfg = cfg.withDefaults()
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64() | 1
	}
	if cfg.RunID == "" {
		cfg.RunID = fmt.Sprintf("%012x", rand.Uint64()>>16)
	}
	opts := dialOptions(cfg)
	conn, err := grpc.NewClient(cfg.Target, opts...)
	if err != nil {
		return Summary{}, fmt.Errorf("dial %s: %w", cfg.Target, err)
	}
	defer conn.Close()
	r := &runner{
		cfg: cfg, orders: ordersv1.NewOrderServiceClient(conn), health: healthpb.NewHealthClient(conn),
		errs: map[string]int{},
	}
	if err := r.preflight(ctx); err != nil {
		return Summary{}, err
	}
	if cfg.Method == MethodOrder {
		r.customer = "bench-" + cfg.RunID
		var total uint64
		for _, s := range cfg.SKUs {
			total += uint64(s.Weight)
			r.cumulative = append(r.cumulative, total)
		}
		if !cfg.SkipStockSetup {
			if err := r.setupStock(ctx, opts); err != nil {
				return Summary{}, err
			}
		}
		r.fol = newFollower(cfg, r.orders, r.customer)
	}
	return r.run(ctx, progress)
}

// dialOptions are the connection's credentials: TLS or plaintext, and the
// bearer token when there is one.
func dialOptions(cfg Config) []grpc.DialOption {
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if cfg.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken{token: cfg.Token, secure: cfg.TLS != nil}))
	}
	return opts
}

// bearerToken puts "authorization: Bearer <token>" on every call.
type bearerToken struct {
	token string
	// secure: the connection is TLS, and gRPC must refuse to send the token
	// on any other. A plaintext connection sends it in the clear (loopback,
	// tests), which gRPC allows only when this is false.
	secure bool
}

// GetRequestMetadata implements [credentials.PerRPCCredentials].
func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity implements [credentials.PerRPCCredentials]: true
// only when the connection is TLS.
func (b bearerToken) RequireTransportSecurity() bool { return b.secure }

// preflight checks that the target answers before the clock starts.
func (r *runner) preflight(ctx context.Context) error {
	service := ""
	if r.cfg.Method == MethodOrder {
		service = ordersv1.OrderService_ServiceDesc.ServiceName
	}
	cctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	defer cancel()
	resp, err := r.health.Check(cctx, &healthpb.HealthCheckRequest{Service: service}, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("target %s: health check of %q: %w", r.cfg.Target, service, err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("target %s: %q is %s", r.cfg.Target, service, resp.GetStatus())
	}
	return nil
}

// setupStock sets every SKU's stock through InventoryService.
func (r *runner) setupStock(ctx context.Context, opts []grpc.DialOption) error {
	conn, err := grpc.NewClient(r.cfg.InventoryTarget, opts...)
	if err != nil {
		return fmt.Errorf("dial inventory %s: %w", r.cfg.InventoryTarget, err)
	}
	defer conn.Close()
	inv := inventoryv1.NewInventoryServiceClient(conn)
	for _, s := range r.cfg.SKUs {
		q := PlentyStock
		if s.OutOfStock {
			q = 0
		}
		cctx, cancel := context.WithTimeout(ctx, preflightTimeout)
		_, err := inv.SetStock(cctx, &inventoryv1.SetStockRequest{Sku: s.Name, Quantity: q}, grpc.WaitForReady(true))
		cancel()
		if err != nil {
			return fmt.Errorf("set stock of %s to %d at %s: %w", s.Name, q, r.cfg.InventoryTarget, err)
		}
	}
	return nil
}

func (r *runner) run(ctx context.Context, progress func(Snapshot)) (Summary, error) {
	start := time.Now()
	jobs := make(chan int)
	go r.pace(ctx, start, jobs)

	issuing := make(chan struct{})
	followDone := make(chan struct{})
	if r.fol != nil {
		go func() {
			defer close(followDone)
			r.fol.run(ctx, issuing)
		}()
	} else {
		close(followDone)
	}
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		r.report(start, progress, stopProgress)
	}()

	workers := make([]*worker, r.cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{}
		workers[i] = w
		wg.Go(func() {
			for n := range jobs {
				r.sent.Add(1)
				r.inFlight.Add(1)
				if r.cfg.Method == MethodHealth {
					r.check(ctx, w)
				} else {
					r.place(ctx, w, n)
				}
				r.inFlight.Add(-1)
			}
		})
	}
	wg.Wait()
	issuingEnd := time.Now()
	close(issuing)
	<-followDone
	close(stopProgress)
	<-progressDone

	s := r.summary(start, issuingEnd, workers)
	if err := ctx.Err(); err != nil {
		return s, fmt.Errorf("run interrupted: %w", err)
	}
	return s, nil
}

// pace hands out request numbers: at Rate per second on a fixed schedule
// from start (catching up without pause when behind), or as fast as the
// workers take them; it stops at Count, after Duration or when ctx is done.
func (r *runner) pace(ctx context.Context, start time.Time, jobs chan<- int) {
	defer close(jobs)
	var stop <-chan time.Time
	if r.cfg.Duration > 0 {
		t := time.NewTimer(time.Until(start.Add(r.cfg.Duration)))
		defer t.Stop()
		stop = t.C
	}
	var interval float64
	if r.cfg.Rate > 0 {
		interval = float64(time.Second) / r.cfg.Rate
	}
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	defer wait.Stop()
	for n := 0; r.cfg.Count == 0 || n < r.cfg.Count; n++ {
		if interval > 0 {
			due := start.Add(time.Duration(float64(n) * interval))
			if r.cfg.Duration > 0 && !due.Before(start.Add(r.cfg.Duration)) {
				return
			}
			if d := time.Until(due); d > 0 {
				wait.Reset(d)
				select {
				case <-wait.C:
				case <-stop:
					return
				case <-ctx.Done():
					return
				}
			}
		}
		select {
		case jobs <- n:
		case <-stop:
			return
		case <-ctx.Done():
			return
		}
	}
}

// check makes one health check.
func (r *runner) check(ctx context.Context, w *worker) {
	cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	t0 := time.Now()
	_, err := r.health.Check(cctx, &healthpb.HealthCheckRequest{})
	d := time.Since(t0)
	cancel()
	if err != nil {
		r.notAccepted.Add(1)
		if ctx.Err() == nil {
			r.countErr(status.Code(err))
		}
		return
	}
	r.accepted.Add(1)
	w.accept = append(w.accept, d)
}

// eur150 is the unit price of every line.
func eur150() *moneyv1.Money {
	return &moneyv1.Money{CurrencyCode: "EUR", Units: 1, Nanos: 500_000_000}
}

// pick returns the SKU and quantity of order n, a function of Seed and n
// only, so that a seed replays the same orders whatever the scheduling.
func (r *runner) pick(n int) (string, int32) {
	x := rand.NewPCG(r.cfg.Seed, uint64(n)).Uint64()
	w := (x & 0xffffffff) % r.cumulative[len(r.cumulative)-1]
	i, _ := slices.BinarySearch(r.cumulative, w+1)
	return r.cfg.SKUs[i].Name, int32(1 + (x>>32)%3)
}

// retryable reports whether CreateOrder may be sent again after code; it
// is idempotent per request id, so a retry never makes a second order.
func retryable(code codes.Code) bool {
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted:
		return true
	}
	return false
}

// place sends order n, retrying with the same request id within RetryFor,
// and hands an accepted order to the follower.
func (r *runner) place(ctx context.Context, w *worker, n int) {
	sku, qty := r.pick(n)
	o := &Order{RequestID: fmt.Sprintf("%s-%d", r.cfg.RunID, n), SKU: sku, Quantity: qty}
	w.orders = append(w.orders, placed{n: n, order: o})
	req := &ordersv1.CreateOrderRequest{
		RequestId: o.RequestID, CustomerId: r.customer,
		Items: []*ordersv1.LineItem{{Sku: sku, Quantity: qty, UnitPrice: eur150()}},
	}
	first := time.Now()
	backoff := 20 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
		resp, err := r.orders.CreateOrder(cctx, req)
		cancel()
		if err == nil {
			now := time.Now()
			o.OrderID, o.Status = resp.GetOrder().GetOrderId(), resp.GetOrder().GetStatus()
			o.AcceptedAt, o.Accept = now, now.Sub(first)
			w.accept = append(w.accept, o.Accept)
			r.accepted.Add(1)
			r.fol.add(o, resp.GetOrder())
			return
		}
		if ctx.Err() != nil {
			r.giveUp(o)
			return
		}
		code := status.Code(err)
		r.countErr(code)
		wait := backoff
		if d, ok := retryDelay(err); ok {
			// The server says when to come back (the orders door held to
			// the saga's pace): sooner is refused again, later leaves it
			// idle.
			wait = d
		}
		if !retryable(code) || time.Since(first)+wait > r.cfg.RetryFor {
			r.cfg.Logger.Debug("order not accepted", "request_id", o.RequestID, "err", err)
			r.giveUp(o)
			return
		}
		r.cfg.Logger.Debug("retrying order", "request_id", o.RequestID, "code", code.String(), "backoff", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			r.giveUp(o)
			return
		}
		r.retries.Add(1)
		backoff = min(2*backoff, time.Second)
	}
}

// retryDelay returns the delay of a google.rpc.RetryInfo in err's status.
func retryDelay(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().IsValid() {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

func (r *runner) giveUp(o *Order) {
	r.notAccepted.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.notAcceptedIDs) < maxListedIDs {
		r.notAcceptedIDs = append(r.notAcceptedIDs, o.RequestID)
	}
}

// countErr counts a failed attempt: as shed when the server refused it
// for load (RESOURCE_EXHAUSTED), else as an error by code.
func (r *runner) countErr(code codes.Code) {
	if code == codes.ResourceExhausted {
		r.shed.Add(1)
		return
	}
	r.errCount.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs[code.String()]++
}

// report calls progress every ProgressEvery until stop is closed.
func (r *runner) report(start time.Time, progress func(Snapshot), stop <-chan struct{}) {
	if progress == nil {
		return
	}
	t := time.NewTicker(r.cfg.ProgressEvery)
	defer t.Stop()
	var prevAccepted, prevCompleted int
	prev := start
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			s := Snapshot{
				Elapsed: now.Sub(start), Sent: int(r.sent.Load()), InFlight: int(r.inFlight.Load()),
				Accepted: int(r.accepted.Load()), NotAccepted: int(r.notAccepted.Load()),
				Errors: int(r.errCount.Load()), Shed: int(r.shed.Load()), Retries: int(r.retries.Load()),
			}
			if r.fol != nil {
				s.Completed, s.Pending = r.fol.progress()
			}
			s.AcceptRate = perSec(s.Accepted-prevAccepted, now.Sub(prev))
			s.CompleteRate = perSec(s.Completed-prevCompleted, now.Sub(prev))
			prevAccepted, prevCompleted, prev = s.Accepted, s.Completed, now
			progress(s)
		}
	}
}

func (r *runner) summary(start, issuingEnd time.Time, workers []*worker) Summary {
	s := Summary{
		Method: r.cfg.Method, Target: r.cfg.Target, RunID: r.cfg.RunID, CustomerID: r.customer, Seed: r.cfg.Seed,
		Started: start, Issuing: issuingEnd.Sub(start),
		Sent: int(r.sent.Load()), Accepted: int(r.accepted.Load()), NotAccepted: int(r.notAccepted.Load()),
		Retries: int(r.retries.Load()), Errors: r.errs, Shed: int(r.shed.Load()), NotAcceptedIDs: r.notAcceptedIDs,
	}
	var accept []time.Duration
	var all []placed
	for _, w := range workers {
		accept = append(accept, w.accept...)
		all = append(all, w.orders...)
	}
	s.Accept = Summarize(accept)
	s.AcceptedPerSec = perSec(s.Accepted, s.Issuing)
	if r.fol == nil {
		return s
	}
	slices.SortFunc(all, func(a, b placed) int { return a.n - b.n })
	s.Orders = make([]Order, len(all))
	for i, p := range all {
		s.Orders[i] = *p.order
	}
	f := r.fol
	f.mu.Lock()
	defer f.mu.Unlock()
	s.Completed, s.ByStatus = f.completed, f.byStatus
	s.Final, s.Saga = Summarize(f.final), Summarize(f.saga)
	if !f.lastFinal.IsZero() {
		s.Following = f.lastFinal.Sub(start)
	}
	s.CompletedPerSec = perSec(s.Completed, s.Following)
	s.Polls, s.PollErrors, s.FollowRows = int(f.polls.Load()), f.pollErrs, int(f.listed.Load())
	left := make([]*tracked, 0, len(f.pending))
	for _, t := range f.pending {
		left = append(left, t)
	}
	slices.SortFunc(left, func(a, b *tracked) int { return int(a.idx - b.idx) })
	s.NotCompleted = len(left)
	for _, t := range left[:min(len(left), maxListedIDs)] {
		s.NotCompletedIDs = append(s.NotCompletedIDs, t.order.OrderID)
	}
	return s
}

// statusName is an order status without its enum prefix: CONFIRMED.
func statusName(st ordersv1.OrderStatus) string {
	return strings.TrimPrefix(st.String(), "ORDER_STATUS_")
}

// final reports whether an order in st will not change on its own.
func final(st ordersv1.OrderStatus) bool {
	switch st {
	case ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED, ordersv1.OrderStatus_ORDER_STATUS_REJECTED, ordersv1.OrderStatus_ORDER_STATUS_CANCELLED:
		return true
	}
	return false
}
