package loadgen

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
)

// Bounds of the follower.
const (
	// maxPageSize is ListOrders' largest page.
	maxPageSize = 500
	// listSlack is added to the pages listed, for orders that the server
	// stored in another order than they were accepted.
	listSlack = 16
	// maxFallback bounds the GetOrder calls of one poll round.
	maxFallback = 64
	// maxGetParallel bounds the GetOrder calls in flight.
	maxGetParallel = 16
	// followRowsPerAccept and followRowsFloor set the follower's budget:
	// it reads at most this many orders per second, per order accepted
	// per second (plus the floor), and waits longer between polls when
	// the pending window is wide. Without it, a backlog of a few thousand
	// pending orders listed every 10 ms cost the server more than the
	// orders themselves. The accept→final latencies then have the poll
	// interval as resolution; the saga latencies come from the server's
	// timestamps and do not.
	followRowsPerAccept = 4
	followRowsFloor     = 5000
)

// tracked is an accepted order not yet final.
type tracked struct {
	order *Order
	// idx is the order's position among the accepts.
	idx int64
	// seenRound and lastGet are touched only by the poll loop.
	seenRound int64
	lastGet   time.Time
}

// follower polls the accepted orders until they are final.
type follower struct {
	cfg      Config
	orders   ordersv1.OrderServiceClient
	customer string
	notify   chan struct{}
	polls    atomic.Int64
	listed   atomic.Int64
	round    int64
	// firstAccept is when following began, for the accept rate.
	firstAccept time.Time

	mu        sync.Mutex
	pending   map[string]*tracked
	accepts   int64
	completed int
	byStatus  map[string]int
	final     []time.Duration
	saga      []time.Duration
	lastFinal time.Time
	pollErrs  map[string]int
}

func newFollower(cfg Config, orders ordersv1.OrderServiceClient, customer string) *follower {
	return &follower{
		cfg: cfg, orders: orders, customer: customer, notify: make(chan struct{}, 1),
		pending: map[string]*tracked{}, byStatus: map[string]int{}, pollErrs: map[string]int{},
	}
}

// add starts following an accepted order. An order already final (a retry
// answered with an order that completed meanwhile) is recorded at once,
// without a Final latency.
func (f *follower) add(o *Order, got *ordersv1.Order) {
	f.mu.Lock()
	if f.accepts == 0 {
		f.firstAccept = time.Now()
	}
	f.accepts++
	if final(got.GetStatus()) {
		f.record(o, got, time.Time{})
		f.mu.Unlock()
		return
	}
	f.pending[o.OrderID] = &tracked{order: o, idx: f.accepts}
	f.mu.Unlock()
	select {
	case f.notify <- struct{}{}:
	default:
	}
}

// record notes that o is final as got says, seen at seenAt (zero: unknown).
// f.mu is held.
func (f *follower) record(o *Order, got *ordersv1.Order, seenAt time.Time) {
	o.Status = got.GetStatus()
	f.completed++
	f.byStatus[statusName(o.Status)]++
	if !seenAt.IsZero() {
		o.Final = seenAt.Sub(o.AcceptedAt)
		f.final = append(f.final, o.Final)
		if seenAt.After(f.lastFinal) {
			f.lastFinal = seenAt
		}
	}
	if c, u := got.GetCreateTime(), got.GetUpdateTime(); c != nil && u != nil {
		if d := u.AsTime().Sub(c.AsTime()); d >= 0 {
			f.saga = append(f.saga, d)
		}
	}
}

// complete records a polled order if it is final and still pending.
func (f *follower) complete(got *ordersv1.Order, seenAt time.Time) {
	if !final(got.GetStatus()) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.pending[got.GetOrderId()]
	if !ok {
		return
	}
	delete(f.pending, got.GetOrderId())
	f.record(t.order, got, seenAt)
}

// progress returns the completed and pending counts.
func (f *follower) progress() (completed, pending int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.completed, len(f.pending)
}

// snapshot copies the pending orders and returns the position of the
// oldest and the number of accepts.
func (f *follower) snapshot() (map[string]*tracked, int64, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	snap := make(map[string]*tracked, len(f.pending))
	oldest := f.accepts + 1
	for id, t := range f.pending {
		snap[id] = t
		oldest = min(oldest, t.idx)
	}
	return snap, oldest, f.accepts
}

// run polls until issuing is closed and nothing is pending, the follow
// timeout after issuing ended has passed, or ctx is done.
func (f *follower) run(ctx context.Context, issuing <-chan struct{}) {
	var deadline time.Time
	for {
		if deadline.IsZero() {
			select {
			case <-issuing:
				deadline = time.Now().Add(f.cfg.FollowTimeout)
			default:
			}
		}
		snap, oldest, accepts := f.snapshot()
		if len(snap) == 0 {
			if !deadline.IsZero() {
				return
			}
			select {
			case <-f.notify:
			case <-issuing:
			case <-ctx.Done():
				return
			}
			continue
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return
		}
		begun := time.Now()
		listedBefore := f.listed.Load()
		f.round++
		if f.cfg.Follow == FollowGet {
			all := make([]*tracked, 0, len(snap))
			for _, t := range snap {
				all = append(all, t)
			}
			f.getAll(ctx, all)
		} else {
			f.list(ctx, snap, oldest, accepts)
		}
		if ctx.Err() != nil {
			return
		}
		if wait := f.pause(f.listed.Load()-listedBefore, accepts) - time.Since(begun); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
	}
}

// pause is how long a poll round that read rows orders should take in
// all, so that the follower stays within its budget (see
// followRowsPerAccept), and never less than the poll interval.
func (f *follower) pause(rows, accepts int64) time.Duration {
	f.mu.Lock()
	since := time.Since(f.firstAccept)
	f.mu.Unlock()
	budget := float64(followRowsFloor)
	if s := since.Seconds(); s > 0 {
		budget += followRowsPerAccept * float64(accepts) / s
	}
	return max(f.cfg.PollInterval, time.Duration(float64(rows)/budget*float64(time.Second)))
}

// list pages through the customer's orders, newest first, far enough back
// to reach the oldest pending order (by accept position, plus slack), and
// records the final ones. Pending orders the pages did not show (stored
// out of accept order, or listing failed) fall back to GetOrder, each at
// most every ten poll intervals.
func (f *follower) list(ctx context.Context, snap map[string]*tracked, oldest, accepts int64) {
	need := int(accepts-oldest) + 1 + f.cfg.Concurrency + listSlack
	seen := 0
	token := ""
	for need > 0 && seen < len(snap) {
		cctx, cancel := context.WithTimeout(ctx, f.cfg.CallTimeout)
		resp, err := f.orders.ListOrders(cctx, &ordersv1.ListOrdersRequest{
			PageSize: int32(min(need, maxPageSize)), PageToken: token, CustomerId: f.customer,
		})
		cancel()
		f.polls.Add(1)
		if err != nil {
			f.pollErr(ctx, err)
			break
		}
		now := time.Now()
		f.listed.Add(int64(len(resp.GetOrders())))
		for _, o := range resp.GetOrders() {
			if t, ok := snap[o.GetOrderId()]; ok {
				seen++
				t.seenRound = f.round
				f.complete(o, now)
			}
		}
		need -= len(resp.GetOrders())
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if seen == len(snap) {
		return
	}
	every := max(10*f.cfg.PollInterval, 100*time.Millisecond)
	now := time.Now()
	var late []*tracked
	for _, t := range snap {
		if t.seenRound != f.round && now.Sub(t.lastGet) >= every && len(late) < maxFallback {
			late = append(late, t)
		}
	}
	f.getAll(ctx, late)
}

// getAll calls GetOrder for each order, a bounded number at a time.
func (f *follower) getAll(ctx context.Context, ts []*tracked) {
	sem := make(chan struct{}, min(f.cfg.Concurrency, maxGetParallel))
	var wg sync.WaitGroup
	for _, t := range ts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, f.cfg.CallTimeout)
			resp, err := f.orders.GetOrder(cctx, &ordersv1.GetOrderRequest{OrderId: t.order.OrderID})
			cancel()
			f.polls.Add(1)
			f.listed.Add(1)
			t.lastGet = time.Now()
			if err != nil {
				f.pollErr(ctx, err)
				return
			}
			f.complete(resp.GetOrder(), t.lastGet)
		})
	}
	wg.Wait()
}

func (f *follower) pollErr(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pollErrs[status.Code(err).String()]++
}
