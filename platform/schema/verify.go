package schema

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/herald-events/herald/platform/fault"
)

// ErrSchemaDrift matches (with [errors.Is]) the error of a codec whose
// cached schema ids no longer name the same schemas in the registry; see
// [DriftError].
var ErrSchemaDrift = errors.New("schema ids drifted")

// DriftError tells which cached framing the registry no longer agrees
// with. It matches [ErrSchemaDrift].
type DriftError struct {
	// Topic and Type name the framing: the topic and the event's full name.
	Topic, Type string
	// CachedID is the id the codec frames values with.
	CachedID int
	// RegistryID is the id the registry has for that schema now; 0 when
	// the registry lacks the subject or the schema.
	RegistryID int
	// Others counts further framings that drifted.
	Others int
}

func (e *DriftError) Error() string {
	now := fmt.Sprintf("the registry has id %d for it now", e.RegistryID)
	if e.RegistryID == 0 {
		now = "the registry does not have it"
	}
	msg := fmt.Sprintf("%v: %s on %s is framed with schema id %d but %s", ErrSchemaDrift, e.Type, e.Topic, e.CachedID, now)
	if e.Others > 0 {
		msg += fmt.Sprintf(" (and %d more)", e.Others)
	}
	return msg + "; restore the registry or import the same ids (herald schema import), see docs/reliability.md"
}

// Is makes a DriftError match [ErrSchemaDrift].
func (e *DriftError) Is(target error) bool { return target == ErrSchemaDrift }

// consistentFor is how long [Codec.Consistent] reuses a Verify's answer.
const consistentFor = time.Second

// verifier is the Codec's state for Verify and RunVerifier.
type verifier struct {
	// fresh is a registry client of its own whose caches Verify clears
	// before asking, so every answer comes from the registry now. Nil when
	// the codec's client offers no configuration to copy; Verify then
	// clears the shared client's caches.
	fresh  schemaregistry.Client
	wake   chan struct{}
	run    sync.Mutex // one Verify at a time
	mu     sync.Mutex
	at     time.Time // when the last Verify finished
	result error     // its answer
}

func (v *verifier) init(client schemaregistry.Client) {
	v.wake = make(chan struct{}, 1)
	if conf := client.Config(); conf != nil {
		if fresh, err := schemaregistry.NewClient(conf); err == nil {
			v.fresh = fresh
		}
	}
}

// nudge wakes RunVerifier after an error that says the registry is
// unreachable.
func (v *verifier) nudge() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// Err returns nil while the codec's cached ids agree with the registry (as
// far as the last [Codec.Verify] could tell) and the drift error
// otherwise: transient, matching [ErrSchemaDrift]. Readiness reports
// NOT_SERVING while it is not nil.
func (c *Codec) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.drift
}

// Verify asks the registry, bypassing every cache, whether each schema id
// the codec frames values with still names the same schema under the same
// subject. When one does not (another id, or the subject or schema gone),
// the codec refuses to encode until a later Verify finds every id back;
// the error returned is then the drift error (see [Codec.Err]). When the
// registry cannot be reached, Verify returns a transient error and leaves
// the codec's state as it was.
func (c *Codec) Verify(ctx context.Context) error {
	c.verifier.run.Lock()
	defer c.verifier.run.Unlock()
	return c.verifyLocked(ctx)
}

// verifyLocked runs a Verify and keeps its answer; the caller holds
// c.verifier.run.
func (c *Codec) verifyLocked(ctx context.Context) error {
	err := c.verify(ctx)
	c.verifier.mu.Lock()
	c.verifier.at, c.verifier.result = time.Now(), err
	c.verifier.mu.Unlock()
	return err
}

func (c *Codec) verify(ctx context.Context) error {
	type entry struct {
		key frameKey
		framing
	}
	c.mu.Lock()
	entries := make([]entry, 0, len(c.frames))
	for k, f := range c.frames {
		entries = append(entries, entry{k, f})
	}
	c.mu.Unlock()
	slices.SortFunc(entries, func(a, b entry) int {
		return cmp.Or(cmp.Compare(a.key.topic, b.key.topic), cmp.Compare(a.key.name, b.key.name))
	})

	client := c.verifier.fresh
	if client == nil {
		client = c.client
	}
	if err := client.ClearCaches(); err != nil {
		return fmt.Errorf("verify schema ids: %w", err)
	}
	var drift *DriftError
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("verify schema ids: %w", err)
		}
		now, err := c.lookupWith(client, e.key.topic, e.md)
		switch {
		case err != nil && notFound(err):
			now = 0
		case err != nil:
			// Unreachable, or an answer that is not the registry's: we
			// cannot tell, so nothing changes.
			return fault.Transient(dependency, fmt.Errorf("verify schema ids: %w", err))
		}
		if now == e.id {
			continue
		}
		if drift == nil {
			drift = &DriftError{Topic: e.key.topic, Type: string(e.key.name), CachedID: e.id, RegistryID: now}
		} else {
			drift.Others++
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if (drift == nil) != (c.drift == nil) {
		// The meaning of ids changed, or changed back: the codec's own
		// client must not decode with what it cached from before.
		_ = c.client.ClearCaches()
	}
	if drift == nil {
		c.drift = nil
		return nil
	}
	c.drift = fault.Transient(dependency, drift)
	return c.drift
}

// lookupWith returns the id client has for md's schema under topic's
// subject, registering nothing.
func (c *Codec) lookupWith(client schemaregistry.Client, topic string, md protoreflect.MessageDescriptor) (int, error) {
	s, err := c.newSerializerWith(client, md, false)
	if err != nil {
		return 0, err
	}
	contract, err := c.contracts.message(md)
	if err != nil {
		return 0, err
	}
	b, err := s.Serialize(topic, contract)
	if err != nil {
		return 0, err
	}
	return frameID(b)
}

// Consistent reports whether the registry agrees with every id the codec
// knows: nil when it does, a transient error when it does not or cannot be
// reached. A decoder asks this before calling a value that does not
// resolve, or that decodes to a type other than its ce_type header says,
// a bad message: while the registry changed under the codec, such values
// are the registry's fault. The answer of a Verify younger than a second
// is reused, so a burst of bad values costs one round of lookups.
//
// A codec knows the ids it encoded, looked up or registered; one that
// knows none (a tool that only decodes) finds every registry consistent.
func (c *Codec) Consistent() error {
	// Holding run while checking the age makes concurrent callers wait
	// for one Verify and share its answer.
	c.verifier.run.Lock()
	defer c.verifier.run.Unlock()
	c.verifier.mu.Lock()
	at, result := c.verifier.at, c.verifier.result
	c.verifier.mu.Unlock()
	if !at.IsZero() && time.Since(at) < consistentFor {
		if result != nil {
			return fault.Transient(dependency, result)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.verifyLocked(ctx); err != nil {
		return fault.Transient(dependency, err)
	}
	return nil
}

// RunVerifier calls [Codec.Verify] every interval (default 30s when
// every <= 0) until ctx is done. In between it checks every 5 seconds (at
// most every interval) that the registry answers at all, with one cheap
// request; after a failed check, a Verify that could not reach the
// registry, or an Encode, Decode or Lookup that could not, it verifies
// every second (at most every interval) until the registry answers, so the
// ids are verified right after every reconnect: a registry that restarted
// empty is caught within seconds of coming back. A check that finds the
// registry's subject list changed also verifies at once, which catches a
// restart too quick for a check to fall into. It logs once per change
// of state: ids verified, ids drifted (publishing refused), registry
// unreachable.
func (c *Codec) RunVerifier(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = 30 * time.Second
	}
	retry, probeEvery := min(every, time.Second), min(every, 5*time.Second)
	const (
		stateUnknown = iota
		stateOK
		stateDrift
		stateUnreachable
	)
	state, lastDrift, lastSubjects := stateUnknown, "", ""
	// The first round verifies at once: the ids the codec holds are then
	// checked against the registry as it is when the process starts.
	nextVerify := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		woken := false
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-c.verifier.wake:
			if state == stateUnreachable {
				continue // already polling
			}
			woken = true
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
		var err error
		if state != stateUnreachable && !woken && time.Now().Before(nextVerify) {
			// Between verifications: is the registry there at all, and
			// does it list the subjects it listed before? A registry
			// that restarted empty, or was filled again, lists others:
			// verify at once instead of at the next period.
			var subjects string
			subjects, err = c.probe()
			if err == nil && (lastSubjects == "" || subjects == lastSubjects) {
				lastSubjects = subjects
				timer.Reset(probeEvery)
				continue
			}
			if err == nil {
				lastSubjects = subjects
				err = c.Verify(ctx)
				nextVerify = time.Now().Add(every)
			} else {
				err = fault.Transient(dependency, fmt.Errorf("check schema registry: %w", err))
			}
		} else {
			// The subject list before the Verify is the one later checks
			// compare with: a change during it is then seen.
			if subjects, perr := c.probe(); perr == nil {
				lastSubjects = subjects
			}
			err = c.Verify(ctx)
			nextVerify = time.Now().Add(every)
		}
		if ctx.Err() != nil {
			return
		}
		next, wait := stateOK, probeEvery
		switch {
		case errors.Is(err, ErrSchemaDrift):
			next = stateDrift
		case err != nil:
			next, wait = stateUnreachable, retry
		}
		switch {
		case next == stateDrift && (state != stateDrift || err.Error() != lastDrift):
			c.log.Error("schema ids drifted: refusing to publish until the registry has them back", "err", err)
			lastDrift = err.Error()
		case next == stateUnreachable && state != stateUnreachable:
			c.log.Warn("schema registry unreachable: verifying the schema ids again as soon as it answers", "err", err)
		case next == stateOK && state == stateDrift:
			c.log.Info("schema ids verified: the registry has them back, publishing resumes")
		case next == stateOK && state == stateUnreachable:
			c.log.Info("schema registry reachable again: schema ids verified")
		case next == stateOK && state == stateUnknown:
			c.log.Debug("schema ids verified")
		}
		if next != stateDrift {
			lastDrift = ""
		}
		state = next
		timer.Reset(wait)
	}
}

// probe asks the registry for its subject list, uncached: the cheapest
// request that proves it answers. It returns the list, sorted and joined,
// so that a change shows.
func (c *Codec) probe() (string, error) {
	client := c.verifier.fresh
	if client == nil {
		client = c.client
	}
	subjects, err := client.GetAllSubjects()
	if err != nil {
		return "", err
	}
	slices.Sort(subjects)
	return "\x00" + strings.Join(subjects, "\x00"), nil
}
