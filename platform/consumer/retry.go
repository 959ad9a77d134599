package consumer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/fault"
)

// AttemptsError is the last error of a message that failed every attempt.
type AttemptsError struct {
	Attempts int
	Err      error
}

func (e *AttemptsError) Error() string {
	return fmt.Sprintf("after %d attempts: %v", e.Attempts, e.Err)
}

func (e *AttemptsError) Unwrap() error { return e.Err }

// RetryPolicy bounds [Retry].
type RetryPolicy struct {
	// MaxAttempts bounds the calls of one message.
	MaxAttempts int
	// MaxElapsed bounds the time spent on one message: no attempt starts
	// after it (0: no bound).
	MaxElapsed time.Duration
	// Floor and Ceil bound the pause between attempts, which doubles from
	// Floor with full jitter.
	Floor, Ceil time.Duration
}

// Retry calls next while it fails with an unclassified error (neither
// [Permanent] nor transient, see [fault.IsTransient]: [Circuit] owns those),
// within the policy's attempts and elapsed time, pausing between attempts
// with exponential backoff and full jitter. onRetry, when not nil, is told
// about every attempt that is about to be repeated. The final error is an
// [AttemptsError].
func Retry(p RetryPolicy, onRetry func(m *bus.Message, attempt int, err error)) func(bus.Handler) bus.Handler {
	maxAttempts, floor, ceil := p.MaxAttempts, p.Floor, p.Ceil
	return func(next bus.Handler) bus.Handler {
		return func(ctx context.Context, m *bus.Message) error {
			wait := floor
			start := time.Now()
			var err error
			for attempt := 1; ; attempt++ {
				err = next(ctx, m)
				if err == nil {
					return nil
				}
				pause := wait/2 + rand.N(wait/2+1)
				outOfTime := p.MaxElapsed > 0 && time.Since(start)+pause > p.MaxElapsed
				if IsPermanent(err) || fault.IsTransient(err) || attempt >= maxAttempts || outOfTime || ctx.Err() != nil {
					return &AttemptsError{Attempts: attempt, Err: err}
				}
				if onRetry != nil {
					onRetry(m, attempt, err)
				}
				t := time.NewTimer(pause)
				select {
				case <-ctx.Done():
					t.Stop()
					return &AttemptsError{Attempts: attempt, Err: errors.Join(err, ctx.Err())}
				case <-t.C:
				}
				wait = min(wait*2, ceil)
			}
		}
	}
}
