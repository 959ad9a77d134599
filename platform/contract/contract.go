// Package contract enforces the rules that herald's schemas carry: the
// protovalidate annotations (buf.validate) on API requests and events.
//
// A [Validator] checks one message against its rules and answers with an
// [*Error] listing every [Violation]. The platform applies it at each door:
//
//   - gRPC: [UnaryServerInterceptor] refuses a request that breaks its
//     rules with INVALID_ARGUMENT and google.rpc.BadRequest field
//     violations (through apperr and grpcx.Status, like any invalid
//     request);
//   - producing: the outbox (outbox.Add) and the bus unit of work refuse an
//     event that breaks its rules, inside the business transaction;
//   - consuming: the consumer router dead-letters an event that breaks its
//     contract with class [ClassContract] and an event whose type is not
//     declared for the topic it arrived on with class [ClassRouting].
//
// Rules about the shape of one message live in the .proto files; domain
// rules that need state or more than one message stay in Go.
package contract

import (
	"errors"
	"fmt"
	"strings"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"

	"github.com/herald-events/herald/platform/apperr"
)

// Dead-letter classes of the consuming door (see consumer.HeaderDLQClass).
const (
	// ClassContract: the event breaks the rules of its schema.
	ClassContract = "contract"
	// ClassRouting: the event's type is not declared for the topic it
	// arrived on.
	ClassRouting = "routing"
)

// Violation is one broken rule.
type Violation struct {
	// Field is the path of the field, as in the API ("items[0].quantity");
	// empty for a rule on the whole message.
	Field string
	// Rule is the rule's id ("int32.gt", "order_created.one_currency").
	Rule string
	// Message says what the rule wants.
	Message string
}

// String reads "<field>: <message> [<rule>]".
func (v Violation) String() string {
	if v.Field == "" {
		return v.Message + " [" + v.Rule + "]"
	}
	return v.Field + ": " + v.Message + " [" + v.Rule + "]"
}

// Error is a message that breaks its contract.
type Error struct {
	// Type is the message's full name.
	Type string
	// Violations are the broken rules, at least one.
	Violations []Violation
}

// Error lists the violations.
func (e *Error) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.String()
	}
	return fmt.Sprintf("%s breaks its contract: %s", e.Type, strings.Join(parts, "; "))
}

// Invalid returns the violations as an apperr invalid-request error, so
// grpcx.Status answers INVALID_ARGUMENT with one field violation each. A
// rule on a whole message is reported under the message's own path, or the
// rule's id at the top level.
func (e *Error) Invalid() error {
	var v apperr.Violations
	for _, x := range e.Violations {
		field := x.Field
		if field == "" {
			field = x.Rule
		}
		v.Add(field, "%s", x.Message)
	}
	return v.Err()
}

// Validator checks messages against the rules of their schemas. The zero
// value is not usable: make one with [New] or [Disabled]. It is safe for
// concurrent use.
type Validator struct {
	v protovalidate.Validator
}

// New returns a validator. It compiles each message type's rules the first
// time it sees the type.
func New() (*Validator, error) {
	v, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("contract validator: %w", err)
	}
	return &Validator{v: v}, nil
}

// Disabled returns a validator that accepts every message: a door with
// validation off (benchmarks compare the two).
func Disabled() *Validator { return &Validator{} }

// Enabled reports whether v checks messages.
func (v *Validator) Enabled() bool { return v != nil && v.v != nil }

// Validate returns nil when msg keeps its rules, an [*Error] when it breaks
// some, and another error when its rules cannot be evaluated (a rule that
// does not compile, for example).
func (v *Validator) Validate(msg proto.Message) error {
	if !v.Enabled() {
		return nil
	}
	err := v.v.Validate(msg)
	if err == nil {
		return nil
	}
	var ve *protovalidate.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("contract of %s: %w", msg.ProtoReflect().Descriptor().FullName(), err)
	}
	out := &Error{Type: string(msg.ProtoReflect().Descriptor().FullName())}
	for _, x := range ve.Violations {
		p := x.Proto
		out.Violations = append(out.Violations, Violation{
			Field: protovalidate.FieldPathString(p.GetField()), Rule: p.GetRuleId(), Message: p.GetMessage(),
		})
	}
	return out
}

// As returns the [*Error] in err's chain.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
