package consumer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/herald-events/herald/platform/bus"
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

// Retry calls next up to maxAttempts times while it fails with a transient
// (not [Permanent]) error, pausing between attempts with exponential backoff
// from floor to ceil and full jitter. onRetry, when not nil, is told about
// every attempt that is about to be repeated. The final error is an
// [AttemptsError].
func Retry(maxAttempts int, floor, ceil time.Duration, onRetry func(m *bus.Message, attempt int, err error)) func(bus.Handler) bus.Handler {
	return func(next bus.Handler) bus.Handler {
		return func(ctx context.Context, m *bus.Message) error {
			wait := floor
			var err error
			for attempt := 1; ; attempt++ {
				err = next(ctx, m)
				if err == nil {
					return nil
				}
				if IsPermanent(err) || attempt >= maxAttempts || ctx.Err() != nil {
					return &AttemptsError{Attempts: attempt, Err: err}
				}
				if onRetry != nil {
					onRetry(m, attempt, err)
				}
				pause := wait/2 + rand.N(wait/2+1)
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
