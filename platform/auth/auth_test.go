package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herald-events/herald/platform/apperr"
	"github.com/herald-events/herald/platform/auth"
	"github.com/herald-events/herald/platform/grpcx"
)

func devKey(t *testing.T) *auth.DevKey {
	t.Helper()
	k, err := auth.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mint(t *testing.T, k *auth.DevKey, c auth.Claims) string {
	t.Helper()
	tok, err := k.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func verifier(t *testing.T, jwks string) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(context.Background(), auth.JWTConfig{JWKS: jwks, Issuer: auth.DevIssuer, Audience: auth.DevAudience})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerify(t *testing.T) {
	k := devKey(t)
	other := devKey(t)
	v := verifier(t, k.JWKSPath())
	cases := []struct {
		name    string
		tok     string
		subject string
		roles   []auth.Role
	}{
		{"customer", mint(t, k, auth.Claims{Subject: "c-1", Roles: []auth.Role{auth.RoleCustomer}}), "c-1", []auth.Role{auth.RoleCustomer}},
		{"operator and an unknown role", mint(t, k, auth.Claims{Subject: "ops", Roles: []auth.Role{"admin", auth.RoleOperator}}), "ops", []auth.Role{auth.RoleOperator}},
		{"expired", mint(t, k, auth.Claims{Subject: "c-1", TTL: time.Minute, Now: time.Now().Add(-time.Hour)}), "", nil},
		{"not yet valid", mint(t, k, auth.Claims{Subject: "c-1", Now: time.Now().Add(time.Hour)}), "", nil},
		{"wrongly signed", mint(t, other, auth.Claims{Subject: "c-1"}), "", nil},
		{"wrong audience", mint(t, k, auth.Claims{Subject: "c-1", Audience: "someone-else"}), "", nil},
		{"wrong issuer", mint(t, k, auth.Claims{Subject: "c-1", Issuer: "https://evil.example"}), "", nil},
		{"no subject", mint(t, k, auth.Claims{}), "", nil},
		{"garbage", "not.a.token", "", nil},
		{"unsigned", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJjLTEiLCJpc3MiOiJoZXJhbGQtZGV2IiwiYXVkIjoiaGVyYWxkIiwiZXhwIjo0MTAyNDQ0ODAwfQ.", "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), tc.tok)
			if tc.subject == "" {
				if ae, ok := apperr.As(err); !ok || ae.Kind != apperr.KindUnauthenticated {
					t.Fatalf("Verify = %+v, %v; want an Unauthenticated error", p, err)
				}
				return
			}
			if err != nil || p.Subject != tc.subject || len(p.Roles) != len(tc.roles) || (len(p.Roles) > 0 && p.Roles[0] != tc.roles[0]) {
				t.Fatalf("Verify = %+v, %v; want subject %s roles %v", p, err, tc.subject, tc.roles)
			}
		})
	}
}

func TestVerifierConfig(t *testing.T) {
	if _, err := auth.NewVerifier(context.Background(), auth.JWTConfig{JWKS: "x.json"}); err == nil {
		t.Fatal("a JWKS without issuer and audience was accepted")
	}
	if _, err := auth.NewVerifier(context.Background(), auth.JWTConfig{JWKS: filepath.Join(t.TempDir(), "none.json"), Issuer: "i", Audience: "a"}); err == nil {
		t.Fatal("a missing JWKS file was accepted")
	}
}

// TestVerifyJWKSURL serves the JWKS over HTTP, as an OIDC provider does,
// and rotates the key: a token signed by the new key is accepted after
// one more fetch.
func TestVerifyJWKSURL(t *testing.T) {
	first, second := devKey(t), devKey(t)
	var current atomic.Pointer[string]
	p := first.JWKSPath()
	current.Store(&p)
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		http.ServeFile(w, r, *current.Load())
	}))
	t.Cleanup(srv.Close)
	const refetchMin = 300 * time.Millisecond
	v, err := auth.NewVerifier(context.Background(), auth.JWTConfig{JWKS: srv.URL + "/jwks.json", Issuer: auth.DevIssuer,
		Audience: auth.DevAudience, RefetchMin: refetchMin})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), mint(t, first, auth.Claims{Subject: "c-1"})); err != nil {
		t.Fatalf("token of the served key: %v", err)
	}
	p2 := second.JWKSPath()
	current.Store(&p2)
	rotated := mint(t, second, auth.Claims{Subject: "c-1"})
	for range 3 {
		if _, err := v.Verify(context.Background(), rotated); err == nil {
			t.Fatal("a token of a key fetched too recently to refetch verified")
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d fetches; unknown key ids within RefetchMin of the last fetch must not fetch again", n)
	}
	time.Sleep(refetchMin)
	if _, err := v.Verify(context.Background(), rotated); err != nil {
		t.Fatalf("a token of the rotated key, after RefetchMin: %v", err)
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
}

// testPKI is a CA and certificates signed by it, written as PEM files.
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	serial int64
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), ca: ca, caKey: key, serial: 1}
	writePEM(t, filepath.Join(p.dir, "ca.pem"), "CERTIFICATE", der)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue writes name.pem and name-key.pem: a server certificate for
// 127.0.0.1 or a client certificate with cn and ou.
func (p *testPKI) issue(t *testing.T, name, cn string, ou []string, server bool) (cert, key string) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn, OrganizationalUnit: ou},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &k.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(k)
	cert, key = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	writePEM(t, cert, "CERTIFICATE", der)
	writePEM(t, key, "PRIVATE KEY", kder)
	return cert, key
}

// TestInterceptors runs a real gRPC server with mTLS and bearer tokens and
// a policy over the health service: Check for operators, List for
// customers, Watch public, anything else unknown.
func TestInterceptors(t *testing.T) {
	pki := newPKI(t)
	srvCert, srvKey := pki.issue(t, "server", "herald", nil, true)
	tlsCfg, err := auth.ServerTLS(srvCert, srvKey, filepath.Join(pki.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	k := devKey(t)
	a := &auth.Authenticator{JWT: verifier(t, k.JWKSPath()), MTLS: true}
	policy := auth.Policy{
		healthpb.Health_Check_FullMethodName: auth.Operator,
		healthpb.Health_List_FullMethodName:  auth.Customer,
	}
	log := slog.New(slog.DiscardHandler)
	unary, stream := auth.Interceptors(a, policy, log)
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)),
		grpc.ChainUnaryInterceptor(grpcx.UnaryInterceptor(log, nil), unary), grpc.ChainStreamInterceptor(grpcx.StreamInterceptor(log), stream))
	healthpb.RegisterHealthServer(s, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)

	roots := x509.NewCertPool()
	roots.AddCert(pki.ca)
	dial := func(t *testing.T, cert, key string) healthpb.HealthClient {
		cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if cert != "" {
			c, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{c}
		}
		conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return healthpb.NewHealthClient(conn)
	}
	opCert, opKey := pki.issue(t, "op", "alice", []string{"operator"}, false)
	custCert, custKey := pki.issue(t, "cust", "c-1", []string{"customer"}, false)
	noRoleCert, noRoleKey := pki.issue(t, "norole", "someone", []string{"shop", "admin"}, false)
	call := func(c healthpb.HealthClient, token string) (check, list codes.Code) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		}
		_, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
		_, lerr := c.List(ctx, &healthpb.HealthListRequest{})
		return status.Code(err), status.Code(lerr)
	}
	t.Run("operator certificate", func(t *testing.T) {
		if c, l := call(dial(t, opCert, opKey), ""); c != codes.OK || l != codes.OK {
			t.Fatalf("Check %v, List %v; want OK, OK", c, l)
		}
	})
	t.Run("customer certificate", func(t *testing.T) {
		if c, l := call(dial(t, custCert, custKey), ""); c != codes.PermissionDenied || l != codes.OK {
			t.Fatalf("Check %v, List %v; want PermissionDenied, OK", c, l)
		}
	})
	t.Run("certificate without a role", func(t *testing.T) {
		if c, l := call(dial(t, noRoleCert, noRoleKey), ""); c != codes.PermissionDenied || l != codes.PermissionDenied {
			t.Fatalf("Check %v, List %v; want PermissionDenied, PermissionDenied", c, l)
		}
	})
	t.Run("bearer token decides over the certificate", func(t *testing.T) {
		cust := mint(t, k, auth.Claims{Subject: "c-1", Roles: []auth.Role{auth.RoleCustomer}})
		if c, l := call(dial(t, opCert, opKey), cust); c != codes.PermissionDenied || l != codes.OK {
			t.Fatalf("Check %v, List %v; want PermissionDenied, OK", c, l)
		}
		expired := mint(t, k, auth.Claims{Subject: "ops", Roles: []auth.Role{auth.RoleOperator}, Now: time.Now().Add(-2 * time.Hour)})
		if c, l := call(dial(t, opCert, opKey), expired); c != codes.Unauthenticated || l != codes.Unauthenticated {
			t.Fatalf("Check %v, List %v with an expired token; want Unauthenticated", c, l)
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		if c, _ := call(dial(t, "", ""), ""); c != codes.Unavailable {
			t.Fatalf("Check without a client certificate: %v; want the handshake to fail (Unavailable)", c)
		}
	})
	t.Run("unknown and public methods", func(t *testing.T) {
		c := dial(t, opCert, opKey)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = w.Recv()
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("Watch (not in the policy) = %v; want PermissionDenied", err)
		}
	})
}

func TestOwnCustomer(t *testing.T) {
	cust := auth.NewContext(context.Background(), auth.Principal{Subject: "c-1", Roles: []auth.Role{auth.RoleCustomer}})
	op := auth.NewContext(context.Background(), auth.Principal{Subject: "ops", Roles: []auth.Role{auth.RoleOperator}})
	cases := []struct {
		name      string
		ctx       context.Context
		requested string
		want      string
		denied    bool
	}{
		{"customer, empty", cust, "", "c-1", false},
		{"customer, own", cust, "c-1", "c-1", false},
		{"customer, another", cust, "c-2", "", true},
		{"operator, another", op, "c-2", "c-2", false},
		{"operator, all", op, "", "", false},
		{"no auth", context.Background(), "c-2", "c-2", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := auth.OwnCustomer(tc.ctx, "customer_id", tc.requested)
			ae, isErr := apperr.As(err)
			if tc.denied != (isErr && ae.Kind == apperr.KindPermissionDenied) || got != tc.want {
				t.Fatalf("OwnCustomer = %q, %v; want %q, denied %v", got, err, tc.want, tc.denied)
			}
		})
	}
}
