package auth

import (
	"context"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/herald-events/herald/platform/apperr"
)

// Authenticator finds the principal of a gRPC call.
type Authenticator struct {
	// JWT verifies bearer tokens; nil when tokens are not accepted.
	JWT *Verifier
	// MTLS accepts verified client certificates as credentials.
	MTLS bool
}

// Authenticate returns the principal of the call in ctx. A bearer token in
// the "authorization" metadata, when present, decides: a token that does
// not verify fails even on a connection with a client certificate.
// Without a token, a verified client certificate does. Every failure is
// an apperr Unauthenticated error.
func (a *Authenticator) Authenticate(ctx context.Context) (Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if vals := md.Get("authorization"); len(vals) > 0 {
		if a.JWT == nil {
			return Principal{}, apperr.Unauthenticated("bearer tokens are not accepted here (no JWKS configured)")
		}
		if len(vals) > 1 {
			return Principal{}, apperr.Unauthenticated("more than one authorization header")
		}
		scheme, tok, ok := strings.Cut(vals[0], " ")
		if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(tok) == "" {
			return Principal{}, apperr.Unauthenticated(`authorization must be "Bearer <token>"`)
		}
		return a.JWT.Verify(ctx, strings.TrimSpace(tok))
	}
	if a.MTLS {
		if pr, ok := peer.FromContext(ctx); ok {
			if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
				return CertPrincipal(ti.State.VerifiedChains[0][0]), nil
			}
		}
	}
	return Principal{}, apperr.Unauthenticated("no credentials: send a client certificate or an authorization: Bearer token")
}

// authorize authenticates the call of method and checks it against the
// policy, returning the context carrying the principal.
func (a *Authenticator) authorize(ctx context.Context, log *slog.Logger, policy Policy, method string) (context.Context, error) {
	need, known := policy[method]
	if !known {
		return nil, apperr.PermissionDenied("method %s is not in the access policy", method)
	}
	if need == Public {
		return ctx, nil
	}
	p, err := a.Authenticate(ctx)
	if err != nil {
		log.DebugContext(ctx, "unauthenticated call", "method", method, "err", err)
		return nil, err
	}
	if !allows(need, p) {
		log.InfoContext(ctx, "call denied", "method", method, "subject", p.Subject, "roles", p.Roles, "needs", need.String())
		return nil, apperr.PermissionDenied("%s needs the %s role", method, need)
	}
	return NewContext(ctx, p), nil
}

// Interceptors enforce policy on every call: a method not in policy is
// denied, a public one passes, any other needs a principal from a (the
// caller's roles checked against the method's [Access]), which the call's
// context then carries ([FromContext]). Errors are apperr kinds: install
// them after an interceptor that maps errors to gRPC codes.
func Interceptors(a *Authenticator, policy Policy, log *slog.Logger) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.authorize(ctx, log, policy, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.authorize(ss.Context(), log, policy, info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
	}
	return unary, stream
}

// contextStream is a server stream with the principal in its context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }
