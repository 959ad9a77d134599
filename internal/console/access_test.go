package console_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/auth"
)

// TestConsoleAccess checks who may read and write with authentication on
// (bearer tokens verified against herald dev's JWKS) and off.
func TestConsoleAccess(t *testing.T) {
	dir := t.TempDir()
	key, err := auth.LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := server.Start(ctx, server.Config{
		DataDir: dir, Embedded: true, Console: true, Services: []string{"orders", "inventory"},
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
		Auth:   server.AuthConfig{JWKS: key.JWKSPath(), JWTIssuer: auth.DevIssuer, JWTAudience: auth.DevAudience},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	mint := func(role auth.Role) string {
		tok, err := key.Mint(auth.Claims{Subject: "sam", Roles: []auth.Role{role}})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	base := "http://" + p.HTTPAddr() + "/console/"
	do := func(method, path, token string, form url.Values, hdr map[string]string) (int, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, base+path, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	operator := mint(auth.RoleOperator)
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"not a token", "nonsense", http.StatusUnauthorized},
		{"customer", mint(auth.RoleCustomer), http.StatusForbidden},
		{"operator", operator, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"orders", "topics", "dlq", "schemas", "services"} {
				if code, body := do("GET", path, tc.token, nil, nil); code != tc.want {
					t.Errorf("GET %s: %d, want %d\n%s", path, code, tc.want, body)
				}
			}
		})
	}
	// The only write: it needs the form's CSRF token, which is the
	// session's, and a same-site request.
	replay := url.Values{"topic": {"herald.orders.v1.dlq"}, "ref": {"0@0"}}
	if code, _ := do("POST", "dlq/replay", operator, replay, nil); code != http.StatusForbidden {
		t.Errorf("replay without the CSRF token: %d, want 403", code)
	}
	// A dead letter, so that the page has a replay form.
	poison(t, p.Brokers(), "access-poison")
	var page, rest string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, page = do("GET", "dlq", operator, nil, nil)
		var ok bool
		if _, rest, ok = strings.Cut(page, `name="csrf" value="`); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter to replay:\n%s", page)
		}
	}
	csrf, _, _ := strings.Cut(rest, `"`)
	replay.Set("csrf", csrf)
	if code, _ := do("POST", "dlq/replay", operator, replay, map[string]string{"Sec-Fetch-Site": "cross-site"}); code != http.StatusForbidden {
		t.Errorf("cross-site replay: %d, want 403", code)
	}
	if code, _ := do("POST", "dlq/replay", operator, replay, map[string]string{"Origin": "http://evil.example"}); code != http.StatusForbidden {
		t.Errorf("replay from another origin: %d, want 403", code)
	}
	// Without confirm=yes the replay only asks for confirmation.
	if code, body := do("POST", "dlq/replay", operator, replay, map[string]string{"Origin": "http://" + p.HTTPAddr()}); code != http.StatusOK ||
		!strings.Contains(body, `name="confirm" value="yes"`) {
		t.Errorf("same-site replay with the token: %d, want a confirmation\n%s", code, body)
	}

	// The login form sets a cookie that later pages accept.
	jar, _ := cookiejar.New(nil)
	cl := &http.Client{Jar: jar}
	resp, err := cl.PostForm(base+"login", url.Values{"token": {operator}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "Sign out") {
		t.Fatalf("after login: %d\n%s", resp.StatusCode, b)
	}
}
