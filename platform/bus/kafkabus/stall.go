package kafkabus

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// maxAbortedPolls is how many polls in a row a consumer session may see
// aborted (franz-go aborts a transaction whose offset commit the group
// refused) before the subscriber starts a new session: a session that
// cannot commit does no work, and a new client joins the group afresh.
const maxAbortedPolls = 5

// stallWatch notices a transactional consumer session that waits for
// records while its group has some to read: after a broker restart that
// came right after a process restart, a session was seen polling forever
// with records waiting and nothing in its log. Once a poll has waited
// longer than after, the watch asks the broker for the group's lag; records
// waiting make it cancel the poll, and the subscriber starts a new session.
// A group with nothing to read is idle, not stalled.
type stallWatch struct {
	ctx    context.Context
	cancel context.CancelFunc
	adm    *kadm.Client
	group  string
	after  time.Duration

	since   atomic.Int64 // unix nanos when the current poll began; 0 while not polling
	mu      sync.Mutex
	stalled error
	done    chan struct{}
}

// newStallWatch starts watching polls made under the returned watch's ctx,
// a child of ctx. A nil watch (non-transactional sessions) does nothing.
func newStallWatch(ctx context.Context, adm *kadm.Client, group string, after time.Duration) *stallWatch {
	w := &stallWatch{adm: adm, group: group, after: after, done: make(chan struct{})}
	w.ctx, w.cancel = context.WithCancel(ctx)
	go w.run()
	return w
}

func (w *stallWatch) run() {
	defer close(w.done)
	t := time.NewTicker(min(w.after/3, 10*time.Second))
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
		}
		start := w.since.Load()
		if start == 0 || time.Since(time.Unix(0, start)) < w.after {
			continue
		}
		ctx, cancel := context.WithTimeout(w.ctx, 5*time.Second)
		waiting, err := w.waiting(ctx)
		cancel()
		if err != nil || waiting == 0 {
			// Idle, or the broker cannot tell now: look again later.
			w.since.CompareAndSwap(start, time.Now().UnixNano())
			continue
		}
		w.mu.Lock()
		w.stalled = fmt.Errorf("polled for %s with %d records of the group waiting", time.Since(time.Unix(0, start)).Round(time.Second), waiting)
		w.mu.Unlock()
		w.cancel()
		return
	}
}

// waiting returns how many records the group has yet to commit past.
func (w *stallWatch) waiting(ctx context.Context) (int64, error) {
	lags, err := w.adm.Lag(ctx, w.group)
	if err != nil {
		return 0, err
	}
	if err := lags.Error(); err != nil {
		return 0, err
	}
	var n int64
	lags.Each(func(l kadm.DescribedGroupLag) { n += l.Lag.Total() })
	return n, nil
}

// polling records whether the session is waiting in a poll.
func (w *stallWatch) polling(on bool) {
	if w == nil {
		return
	}
	if on {
		w.since.Store(time.Now().UnixNano())
	} else {
		w.since.Store(0)
	}
}

// err is why the watch cancelled the polls, or nil.
func (w *stallWatch) err() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stalled
}

// stop ends the watch.
func (w *stallWatch) stop() {
	w.cancel()
	<-w.done
}
