package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/herald-events/herald/platform/auth"
)

// devKeyDir is where, under the dev data directory, `herald token` keeps
// its signing key and JWKS.
const devKeyDir = "auth"

// runToken mints a development JWT from a local key, generated on first
// use under <data-dir>/auth with its JWKS beside it.
func runToken(_ context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("herald token", stderr)
	var (
		dataDir, role, subject string
		issuer, audience       string
		ttl                    time.Duration
	)
	f.fs.StringVar(&dataDir, "data-dir", ".herald", "herald dev's data directory; the key is kept in its auth/ folder")
	f.fs.StringVar(&role, "role", "customer", "role of the token: customer or operator")
	f.fs.StringVar(&subject, "subject", "", "sub claim: the customer id (required for --role customer; default \"operator\" for operators)")
	f.fs.DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	f.fs.StringVar(&issuer, "issuer", auth.DevIssuer, "iss claim")
	f.fs.StringVar(&audience, "audience", auth.DevAudience, "aud claim")
	f.fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: herald token [flags]\n\nPrints a development JWT for grpcurl -H \"authorization: Bearer $(herald token ...)\".\n"+
			"The signing key is made on first use; start herald with --grpc-jwks=<data-dir>/auth/%s to accept its tokens.\n\n", auth.DevJWKSFile)
		f.fs.PrintDefaults()
	}
	if err := f.parse(args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &usageError{err}
	}
	var r auth.Role
	switch role {
	case string(auth.RoleCustomer):
		r = auth.RoleCustomer
		if subject == "" {
			return &usageError{errors.New("--role customer needs --subject <customer id>")}
		}
	case string(auth.RoleOperator):
		r = auth.RoleOperator
		if subject == "" {
			subject = "operator"
		}
	default:
		return &usageError{fmt.Errorf("--role %q: want customer or operator", role)}
	}
	if ttl <= 0 {
		return &usageError{fmt.Errorf("--ttl %s: must be positive", ttl)}
	}
	dir := filepath.Join(dataDir, devKeyDir)
	_, statErr := os.Stat(filepath.Join(dir, auth.DevKeyFile))
	key, err := auth.LoadOrCreateDevKey(dir)
	if err != nil {
		return err
	}
	if statErr != nil {
		fmt.Fprintf(stderr, "herald token: created a signing key in %s; start herald with --grpc-jwks=%s to accept its tokens\n",
			dir, key.JWKSPath())
	}
	tok, err := key.Mint(auth.Claims{Subject: subject, Roles: []auth.Role{r}, TTL: ttl, Issuer: issuer, Audience: audience})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
