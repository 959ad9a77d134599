package app

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-events/herald/platform/apperr"
)

// PendingCounter counts the orders still waiting for the saga, up to
// limit; adapters.Store is one.
type PendingCounter interface {
	Pending(ctx context.Context, limit int) (int, error)
}

// Admission holds the door to the pace of the saga: while MaxPending
// orders or more wait for inventory's answer, CreateOrder refuses new
// ones with ResourceExhausted, and clients retry later (with the same
// request id). Without it a door that accepts faster than inventory
// deducts builds a queue without bound: every accepted order waits behind
// it, and the queue outlives the burst.
type Admission struct {
	Counter    PendingCounter
	MaxPending int           // 0: no limit
	Every      time.Duration // how old a count may be; 0: count on every call
	Logger     *slog.Logger  // where a failed count is logged; nil: nowhere
}

// minRetryDelay is the least wait a refusal asks for.
const minRetryDelay = 10 * time.Millisecond

// admission is a running [Admission]: the count is sampled at most every
// Every by one caller while the others use the last one.
type admission struct {
	Admission
	refresh sync.Mutex
	pending atomic.Int64
	at      atomic.Int64 // UnixNano of the last count; 0: none yet
}

// WithAdmission returns the use cases with ad applied to CreateOrder.
func (a *App) WithAdmission(ad Admission) *App {
	if ad.MaxPending > 0 && ad.Counter != nil {
		a.admit = &admission{Admission: ad}
	}
	return a
}

// check returns a ResourceExhausted error when the last count is at the
// limit. A count that fails keeps the last one until the next is due: the
// database being down fails the order on its own, with the error that
// says so.
func (ad *admission) check(ctx context.Context) error {
	if ad == nil {
		return nil
	}
	now := time.Now().UnixNano()
	if last := ad.at.Load(); (last == 0 || time.Duration(now-last) >= ad.Every) && ad.refresh.TryLock() {
		n, err := ad.Counter.Pending(ctx, ad.MaxPending)
		if err == nil {
			ad.pending.Store(int64(n))
		} else if ad.Logger != nil {
			// Debug: a database that is down is reported where the
			// process watches its dependencies, not once per 50 ms here.
			ad.Logger.Debug("count pending orders for admission", "err", err)
		}
		ad.at.Store(time.Now().UnixNano())
		ad.refresh.Unlock()
	}
	if n := ad.pending.Load(); n >= int64(ad.MaxPending) {
		// The next count comes after Every: retrying sooner would see
		// the same answer.
		return apperr.ResourceExhausted(max(ad.Every, minRetryDelay), "%d orders or more are waiting for inventory's answer (the limit is %d): retry later", n, ad.MaxPending)
	}
	return nil
}
