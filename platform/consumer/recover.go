package consumer

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/herald-events/herald/platform/bus"
)

// Recover turns a panicking handler into a permanent failure, so one bad
// message cannot crash the consumer.
func Recover() func(bus.Handler) bus.Handler {
	return func(next bus.Handler) bus.Handler {
		return func(ctx context.Context, m *bus.Message) (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = Permanent(fmt.Errorf("handler panic: %v\n%s", r, debug.Stack()))
				}
			}()
			return next(ctx, m)
		}
	}
}
