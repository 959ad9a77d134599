package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/fault"
	"github.com/herald-events/herald/platform/observe"
)

// Dead-letter headers added to a message moved to a dead-letter topic.
const (
	HeaderDLQTopic     = "herald_dlq_topic"
	HeaderDLQPartition = "herald_dlq_partition"
	HeaderDLQOffset    = "herald_dlq_offset"
	HeaderDLQGroup     = "herald_dlq_group"
	HeaderDLQClass     = "herald_dlq_error_class"
	HeaderDLQError     = "herald_dlq_error"
	HeaderDLQAttempts  = "herald_dlq_attempts"
	HeaderDLQTime      = "herald_dlq_time"
)

// Error classes written in [HeaderDLQClass].
const (
	ClassPermanent = "permanent"
	ClassExhausted = "retries_exhausted"
)

// DeadLetter publishes a message whose handler failed to topic+suffix (through
// the delivery's own publisher when the subscriber provides one, see
// [bus.WithDeliveryPublisher], else through pub), with
// headers naming where it came from and why, and acknowledges it so the
// consumer moves on; metrics (nil records nothing) counts it. A [Permanent]
// failure is logged at Warn level with class permanent; any other is
// written as retries_exhausted and logged at Error level, since an
// unclassified error that outlives its retries is a bug to classify.
//
// A transient failure ([fault.IsTransient]) is never dead-lettered, nor is
// a failure while shutting down: both are returned untouched, so the
// message is redelivered later; so is a failed dead-letter publish.
func DeadLetter(pub bus.Publisher, group, suffix string, log *slog.Logger, metrics *observe.Metrics) func(bus.Handler) bus.Handler {
	return func(next bus.Handler) bus.Handler {
		return func(ctx context.Context, m *bus.Message) error {
			err := next(ctx, m)
			if err == nil || ctx.Err() != nil || fault.IsTransient(err) {
				return err
			}
			class, level := ClassExhausted, slog.LevelError
			if IsPermanent(err) {
				class, level = ClassPermanent, slog.LevelWarn
			}
			var ce *ClassError
			if errors.As(err, &ce) {
				class = ce.Class
			}
			attempts := 1
			var ae *AttemptsError
			if errors.As(err, &ae) {
				attempts = ae.Attempts
			}
			dl := &bus.Message{Topic: m.Topic + suffix, Key: m.Key, Value: m.Value}
			dl.Headers = append(dl.Headers, m.Headers...)
			dl.SetHeader(HeaderDLQTopic, m.Topic)
			dl.SetHeader(HeaderDLQPartition, strconv.Itoa(int(m.Partition)))
			dl.SetHeader(HeaderDLQOffset, strconv.FormatInt(m.Offset, 10))
			dl.SetHeader(HeaderDLQGroup, group)
			dl.SetHeader(HeaderDLQClass, class)
			dl.SetHeader(HeaderDLQError, err.Error())
			dl.SetHeader(HeaderDLQAttempts, strconv.Itoa(attempts))
			dl.SetHeader(HeaderDLQTime, time.Now().UTC().Format(time.RFC3339Nano))
			if ce != nil {
				dl.Headers = append(dl.Headers, ce.Headers...)
			}
			target := pub
			if tx, ok := bus.DeliveryPublisher(ctx); ok {
				// Kafka: the dead letter and the offset commit are one
				// transaction.
				target = tx
			}
			if perr := target.Publish(ctx, dl); perr != nil {
				return fmt.Errorf("dead-letter %s: %w (handler error: %v)", m, perr, err)
			}
			typ, _ := m.Header(event.HeaderType)
			metrics.Consumed(group, typ, observe.ResultDeadLettered)
			metrics.DeadLettered(group, typ, class)
			log.Log(ctx, level, "message dead-lettered", "group", group, "from", m.String(), "to", dl.Topic,
				"class", class, "attempts", attempts, "err", err)
			return nil
		}
	}
}
