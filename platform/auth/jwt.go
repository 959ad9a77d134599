package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/herald-events/herald/platform/apperr"
)

// JWTConfig configures bearer-token verification.
type JWTConfig struct {
	// JWKS is where the verification keys are: a file path or an
	// http(s):// URL (an OIDC provider's jwks_uri). Required.
	JWKS string
	// Issuer must equal the token's "iss". Required.
	Issuer string
	// Audience must be among the token's "aud". Required.
	Audience string
	// RolesClaim names the claim holding the roles: a string (roles
	// separated by spaces or commas) or an array of strings. Default
	// "roles", falling back to "role" when the token has no "roles".
	RolesClaim string
	// SubjectClaim names the claim holding the subject (a customer's id).
	// Default "sub".
	SubjectClaim string
	// Leeway is the clock skew allowed on "exp", "nbf" and "iat". Default
	// 30s.
	Leeway time.Duration
	// Refresh is how often keys from a URL are fetched again. Default 5m.
	Refresh time.Duration
	// RefetchMin spaces the fetches of a URL (those Refresh asks for and
	// those a token with an unknown key id causes, as after the provider
	// rotated its keys), so that tokens with made-up key ids cannot make
	// herald hammer the provider. Default 30s.
	RefetchMin time.Duration
	// HTTPClient fetches a JWKS URL. Default: a client with a 10s timeout.
	HTTPClient *http.Client
}

// Validate reports the missing or invalid settings.
func (c JWTConfig) Validate() error {
	var errs []error
	if c.JWKS == "" {
		errs = append(errs, errors.New("no JWKS file or URL"))
	}
	if c.Issuer == "" {
		errs = append(errs, errors.New("an issuer is required with a JWKS"))
	}
	if c.Audience == "" {
		errs = append(errs, errors.New("an audience is required with a JWKS"))
	}
	return errors.Join(errs...)
}

func (c *JWTConfig) setDefaults() {
	if c.SubjectClaim == "" {
		c.SubjectClaim = "sub"
	}
	if c.Leeway == 0 {
		c.Leeway = 30 * time.Second
	}
	if c.Refresh <= 0 {
		c.Refresh = 5 * time.Minute
	}
	if c.RefetchMin <= 0 {
		c.RefetchMin = 30 * time.Second
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
}

// isURL reports whether a JWKS setting is a URL rather than a file.
func isURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// Verifier verifies bearer JWTs against a JWKS: signature, "exp"/"nbf",
// issuer and audience, with a kept library (lestrrat-go/jwx).
type Verifier struct {
	cfg JWTConfig

	mu         sync.Mutex
	keys       jwk.Set
	fetched    time.Time // when keys were last fetched from a URL
	tried      time.Time // when a fetch was last tried
	refreshing bool      // a fetch is under way
}

// NewVerifier loads the keys (reads the file or fetches the URL) and
// returns a verifier.
func NewVerifier(ctx context.Context, cfg JWTConfig) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	v := &Verifier{cfg: cfg}
	keys, err := v.load(ctx)
	if err != nil {
		return nil, err
	}
	v.keys, v.fetched, v.tried = keys, time.Now(), time.Now()
	return v, nil
}

// load reads the JWKS file or fetches the URL.
func (v *Verifier) load(ctx context.Context) (jwk.Set, error) {
	if isURL(v.cfg.JWKS) {
		keys, err := jwk.Fetch(ctx, v.cfg.JWKS, jwk.WithHTTPClient(v.cfg.HTTPClient))
		if err != nil {
			return nil, fmt.Errorf("fetch JWKS %s: %w", v.cfg.JWKS, err)
		}
		return keys, nil
	}
	keys, err := jwk.ReadFile(v.cfg.JWKS)
	if err != nil {
		return nil, fmt.Errorf("read JWKS %s: %w", v.cfg.JWKS, err)
	}
	if keys.Len() == 0 {
		return nil, fmt.Errorf("JWKS %s holds no keys", v.cfg.JWKS)
	}
	return keys, nil
}

// keySet returns the keys, fetching them again from a URL when they are
// older than Refresh, or when kidUnknown says a token named a key id the
// set lacks; at most one fetch runs at a time, RefetchMin apart. The
// caller that fetches waits for it, the others go on with the keys they
// have. A failed fetch keeps the old keys.
func (v *Verifier) keySet(ctx context.Context, kidUnknown bool) jwk.Set {
	if !isURL(v.cfg.JWKS) {
		return v.keys // read once, never changed
	}
	v.mu.Lock()
	keys := v.keys
	now := time.Now()
	due := kidUnknown || now.Sub(v.fetched) >= v.cfg.Refresh
	if !due || v.refreshing || now.Sub(v.tried) < v.cfg.RefetchMin {
		v.mu.Unlock()
		return keys
	}
	v.tried, v.refreshing = now, true
	v.mu.Unlock()

	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	fresh, err := v.load(fctx)
	cancel()
	v.mu.Lock()
	defer v.mu.Unlock()
	v.refreshing = false
	if err == nil {
		v.keys, v.fetched = fresh, now
	}
	return v.keys
}

// Verify checks a compact JWT and returns its principal. Every failure is
// an apperr Unauthenticated error.
func (v *Verifier) Verify(ctx context.Context, raw string) (Principal, error) {
	tok, err := v.parse(v.keySet(ctx, false), raw)
	if err != nil && errors.Is(err, jws.VerifyError()) && isURL(v.cfg.JWKS) {
		// Perhaps the provider rotated its keys: fetch them again (rate
		// limited) and try once more.
		if h, herr := jws.Parse([]byte(raw)); herr == nil && len(h.Signatures()) == 1 {
			if kid, ok := h.Signatures()[0].ProtectedHeaders().KeyID(); ok {
				if _, has := v.keySet(ctx, false).LookupKeyID(kid); !has {
					tok, err = v.parse(v.keySet(ctx, true), raw)
				}
			}
		}
	}
	if err != nil {
		return Principal{}, apperr.Unauthenticated("invalid bearer token: %s", reason(err))
	}
	p := Principal{Via: "jwt"}
	if err := tok.Get(v.cfg.SubjectClaim, &p.Subject); err != nil || p.Subject == "" {
		return Principal{}, apperr.Unauthenticated("invalid bearer token: no %q claim", v.cfg.SubjectClaim)
	}
	p.Roles = v.roles(tok)
	return p, nil
}

// reason says in a few words why a token was refused; the library's own
// message is long and names its internals.
func reason(err error) string {
	switch {
	case errors.Is(err, jwt.TokenExpiredError()):
		return "expired"
	case errors.Is(err, jwt.TokenNotYetValidError()):
		return "not valid yet"
	case errors.Is(err, jwt.InvalidIssuerError()):
		return "wrong issuer"
	case errors.Is(err, jwt.InvalidAudienceError()):
		return "wrong audience"
	case errors.Is(err, jwt.MissingRequiredClaimError()):
		return "a required claim (exp) is missing"
	case errors.Is(err, jws.VerifyError()), errors.Is(err, jws.VerificationError()):
		return "signature does not verify against the configured keys"
	}
	return "malformed"
}

func (v *Verifier) parse(keys jwk.Set, raw string) (jwt.Token, error) {
	return jwt.ParseString(raw,
		jwt.WithKeySet(keys, jws.WithInferAlgorithmFromKey(true)),
		jwt.WithValidate(true),
		jwt.WithIssuer(v.cfg.Issuer),
		jwt.WithAudience(v.cfg.Audience),
		jwt.WithAcceptableSkew(v.cfg.Leeway),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
	)
}

// roles reads the roles claim: an array of strings, or one string of
// roles separated by spaces or commas. Unknown roles are dropped.
func (v *Verifier) roles(tok jwt.Token) []Role {
	names := []string{v.cfg.RolesClaim}
	if v.cfg.RolesClaim == "" {
		names = []string{"roles", "role"}
	}
	for _, name := range names {
		if !tok.Has(name) {
			continue
		}
		var raw any
		if err := tok.Get(name, &raw); err != nil {
			return nil
		}
		var words []string
		switch x := raw.(type) {
		case string:
			words = strings.FieldsFunc(x, func(r rune) bool { return r == ' ' || r == ',' })
		case []any:
			for _, e := range x {
				if s, ok := e.(string); ok {
					words = append(words, s)
				}
			}
		case []string:
			words = x
		}
		var out []Role
		for _, w := range words {
			if r, ok := knownRole(w); ok {
				out = append(out, r)
			}
		}
		return out
	}
	return nil
}
