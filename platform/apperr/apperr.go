// Package apperr defines the typed errors that services return for the
// outcomes a caller must be able to tell apart. The grpcx package maps them
// to gRPC status codes, in one place.
package apperr

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Kind classifies an [Error].
type Kind int

// Error kinds.
const (
	// KindInvalid: the request is malformed; see the field violations.
	KindInvalid Kind = iota + 1
	// KindNotFound: the named entity does not exist.
	KindNotFound
	// KindAlreadyExists: the request conflicts with an existing entity,
	// e.g. an idempotency key reused with a different body.
	KindAlreadyExists
	// KindFailedPrecondition: the entity is not in a state that allows the
	// operation, e.g. cancelling a rejected order.
	KindFailedPrecondition
	// KindUnauthenticated: the caller gave no credentials, or credentials
	// that do not verify (expired, wrongly signed, another audience).
	KindUnauthenticated
	// KindPermissionDenied: the caller is known but may not do this, e.g.
	// a customer calling an operator method or naming another customer.
	KindPermissionDenied
	// KindResourceExhausted: the service is at a limit it sets itself,
	// e.g. the orders still waiting for the saga; the same request may
	// succeed later.
	KindResourceExhausted
)

// FieldViolation names one bad field of a request, with a path such as
// "items[0].quantity".
type FieldViolation struct {
	Field       string
	Description string
}

// Error is a classified application error.
type Error struct {
	Kind       Kind
	Message    string
	Violations []FieldViolation
	// RetryDelay, for KindResourceExhausted, is how long the caller should
	// wait before it tries again; 0: the caller decides.
	RetryDelay time.Duration
}

func (e *Error) Error() string {
	if len(e.Violations) == 0 {
		return e.Message
	}
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Description
	}
	return e.Message + ": " + strings.Join(parts, "; ")
}

// As returns the [Error] in err's chain.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// NotFound returns a [KindNotFound] error.
func NotFound(format string, args ...any) error {
	return &Error{Kind: KindNotFound, Message: fmt.Sprintf(format, args...)}
}

// AlreadyExists returns a [KindAlreadyExists] error.
func AlreadyExists(format string, args ...any) error {
	return &Error{Kind: KindAlreadyExists, Message: fmt.Sprintf(format, args...)}
}

// FailedPrecondition returns a [KindFailedPrecondition] error.
func FailedPrecondition(format string, args ...any) error {
	return &Error{Kind: KindFailedPrecondition, Message: fmt.Sprintf(format, args...)}
}

// Unauthenticated returns a [KindUnauthenticated] error.
func Unauthenticated(format string, args ...any) error {
	return &Error{Kind: KindUnauthenticated, Message: fmt.Sprintf(format, args...)}
}

// ResourceExhausted returns a [KindResourceExhausted] error that asks the
// caller to wait retryDelay (0: as it likes) before trying again.
func ResourceExhausted(retryDelay time.Duration, format string, args ...any) error {
	return &Error{Kind: KindResourceExhausted, Message: fmt.Sprintf(format, args...), RetryDelay: retryDelay}
}

// PermissionDenied returns a [KindPermissionDenied] error.
func PermissionDenied(format string, args ...any) error {
	return &Error{Kind: KindPermissionDenied, Message: fmt.Sprintf(format, args...)}
}

// Violations collects field violations of one request.
type Violations []FieldViolation

// Add records a violation of field.
func (v *Violations) Add(field, format string, args ...any) {
	*v = append(*v, FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// Err returns a [KindInvalid] error listing the violations, or nil when
// there are none.
func (v Violations) Err() error {
	if len(v) == 0 {
		return nil
	}
	return &Error{Kind: KindInvalid, Message: "invalid request", Violations: v}
}
