package app

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/herald-events/herald/services/notification/domain"
)

// Channel delivers a notification to its customer. A delivery may be
// repeated (after a crash, or a failure after the receiver got it), so
// receivers deduplicate by the notification's ID.
type Channel interface {
	// Deliver returns nil once the notification was handed over. An error
	// wrapping [ErrRefused] means retrying cannot help; any other error is
	// tried again in a later round.
	Deliver(ctx context.Context, n domain.Notification) error
}

// ErrRefused is wrapped by a [Channel] whose receiver refused a
// notification (an HTTP 4xx, say): it is failed without further rounds.
var ErrRefused = errors.New("notification refused by the receiver")

// DispatcherConfig configures a [Dispatcher].
type DispatcherConfig struct {
	// Store and Channel are required.
	Store   Store
	Channel Channel
	// Policy bounds the rounds of one notification. Default 10 rounds,
	// backoff 1s doubling up to 10m.
	Policy domain.Policy
	// Batch is how many notifications one round claims. Default 10.
	Batch int
	// Lease is how long claimed notifications are held back from other
	// dispatchers; it must exceed the time a batch can take (Batch times
	// the channel's worst case). After a crash, claimed notifications are
	// delivered again once it ran out. Default 5m.
	Lease time.Duration
	// PollInterval is the fallback wake-up, for notifications that become
	// due after a backoff or were recorded by another process. Default 1s.
	PollInterval time.Duration
	// Logger defaults to [slog.Default].
	Logger *slog.Logger
	// Now defaults to the wall clock in UTC.
	Now func() time.Time
}

// Dispatcher delivers pending notifications after they were committed, so
// that delivery never holds up nor fails the consumption of events.
type Dispatcher struct {
	cfg  DispatcherConfig
	wake chan struct{}
}

// NewDispatcher returns a dispatcher; start it with [Dispatcher.Run].
func NewDispatcher(cfg DispatcherConfig) (*Dispatcher, error) {
	if cfg.Store == nil || cfg.Channel == nil {
		return nil, errors.New("notification dispatcher: Store and Channel are required")
	}
	if cfg.Policy == (domain.Policy{}) {
		cfg.Policy = domain.Policy{MaxRounds: 10, Backoff: time.Second, MaxBackoff: 10 * time.Minute}
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 10
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 5 * time.Minute
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return time.Now().UTC() }
	}
	return &Dispatcher{cfg: cfg, wake: make(chan struct{}, 1)}, nil
}

// Notify wakes the dispatcher; [App.Record] arranges it after commit.
func (d *Dispatcher) Notify() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run delivers due notifications until ctx is done. Store errors are logged
// and retried; it returns nil when ctx is done.
func (d *Dispatcher) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		n, err := d.DispatchOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			d.cfg.Logger.Error("notification dispatch failed; retrying", "err", err, "retry_in", backoff)
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if n == d.cfg.Batch {
			continue // more are probably due
		}
		t := time.NewTimer(d.cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-d.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// DispatchOnce claims one batch of due notifications, delivers them one
// after the other (in the order they were recorded) and stores each
// outcome. It returns how many it claimed.
func (d *Dispatcher) DispatchOnce(ctx context.Context) (int, error) {
	batch, err := d.cfg.Store.Claim(ctx, d.cfg.Now(), d.cfg.Lease, d.cfg.Batch)
	if err != nil || len(batch) == 0 {
		return 0, err
	}
	for i, n := range batch {
		if ctx.Err() != nil {
			d.unclaim(batch[i:])
			return len(batch), ctx.Err()
		}
		err := d.cfg.Channel.Deliver(ctx, *n)
		if err != nil && ctx.Err() != nil {
			// Stopping, not failing: the round does not count.
			d.unclaim(batch[i:])
			return len(batch), ctx.Err()
		}
		now := d.cfg.Now()
		log := d.cfg.Logger.With("notification_id", n.ID, "order_id", n.OrderID, "kind", n.Kind)
		if err != nil {
			n.MarkFailed(err.Error(), errors.Is(err, ErrRefused), now, d.cfg.Policy)
			if n.Status == domain.StatusFailed {
				log.Error("notification undeliverable; giving up", "err", err, "attempts", n.Attempts)
			} else {
				log.Warn("notification delivery failed; will retry", "err", err, "attempts", n.Attempts, "next_attempt", n.NextAttempt)
			}
		} else {
			n.MarkDelivered(now)
			log.Debug("notification delivered", "attempts", n.Attempts)
		}
		if err := d.cfg.Store.Save(ctx, n); err != nil {
			// Delivered or not, the lease brings it back: at least once.
			return len(batch), err
		}
	}
	return len(batch), nil
}

// unclaim makes claimed notifications due at once again, so a restart does
// not wait for their lease.
func (d *Dispatcher) unclaim(ns []*domain.Notification) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	now := d.cfg.Now()
	for _, n := range ns {
		n.NextAttempt = now
		if err := d.cfg.Store.Save(ctx, n); err != nil {
			d.cfg.Logger.Warn("notification unclaim failed; due again after its lease", "notification_id", n.ID, "err", err)
			return
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
