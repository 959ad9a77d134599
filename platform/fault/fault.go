// Package fault tells a dependency that is down apart from a request or a
// message that is wrong.
//
// A *transient* error means "a dependency (the database, the schema
// registry, the broker) cannot be reached now": the same call is expected to
// work later. Callers wait and retry it without limit; the consumer package
// never dead-letters it and the grpcx package answers UNAVAILABLE, so
// clients retry with the same idempotency key. Everything else is
// *permanent* for the input at hand or not yet classified.
//
// The platform's adapters mark what they know: [Transient] wraps an error,
// and [IsTransient] also recognises the standard library's network errors
// (a refused or reset connection, a dial timeout), so a dependency reached
// through plain HTTP or TCP is classified without extra code.
package fault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
)

// TransientError marks an error as "a dependency is unavailable now".
type TransientError struct {
	// Dependency names what is unavailable: "database", "schema registry",
	// "kafka" and so on.
	Dependency string
	Err        error
	// Conflict: the dependency is up, and refused the work only because
	// concurrent work raced it (see [Conflict]).
	Conflict bool
}

func (e *TransientError) Error() string {
	if e.Conflict {
		return e.Dependency + " conflict: " + e.Err.Error()
	}
	return e.Dependency + " unavailable: " + e.Err.Error()
}

func (e *TransientError) Unwrap() error { return e.Err }

// Transient marks err as transient for dependency. It returns nil for nil,
// and err itself when it is already marked.
func Transient(dependency string, err error) error {
	if err == nil {
		return nil
	}
	var te *TransientError
	if errors.As(err, &te) {
		return err
	}
	return &TransientError{Dependency: dependency, Err: err}
}

// Conflict marks err as a conflict of dependency: the dependency is up,
// and refused the work only because concurrent work raced it (on
// PostgreSQL a deadlock, or a serialization failure), so the same work run
// again at once is expected to succeed. A conflict is transient too, so a
// caller that knows nothing of conflicts waits and retries it as an
// outage; the consumer package runs it again at once instead, a few
// times, before it does ([IsConflict]). It returns nil for nil, and err
// itself when it is already marked transient.
func Conflict(dependency string, err error) error {
	if err == nil {
		return nil
	}
	var te *TransientError
	if errors.As(err, &te) {
		return err
	}
	return &TransientError{Dependency: dependency, Err: err, Conflict: true}
}

// IsConflict reports whether err was marked with [Conflict].
func IsConflict(err error) bool {
	var te *TransientError
	return errors.As(err, &te) && te.Conflict
}

// Transientf formats a new transient error for dependency.
func Transientf(dependency, format string, args ...any) error {
	return &TransientError{Dependency: dependency, Err: fmt.Errorf(format, args...)}
}

// IsTransient reports whether err means that a dependency is unavailable
// now: it was marked with [Transient], or it is a network error of the kind
// an outage causes (connection refused, reset or aborted, a broken pipe, an
// unexpected EOF on a connection, a network timeout).
//
// A cancelled context is not transient: the caller gave up. A deadline
// that expired while waiting for a dependency is, when the error is
// marked; an unmarked [context.DeadlineExceeded] is not, since the caller's
// own budget may have run out.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var te *TransientError
	if errors.As(err, &te) {
		return true
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	for _, errno := range []syscall.Errno{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
		syscall.EPIPE, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ETIMEDOUT} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF)
}

// DependencyOf returns the dependency named by the first [TransientError]
// in err's chain, or "" when there is none.
func DependencyOf(err error) string {
	var te *TransientError
	if errors.As(err, &te) {
		return te.Dependency
	}
	return ""
}
