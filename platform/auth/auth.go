// Package auth authenticates and authorizes the callers of herald's gRPC
// front door.
//
// A caller proves who it is with a client certificate (mTLS, see
// [ServerTLS] and [CertPrincipal]) or a bearer JWT verified against a JWKS
// ([Verifier]). Either gives a [Principal]: a subject and its roles. A
// [Policy] says, per full gRPC method name, which [Access] a method needs;
// [Interceptors] enforce it and put the principal in the call's context,
// where services read it with [FromContext] and [CustomerScope].
//
// Failures are apperr errors of kind Unauthenticated (no or bad
// credentials) and PermissionDenied (known caller, not allowed), which
// platform/grpcx maps to gRPC codes. [DevKey] mints tokens for trying the
// roles locally (`herald token`).
package auth

import (
	"context"
	"slices"

	"github.com/herald-events/herald/platform/apperr"
)

// Role is what a caller may do.
type Role string

// The roles herald knows.
const (
	// RoleCustomer may call customer methods, on their own data only: the
	// principal's subject is their customer id.
	RoleCustomer Role = "customer"
	// RoleOperator may call every method, on every customer's data.
	RoleOperator Role = "operator"
)

// knownRole reports whether s names a role herald knows.
func knownRole(s string) (Role, bool) {
	switch r := Role(s); r {
	case RoleCustomer, RoleOperator:
		return r, true
	}
	return "", false
}

// Principal is an authenticated caller.
type Principal struct {
	// Subject names the caller: a customer's id for [RoleCustomer].
	Subject string
	// Roles the caller holds; unknown roles are dropped.
	Roles []Role
	// Via is how the caller was authenticated: "jwt" or "mtls".
	Via string
}

// Has reports whether p holds role r.
func (p Principal) Has(r Role) bool { return slices.Contains(p.Roles, r) }

type principalKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal of the call, if it was authenticated.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// CustomerScope returns the customer id the call is restricted to, and
// true, when the caller is authenticated without the operator role. It
// returns "", false for operators and when authentication is off (herald
// dev, or serve with --insecure-no-auth): such calls see every customer.
func CustomerScope(ctx context.Context) (string, bool) {
	p, ok := FromContext(ctx)
	if !ok || p.Has(RoleOperator) {
		return "", false
	}
	return p.Subject, true
}

// OwnCustomer resolves the customer id named by a request field of a
// customer-scoped call: for a restricted caller an empty field becomes the
// caller's own id and another customer's id is refused with a
// PermissionDenied error naming field; for an unrestricted caller the
// field is returned as given.
func OwnCustomer(ctx context.Context, field, requested string) (string, error) {
	own, restricted := CustomerScope(ctx)
	switch {
	case !restricted:
		return requested, nil
	case requested == "":
		return own, nil
	case requested != own:
		return "", apperr.PermissionDenied("%s must be the authenticated customer's own id", field)
	}
	return own, nil
}
