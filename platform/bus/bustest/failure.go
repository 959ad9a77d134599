package bustest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/bus"
)

// testRedeliveryAfterCrash: subscriber A of a group blocks on one message
// and is stopped with no grace, as if it crashed; subscriber B of the same
// group then gets every message A did not finish. Nothing is lost.
func (s *suite) testRedeliveryAfterCrash(t *testing.T) {
	const keys, perKey = 4, 15
	f := s.setup(t)
	pub := f.publisher()
	rounds, _, order := interleaved(f.topic, keys, perKey)
	for _, round := range rounds {
		f.publish(pub, round...)
	}
	group := f.group("g")
	blocked := order[len(order)/3]
	var (
		doneA, doneB = newTally(), newTally()
		blockedOnce  sync.Once
		isBlocked    = make(chan struct{})
		release      = make(chan struct{})
	)
	a := f.start("a", group, 0, func(ctx context.Context, m *bus.Message) error {
		id := idOf(m)
		if id == blocked {
			blockedOnce.Do(func() { close(isBlocked) })
			// Never acknowledged: it waits for the end of the (zero) grace.
			// release only frees it if the backend never cancels it.
			select {
			case <-ctx.Done():
				return fmt.Errorf("bustest: %s abandoned: %w", id, ctx.Err())
			case <-release:
				return errors.New("bustest: released by the end of the test")
			}
		}
		time.Sleep(time.Millisecond) // some work, so that the crash finds some in flight
		doneA.add(id)
		return nil
	})
	t.Cleanup(func() { close(release) }) // runs before a's cleanup
	f.waitFor("subscriber a to block on "+blocked, func() (bool, string) {
		select {
		case <-isBlocked:
			return true, ""
		default:
			return false, fmt.Sprintf("a finished %d messages", doneA.distinct())
		}
	}, a)
	f.stop(a) // grace 0: what a holds unfinished is abandoned, unacknowledged
	finishedA := doneA.snapshot()
	if finishedA[blocked] > 0 {
		t.Fatalf("the blocked message %s was recorded as finished by a", blocked)
	}
	var missing []string
	for _, id := range order {
		if finishedA[id] == 0 {
			missing = append(missing, id)
		}
	}

	b := f.start("b", group, graceful, func(_ context.Context, m *bus.Message) error {
		doneB.add(idOf(m))
		return nil
	})
	f.waitFor(fmt.Sprintf("subscriber b to get the %d messages a did not finish", len(missing)), func() (bool, string) {
		var left []string
		for _, id := range missing {
			if doneB.get(id) == 0 {
				left = append(left, id)
			}
		}
		if len(left) == 0 {
			return true, ""
		}
		if len(left) > 5 {
			left = append(left[:5], "...")
		}
		return false, fmt.Sprintf("%d of %d still missing, e.g. %v", len(left), len(missing), left)
	}, b)
	f.stop(b)

	handledB := doneB.snapshot()
	again := 0
	for id := range finishedA {
		if handledB[id] > 0 {
			again++
		}
	}
	for _, id := range order {
		if finishedA[id]+handledB[id] == 0 {
			t.Errorf("message %s was never handled successfully", id)
		}
	}
	for id := range handledB {
		if !slices.Contains(order, id) {
			t.Errorf("b handled %q, which was never published", id)
		}
	}
	t.Logf("a finished %d of %d before the crash; b handled %d (%d of them again)", len(finishedA), len(order), len(handledB), again)
}

// testGracefulShutdown: subscriber A is stopped with a generous grace in the
// middle of a stream, while messages keep coming; once it has returned,
// subscriber B of the same group carries on. Every message is handled
// exactly once in total, and a third subscriber, behind a fence, finds
// nothing left unacknowledged.
func (s *suite) testGracefulShutdown(t *testing.T) { s.gracefulStop(t, false) }

// testHandoverDuringGrace is testGracefulShutdown as a rolling deploy does
// it: B joins the group while A is still finishing its messages within the
// grace. A's first message after the cancel waits (within the grace) until
// B has handled something, or for a while when the backend lets B work
// only after A is gone. Still every message is handled exactly once.
func (s *suite) testHandoverDuringGrace(t *testing.T) { s.gracefulStop(t, true) }

func (s *suite) gracefulStop(t *testing.T, overlap bool) {
	const keys, perKey = 10, 40
	f := s.setup(t)
	pub := f.publisher()
	rounds, refs, order := interleaved(f.topic, keys, perKey)
	group := f.group("g")
	grace, hold := graceful, time.Duration(0)
	if overlap {
		// Long enough for a Kafka successor to join and be assigned
		// partitions (heartbeats every 3s); well within A's grace.
		grace, hold = 3*graceful, min(graceful, f.timeout/2)
	}
	var (
		total, byA, byB = newTally(), newTally(), newTally()
		afterCancel     = newTally()
		unknownMu       sync.Mutex
		unknown         []string
		cancelled       = make(chan struct{})
		bActive         = make(chan struct{})
		bOnce, holdOnce sync.Once
		heldFor         atomic.Int64
		bDuringGrace    atomic.Bool
	)
	record := func(who *tally, m *bus.Message) {
		id := idOf(m)
		if _, ok := refs[id]; !ok {
			unknownMu.Lock()
			unknown = append(unknown, id)
			unknownMu.Unlock()
			return
		}
		total.add(id)
		who.add(id)
	}
	handlerA := func(_ context.Context, m *bus.Message) error {
		time.Sleep(2 * time.Millisecond) // work that the grace must let finish
		select {
		case <-cancelled:
			if overlap {
				holdOnce.Do(func() {
					start := time.Now()
					select {
					case <-bActive:
						bDuringGrace.Store(true)
					case <-time.After(hold):
					}
					heldFor.Store(int64(time.Since(start)))
				})
			}
			afterCancel.add(idOf(m))
		default:
		}
		record(byA, m)
		return nil
	}
	handlerB := func(_ context.Context, m *bus.Message) error {
		time.Sleep(time.Millisecond)
		record(byB, m)
		bOnce.Do(func() { close(bActive) })
		return nil
	}

	// Half the stream is there when A starts; A is stopped as soon as it
	// has handled 50 messages, and the other half comes while A is
	// shutting down.
	for _, round := range rounds[:perKey/2] {
		f.publish(pub, round...)
	}
	a := f.start("a", group, grace, handlerA)
	f.waitFor("subscriber a to handle 50 messages", func() (bool, string) {
		return byA.distinct() >= 50, fmt.Sprintf("a handled %d", byA.distinct())
	}, a)
	close(cancelled)
	a.cancel()
	var b *running
	if overlap {
		b = f.start("b", group, graceful, handlerB)
	}
	for _, round := range rounds[perKey/2:] {
		f.publish(pub, round...)
	}
	f.stop(a)
	t.Logf("a handled %d messages, %d of them after its context was cancelled", byA.distinct(), afterCancel.distinct())
	if overlap {
		t.Logf("a's first message after the cancel waited %s; b handled messages during a's grace: %v",
			time.Duration(heldFor.Load()).Round(time.Millisecond), bDuringGrace.Load())
	} else {
		b = f.start("b", group, graceful, handlerB)
	}
	f.waitFor(fmt.Sprintf("all %d messages handled", len(order)), func() (bool, string) {
		return total.distinct() >= len(order), fmt.Sprintf("%d of %d handled (a %d, b %d)",
			total.distinct(), len(order), byA.distinct(), byB.distinct())
	}, b)
	f.stop(b)

	keyNames := make([]string, keys)
	for k := range keys {
		keyNames[k] = fmt.Sprintf("k%02d", k)
	}
	redelivered := f.fence(pub, group, keyNames, total)

	counts, countsA, countsB := total.snapshot(), byA.snapshot(), byB.snapshot()
	var lost, repeated []string
	for _, id := range order {
		switch n := counts[id]; {
		case n == 0:
			lost = append(lost, id)
		case n > 1:
			repeated = append(repeated, fmt.Sprintf("%s ×%d (a %d, b %d, behind the fence %d)",
				id, n, countsA[id], countsB[id], n-countsA[id]-countsB[id]))
		}
	}
	unknownMu.Lock()
	defer unknownMu.Unlock()
	if len(unknown) > 0 {
		t.Errorf("handled messages that were never published: %v", abbreviate(unknown))
	}
	if len(lost) > 0 {
		t.Errorf("%d messages never handled: %v", len(lost), abbreviate(lost))
	}
	if len(repeated) > 0 {
		t.Errorf("%d messages handled more than once across a graceful stop (a handled %d, b %d, %d redelivered behind the fence): %s",
			len(repeated), len(countsA), len(countsB), len(redelivered), strings.Join(abbreviate(repeated), "; "))
	}
}

// abbreviate keeps the first ten items of a long list.
func abbreviate(items []string) []string {
	if len(items) <= 10 {
		return items
	}
	return append(slices.Clone(items[:10]), fmt.Sprintf("... %d more", len(items)-10))
}
