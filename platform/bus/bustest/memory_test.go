package bustest_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/bustest"
)

// memBus is an in-memory bus: one partition per topic, offsets committed
// per group, one message handled at a time. It is the suite's reference
// backend; a fault makes it break one promise on purpose.
type memBus struct {
	fault   string
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every publish
	logs    map[string][]*bus.Message
	offsets map[string]int  // group + "\x00" + topic → next offset
	owned   map[string]bool // groups with an active member
}

// Faults, each breaking what one subtest checks.
const (
	faultNone          = ""
	faultLoseOnCrash   = "lose-on-crash"      // acknowledges a poll it abandoned
	faultRepeatOnStop  = "repeat-on-stop"     // ignores the grace and forgets its last commit
	faultReverse       = "reverse"            // handles each poll backwards
	faultAckFailed     = "ack-failed"         // acknowledges a message whose handler failed
	faultDropEmpty     = "drop-empty-headers" // loses headers with empty values
	faultNewIDs        = "new-ce-id"          // rewrites ce_id (header and ID) on every delivery
	faultLoseID        = "lose-id"            // delivers messages without their ID
	faultDLQBlackhole  = "dlq-blackhole"      // drops what is published to dead-letter topics
	faultClosedSilent  = "closed-silent"      // a closed publisher reports success
	faultEnvName       = "BUSTEST_MEM_FAULT"
	memPollSize        = 32 // not a multiple of the suite's key counts, so polls span rounds
	memRetryPause      = 5 * time.Millisecond
	memBackendTimeout  = 5 * time.Second
	memFaultRunTimeout = 3 * time.Minute
)

func newMemBus(fault string) *memBus {
	return &memBus{fault: fault, changed: make(chan struct{}), logs: map[string][]*bus.Message{}, offsets: map[string]int{}, owned: map[string]bool{}}
}

func (b *memBus) backend() bustest.Backend {
	return bustest.Backend{
		Name:    "memory",
		Timeout: memBackendTimeout,
		Prepare: func(t *testing.T, topics ...string) {
			b.mu.Lock()
			defer b.mu.Unlock()
			for _, tp := range topics {
				for _, name := range []string{tp, bus.DeadLetterTopic(tp)} {
					if _, ok := b.logs[name]; !ok {
						b.logs[name] = nil
					}
				}
			}
		},
		NewPublisher:  func(*testing.T) bus.Publisher { return &memPublisher{b: b} },
		NewSubscriber: func(_ *testing.T, grace time.Duration) bus.Subscriber { return &memSubscriber{b: b, grace: grace} },
	}
}

type memPublisher struct {
	b      *memBus
	mu     sync.Mutex
	closed bool
}

func (p *memPublisher) Publish(ctx context.Context, msgs ...*bus.Message) error {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		if p.b.fault == faultClosedSilent {
			return nil
		}
		return fmt.Errorf("memory publish: %w", bus.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory publish: %w", err)
	}
	b := p.b
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range msgs {
		if b.fault == faultDLQBlackhole && bus.IsDeadLetterTopic(m.Topic) {
			continue
		}
		c := *m
		c.Headers = slices.Clone(m.Headers)
		// Like Kafka: the ID travels in the ce_id header.
		if _, ok := c.Header(bus.HeaderID); !ok && c.ID != "" {
			c.SetHeader(bus.HeaderID, c.ID)
		}
		c.ID, _ = c.Header(bus.HeaderID)
		c.Partition, c.Offset, c.Timestamp = 0, int64(len(b.logs[m.Topic])), time.Now()
		b.logs[m.Topic] = append(b.logs[m.Topic], &c)
	}
	close(b.changed)
	b.changed = make(chan struct{})
	return nil
}

func (p *memPublisher) Capabilities() bus.Capabilities {
	return bus.Capabilities{System: "memory", AtomicBatches: true, OrderedByKey: true, Partitions: true}
}

func (p *memPublisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return nil
}

// poll returns up to memPollSize messages after the group's offsets, and
// a channel closed on the next publish.
func (b *memBus) poll(group string, topics []string) ([]*bus.Message, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*bus.Message
	for _, tp := range topics {
		log := b.logs[tp]
		for _, m := range log[min(b.offsets[group+"\x00"+tp], len(log)):] {
			if len(out) == memPollSize {
				break
			}
			out = append(out, m)
		}
	}
	return out, b.changed
}

// join makes the caller the group's only active member, waiting while
// another one is; false when ctx ended first.
func (b *memBus) join(ctx context.Context, group string) bool {
	for {
		b.mu.Lock()
		if !b.owned[group] {
			b.owned[group] = true
			b.mu.Unlock()
			return true
		}
		changed := b.changed
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return false
		case <-changed:
		}
	}
}

func (b *memBus) leave(group string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.owned, group)
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *memBus) commit(group string, m *bus.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := group + "\x00" + m.Topic
	b.offsets[k] = max(b.offsets[k], int(m.Offset)+1)
}

type memSubscriber struct {
	b     *memBus
	grace time.Duration
}

func (s *memSubscriber) Capabilities() bus.Capabilities {
	return bus.Capabilities{System: "memory", OrderedByKey: true, Partitions: true}
}

func (s *memSubscriber) Run(ctx context.Context, group string, topics []string, h bus.Handler) error {
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(s.grace, hcancel)
		context.AfterFunc(hctx, func() { t.Stop() })
	})
	defer stop()
	if !s.b.join(ctx, group) {
		return nil
	}
	defer s.b.leave(group)
	deliveries := 0
	for {
		batch, changed := s.b.poll(group, topics)
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
				continue
			}
		}
		if s.b.fault == faultReverse {
			slices.Reverse(batch)
		}
		for _, m := range batch {
			if s.b.fault == faultRepeatOnStop && ctx.Err() != nil {
				return nil // neither finishes the poll nor commits what it handled last
			}
			deliveries++
			if !s.deliver(hctx, h, m, deliveries) {
				if s.b.fault == faultLoseOnCrash {
					s.b.commit(group, batch[len(batch)-1])
				}
				return nil
			}
			if s.b.fault == faultRepeatOnStop && ctx.Err() != nil {
				return nil
			}
			s.b.commit(group, m)
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// deliver calls h until it succeeds; false when ctx ended first.
func (s *memSubscriber) deliver(ctx context.Context, h bus.Handler, m *bus.Message, n int) bool {
	for {
		if ctx.Err() != nil {
			return false
		}
		c := *m
		c.Headers = nil
		for _, hd := range m.Headers {
			if s.b.fault == faultDropEmpty && len(hd.Value) == 0 {
				continue
			}
			c.Headers = append(c.Headers, hd)
		}
		if s.b.fault == faultNewIDs {
			if id, ok := c.Header(bus.HeaderID); ok {
				c.SetHeader(bus.HeaderID, fmt.Sprintf("%s#%d", id, n))
				c.ID = fmt.Sprintf("%s#%d", id, n)
			}
		}
		if s.b.fault == faultLoseID {
			c.ID = ""
		}
		err := h(ctx, &c)
		if err == nil || s.b.fault == faultAckFailed {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(memRetryPause):
		}
	}
}

// TestConformanceMemory runs the suite against the in-memory bus: with no
// fault it must pass; with BUSTEST_MEM_FAULT set (by
// TestConformanceCatchesBrokenBackends) it is expected to fail.
func TestConformanceMemory(t *testing.T) {
	fault := os.Getenv(faultEnvName)
	if fault != faultNone {
		t.Logf("memory bus with fault %q", fault)
	}
	bustest.Run(t, newMemBus(fault).backend())
}

// TestConformanceCatchesBrokenBackends runs the suite against memory buses
// that each break one promise, in a child test process, and checks that
// the subtest guarding that promise fails.
func TestConformanceCatchesBrokenBackends(t *testing.T) {
	if os.Getenv(faultEnvName) != "" {
		t.Skip("inside a fault run")
	}
	if testing.Short() {
		t.Skip("runs the suite in child processes")
	}
	for _, c := range []struct {
		fault   string
		subtest string
	}{
		{faultLoseOnCrash, "RedeliveryAfterCrash"},
		{faultRepeatOnStop, "GracefulShutdown"},
		{faultRepeatOnStop, "HandoverDuringGrace"},
		{faultReverse, "OrderPerKey"},
		{faultAckFailed, "HandlerErrorRedelivery"},
		{faultDropEmpty, "RoundTrip"},
		{faultLoseID, "RoundTrip"},
		{faultNewIDs, "Dedupe"},
		{faultDLQBlackhole, "DeadLetter"},
		{faultClosedSilent, "PublishAfterClose"},
	} {
		t.Run(c.subtest+"_"+c.fault, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), memFaultRunTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestConformanceMemory$/^"+c.subtest+"$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), faultEnvName+"="+c.fault)
			out, err := cmd.CombinedOutput()
			failed := regexp.MustCompile(`(?m)^\s*--- FAIL: TestConformanceMemory/` + c.subtest + ` `).Match(out)
			if err == nil || !failed {
				t.Fatalf("with fault %q the suite's %s did not fail (exit: %v); output:\n%s", c.fault, c.subtest, err, out)
			}
			t.Logf("fault %q caught by %s:\n%s", c.fault, c.subtest, failureLines(out))
		})
	}
}

// failureLines picks the assertion messages out of a test's output.
func failureLines(out []byte) string {
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, ".go:") && !strings.Contains(l, "topic bustest.") {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	if len(keep) > 5 {
		keep = keep[:5]
	}
	return strings.Join(keep, "\n")
}
