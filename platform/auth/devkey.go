package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// The issuer and audience of tokens [DevKey] mints by default, which
// `herald dev` expects by default.
const (
	DevIssuer   = "herald-dev"
	DevAudience = "herald"
)

// File names of a [DevKey] in its directory.
const (
	// DevKeyFile holds the private signing key (mode 0600).
	DevKeyFile = "token-key.json"
	// DevJWKSFile holds its public half as a JWKS, for --grpc-jwks.
	DevJWKSFile = "jwks.json"
)

// DevKey is a local ES256 signing key for development tokens, kept in a
// directory with its public JWKS beside it. It is no identity provider:
// anyone who can read the directory can mint any role.
type DevKey struct {
	key  jwk.Key
	dir  string
	jwks string
}

// LoadOrCreateDevKey reads the key in dir, or generates one (P-256) and
// writes it with its JWKS when dir has none.
func LoadOrCreateDevKey(dir string) (*DevKey, error) {
	keyPath := filepath.Join(dir, DevKeyFile)
	d := &DevKey{dir: dir, jwks: filepath.Join(dir, DevJWKSFile)}
	raw, err := os.ReadFile(keyPath)
	switch {
	case err == nil:
		if d.key, err = jwk.ParseKey(raw); err != nil {
			return nil, fmt.Errorf("dev token key %s: %w", keyPath, err)
		}
		if _, err := os.Stat(d.jwks); err == nil {
			return d, nil
		}
		return d, d.writeJWKS() // the JWKS was removed: write it again
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("dev token key: %w", err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate dev token key: %w", err)
	}
	if d.key, err = jwk.Import(priv); err != nil {
		return nil, fmt.Errorf("dev token key: %w", err)
	}
	if err := jwk.AssignKeyID(d.key); err != nil {
		return nil, fmt.Errorf("dev token key id: %w", err)
	}
	if err := d.key.Set(jwk.AlgorithmKey, jwa.ES256()); err != nil {
		return nil, err
	}
	if err := d.key.Set(jwk.KeyUsageKey, "sig"); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dev token key: %w", err)
	}
	b, err := json.Marshal(d.key)
	if err != nil {
		return nil, err
	}
	if err := writeFileNew(keyPath, b, 0o600); err != nil {
		return nil, err
	}
	return d, d.writeJWKS()
}

// writeFileNew writes a file that must not exist yet (so two first uses at
// once do not end with different keys on disk).
func writeFileNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

func (d *DevKey) writeJWKS() error {
	pub, err := d.key.PublicKey()
	if err != nil {
		return fmt.Errorf("dev token key: %w", err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return err
	}
	b, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(d.jwks, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", d.jwks, err)
	}
	return nil
}

// JWKSPath is the file holding the key's public JWKS.
func (d *DevKey) JWKSPath() string { return d.jwks }

// Claims are what a minted token says.
type Claims struct {
	// Subject is "sub": a customer's id for the customer role.
	Subject string
	// Roles go to the "roles" claim, as an array.
	Roles []Role
	// TTL is how long the token is valid. Default 1h.
	TTL time.Duration
	// Issuer and Audience default to [DevIssuer] and [DevAudience].
	Issuer, Audience string
	// Now is the issue time; default time.Now (a test may mint expired
	// tokens).
	Now time.Time
}

// Mint signs a token with the dev key.
func (d *DevKey) Mint(c Claims) (string, error) {
	if c.TTL <= 0 {
		c.TTL = time.Hour
	}
	if c.Issuer == "" {
		c.Issuer = DevIssuer
	}
	if c.Audience == "" {
		c.Audience = DevAudience
	}
	if c.Now.IsZero() {
		c.Now = time.Now()
	}
	roles := make([]string, len(c.Roles))
	for i, r := range c.Roles {
		roles[i] = string(r)
	}
	tok, err := jwt.NewBuilder().Issuer(c.Issuer).Audience([]string{c.Audience}).Subject(c.Subject).
		IssuedAt(c.Now).NotBefore(c.Now).Expiration(c.Now.Add(c.TTL)).Claim("roles", roles).Build()
	if err != nil {
		return "", fmt.Errorf("build token: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), d.key))
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return string(signed), nil
}
