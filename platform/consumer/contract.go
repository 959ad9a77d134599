package consumer

import (
	"context"
	"errors"
	"fmt"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/contract"
	"github.com/herald-events/herald/platform/event"
)

// HeaderDLQViolation is added to a dead letter of class contract once per
// broken rule: "<field>: <message> [<rule id>]", at most
// [maxViolationHeaders] of them.
const HeaderDLQViolation = "herald_dlq_violation"

const maxViolationHeaders = 20

// ClassError is a permanent failure with a dead-letter class of its own
// (written in [HeaderDLQClass] and counted under it) and extra dead-letter
// headers.
type ClassError struct {
	// Class is written in [HeaderDLQClass] ([contract.ClassContract],
	// [contract.ClassRouting]).
	Class string
	// Headers are added to the dead letter.
	Headers []bus.Header
	// Err is the failure.
	Err error
}

// Error returns Err's message.
func (e *ClassError) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *ClassError) Unwrap() error { return e.Err }

// classified marks err permanent with class and headers.
func classified(class string, headers []bus.Header, err error) error {
	return Permanent(&ClassError{Class: class, Headers: headers, Err: err})
}

// deadLetterClasses are the classes the router's dead letters can have:
// with the contract check, contract and routing too.
func (r *Router) deadLetterClasses() []string {
	classes := []string{ClassPermanent, ClassExhausted}
	if r.cfg.Contract != nil {
		classes = append(classes, contract.ClassContract, contract.ClassRouting)
	}
	return classes
}

// ErrWrongTopic marks an event whose type is not declared for the topic it
// arrived on (its schema's event option names another topic).
var ErrWrongTopic = errors.New("event type not declared for this topic")

// checkContract wraps a [Unit] with the consuming door of the data
// contracts: before the unit runs (so before any inbox claim or effect), an
// event whose type's declared topic (its event option, namespaced) is not
// the topic it arrived on fails with class [contract.ClassRouting], and an
// event that breaks its schema's rules fails with class
// [contract.ClassContract] and one [HeaderDLQViolation] per broken rule.
// Both are permanent: [DeadLetter] moves them at once, and neither reaches
// the handler. A rule that cannot be evaluated is an unclassified error.
func checkContract(v *contract.Validator, namespace string, next Unit) Unit {
	return func(ctx context.Context, ev *Event, h Handler) error {
		if ev.Raw != nil {
			route, err := event.RouteOf(ev.Message.ProtoReflect().Descriptor())
			if err != nil {
				return Permanent(fmt.Errorf("event %s: %w", ev.ID, err))
			}
			if want := event.Namespaced(namespace, route.Topic); ev.Raw.Topic != want {
				return classified(contract.ClassRouting, nil,
					fmt.Errorf("event %s: %s on %s, declared for %s: %w", ev.ID, ev.Type, ev.Raw.Topic, want, ErrWrongTopic))
			}
		}
		if err := v.Validate(ev.Message); err != nil {
			ce, ok := contract.As(err)
			if !ok {
				return err
			}
			var hs []bus.Header
			for i, x := range ce.Violations {
				if i == maxViolationHeaders {
					break
				}
				hs = append(hs, bus.Header{Key: HeaderDLQViolation, Value: []byte(x.String())})
			}
			return classified(contract.ClassContract, hs, fmt.Errorf("event %s: %w", ev.ID, err))
		}
		return next(ctx, ev, h)
	}
}
