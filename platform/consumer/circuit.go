package consumer

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/fault"
	"github.com/herald-events/herald/platform/observe"
)

// CircuitPolicy configures [Circuit].
type CircuitPolicy struct {
	// Group names the consumer group in logs and metrics.
	Group string
	// Floor and Ceil bound the pause between two probes of an unavailable
	// dependency, which doubles from Floor with jitter. Defaults 100ms and
	// 2s: a long outage costs one attempt every two seconds per group,
	// and the group resumes at most two seconds after the dependency.
	Floor, Ceil time.Duration
	// Logger receives one line per state change. Default [slog.Default].
	Logger *slog.Logger
	// Metrics records the state; nil records nothing.
	Metrics *observe.Metrics
}

// Circuit keeps a message whose handler fails with a transient error (see
// [fault.IsTransient]) and calls the handler again until it succeeds, fails
// otherwise, or ctx ends; a transient error is never passed on while ctx
// lives, so it is never dead-lettered.
//
// It is a circuit breaker shared by every delivery of the group: the first
// transient failure opens it, and while it is open the group's deliveries
// wait, with one call at a time (the probe) let through, paced by a capped
// exponential backoff. The first success closes it and releases them. Each
// change of state is logged once (Warn on opening, with the dependency;
// Info on closing, with how long it was open) and recorded in the
// herald_consumer_circuit_* metrics.
//
// A conflict ([fault.IsConflict]: concurrent work raced the message's, and
// the database failed it to break a deadlock) says nothing of the
// dependency's health: the handler is called again at once, up to
// [ConflictRetries] times, with the breaker left as it is. Only a conflict
// that persists past them opens it, as an outage would.
//
// When ctx ends while a message waits, the last error (or ctx's) is
// returned so that the bus redelivers the message later.
func Circuit(p CircuitPolicy) func(bus.Handler) bus.Handler {
	b := newBreaker(p)
	return func(next bus.Handler) bus.Handler {
		return func(ctx context.Context, m *bus.Message) error {
			var last error
			conflicts := 0
			for {
				probe, err := b.acquire(ctx)
				if err != nil {
					if last != nil {
						return errors.Join(last, err)
					}
					return err
				}
				var out outcome
				err = next(context.WithValue(ctx, outcomeKey{}, &out), m)
				if fault.IsConflict(err) && conflicts < ConflictRetries && ctx.Err() == nil {
					conflicts++
					b.release(probe, nil, true) // proved nothing either way
					b.p.Logger.Debug("conflict, running the message again", "group", b.p.Group, "message", m.String(),
						"attempt", conflicts, "err", err)
					last = err
					continue
				}
				b.release(probe, err, out.skipped)
				if err == nil || !fault.IsTransient(err) || ctx.Err() != nil {
					return err
				}
				last = err
			}
		}
	}
}

// ConflictRetries is how many times [Circuit] runs a message again at once
// after a conflict before the conflict counts as an outage.
const ConflictRetries = 3

// outcome lets the router tell the breaker that a delivery proved nothing
// about the dependency: its event type has no handler here.
type outcome struct{ skipped bool }

type outcomeKey struct{}

// markSkipped records that the delivery in ctx touched no dependency, and
// tells the subscriber that it was passed over (bus.PassOver).
func markSkipped(ctx context.Context) {
	if o, ok := ctx.Value(outcomeKey{}).(*outcome); ok {
		o.skipped = true
	}
	bus.PassOver(ctx)
}

type breaker struct {
	p CircuitPolicy

	mu        sync.Mutex
	open      bool
	openedAt  time.Time
	dep       string
	probing   bool
	nextProbe time.Time
	wait      time.Duration
	changed   chan struct{} // closed and replaced when a waiter may proceed
}

func newBreaker(p CircuitPolicy) *breaker {
	if p.Floor <= 0 {
		p.Floor = 100 * time.Millisecond
	}
	if p.Ceil <= 0 {
		p.Ceil = 2 * time.Second
	}
	if p.Ceil < p.Floor {
		p.Ceil = p.Floor
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	p.Metrics.CircuitInit(p.Group)
	return &breaker{p: p, wait: p.Floor, changed: make(chan struct{})}
}

// acquire returns when the delivery may call the handler: at once while the
// breaker is closed; while it is open, when no probe is running and the
// backoff has passed, as the probe.
func (b *breaker) acquire(ctx context.Context) (probe bool, err error) {
	for {
		b.mu.Lock()
		if !b.open {
			b.mu.Unlock()
			return false, nil
		}
		changed := b.changed
		var timer *time.Timer
		var fire <-chan time.Time
		if !b.probing {
			d := time.Until(b.nextProbe)
			if d <= 0 {
				b.probing = true
				b.mu.Unlock()
				return true, nil
			}
			timer = time.NewTimer(d)
			fire = timer.C
		}
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-changed:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
		if err != nil {
			return false, err
		}
	}
}

// release records the result of a call.
func (b *breaker) release(probe bool, err error, skipped bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	switch {
	case err != nil && fault.IsTransient(err):
		if !b.open {
			b.open, b.openedAt, b.dep, b.wait = true, time.Now(), dependency(err), b.p.Floor
			b.p.Metrics.CircuitChanged(b.p.Group, true)
			b.p.Logger.Warn("consumer paused: dependency unavailable", "group", b.p.Group, "dependency", b.dep, "err", err)
		} else if probe {
			b.wait = min(b.wait*2, b.p.Ceil)
		}
		b.nextProbe = time.Now().Add(b.wait/2 + rand.N(b.wait/2+1))
	case err == nil && !skipped && b.open:
		b.open = false
		b.p.Metrics.CircuitChanged(b.p.Group, false)
		b.p.Logger.Info("consumer resumed: dependency available again", "group", b.p.Group, "dependency", b.dep,
			"open_for", time.Since(b.openedAt).Round(time.Millisecond))
	}
	// A probe that ended, or a closed breaker, lets the waiters look again.
	close(b.changed)
	b.changed = make(chan struct{})
}

func dependency(err error) string {
	if d := fault.DependencyOf(err); d != "" {
		return d
	}
	return "network"
}
