package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-events/herald/internal/heraldtest"
	"github.com/herald-events/herald/platform/auth"
)

func TestBenchUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--method=ping"}, `method "ping"`},
		{[]string{"--follow=stream"}, `follow "stream"`},
		{[]string{"--concurrency=0"}, "--concurrency 0"},
		{[]string{"--rate=-1"}, "rate -1"},
		{[]string{"--orders=-3"}, "count -3"},
		{[]string{"--skus=APPLE=0"}, "at least 1"},
		{[]string{"--skus=APPLE=1", "--out-of-stock=PEAR"}, `"PEAR" is not in the mix`},
		{[]string{"--follow-timeout=0s"}, "--follow-timeout"},
		{[]string{"--log-level=loud"}, "--log-level"},
		{[]string{"--tls-ca=/does/not/exist"}, "--tls-ca"},
		{[]string{"--token-file=/does/not/exist"}, "--token-file"},
		{[]string{"--token=a", "--token-file=/does/not/exist"}, "give one"},
		{[]string{"--token=a b"}, "token: must not contain"},
		{[]string{"extra"}, "unexpected arguments"},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append([]string{"bench"}, tc.args...), func(string) string { return "" }, &stdout, &stderr)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench %v = %v, want a usage error mentioning %q", tc.args, err, tc.want)
		}
	}
}

func TestBenchSKUsDefaultOutOfStock(t *testing.T) {
	skus, err := benchSKUs("APPLE=2,OUTOFSTOCK=1", nil)
	if err != nil || len(skus) != 2 || skus[0].OutOfStock || !skus[1].OutOfStock {
		t.Fatalf("benchSKUs = %v, %v", skus, err)
	}
	if skus, err = benchSKUs("APPLE=2,OUTOFSTOCK=1", []string{"none"}); err != nil || skus[1].OutOfStock {
		t.Fatalf("benchSKUs none = %v, %v", skus, err)
	}
	if skus, err = benchSKUs("APPLE=2", nil); err != nil || skus[0].OutOfStock {
		t.Fatalf("benchSKUs without OUTOFSTOCK = %v, %v", skus, err)
	}
}

// TestBenchBinaryAgainstDev runs `herald bench --orders 100 --json` against
// a `herald dev` process and reads the summary.
func TestBenchBinaryAgainstDev(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := heraldtest.Build(t)
	dir := t.TempDir()
	p := heraldtest.Start(t, bin, []string{"dev", "--data-dir", filepath.Join(dir, "data"),
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0"})

	cmd := exec.Command(bin, "bench", "--target", p.GRPCAddr, "--orders", "100", "--concurrency", "8", "--seed", "5", "--json")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("herald bench: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	var s struct {
		Method       string         `json:"method"`
		Seed         uint64         `json:"seed"`
		Sent         int            `json:"sent"`
		Accepted     int            `json:"accepted"`
		NotAccepted  int            `json:"not_accepted"`
		Completed    int            `json:"completed"`
		NotCompleted int            `json:"not_completed"`
		ByStatus     map[string]int `json:"by_status"`
		AcceptedPS   float64        `json:"accepted_per_s"`
		Accept       struct {
			Count int     `json:"count"`
			P50   float64 `json:"p50_ms"`
			P99   float64 `json:"p99_ms"`
		} `json:"accept_latency"`
		Final struct {
			Count int     `json:"count"`
			P99   float64 `json:"p99_ms"`
		} `json:"final_latency"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &s); err != nil {
		t.Fatalf("summary is not JSON: %v\n%s", err, stdout.String())
	}
	if s.Method != "order" || s.Seed != 5 || s.Sent != 100 || s.Accepted != 100 || s.NotAccepted != 0 || s.Completed != 100 || s.NotCompleted != 0 {
		t.Fatalf("summary %+v: want 100 orders sent, accepted and completed", s)
	}
	if s.ByStatus["CONFIRMED"]+s.ByStatus["REJECTED"] != 100 || s.ByStatus["REJECTED"] == 0 {
		t.Fatalf("by status %v: want CONFIRMED and REJECTED adding up to 100", s.ByStatus)
	}
	if s.Accept.Count != 100 || s.Final.Count != 100 || s.Accept.P50 <= 0 || s.Final.P99 <= 0 || s.AcceptedPS <= 0 {
		t.Fatalf("latencies %+v %+v, rate %g", s.Accept, s.Final, s.AcceptedPS)
	}
}

// TestBenchWithToken runs `herald bench` against a `herald dev
// --grpc-jwks` that checks bearer tokens: an operator's token, from a file
// or from HERALD_TOKEN, over plaintext loopback, places and follows the
// orders; without a token, or with a customer's, the stock set-up
// (SetStock, an operator's call) is refused and the bench fails.
func TestBenchWithToken(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := heraldtest.Build(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	op := heraldToken(t, bin, "--data-dir", data, "--role", "operator")
	customer := heraldToken(t, bin, "--data-dir", data, "--role", "customer", "--subject", "c-1")
	p := heraldtest.Start(t, bin, []string{"dev", "--data-dir", data, "--grpc-jwks", filepath.Join(data, "auth", auth.DevJWKSFile),
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0"})
	tokenFile := filepath.Join(dir, "operator.jwt")
	if err := os.WriteFile(tokenFile, []byte(op+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	bench := func(env []string, args ...string) (string, string, error) {
		cmd := exec.Command(bin, append([]string{"bench", "--target", p.GRPCAddr, "--orders", "30", "--concurrency", "4", "--json"}, args...)...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	for name, tc := range map[string]struct {
		env  []string
		args []string
	}{
		"--token-file": {args: []string{"--token-file", tokenFile}},
		"HERALD_TOKEN": {env: []string{"HERALD_TOKEN=" + op}},
	} {
		t.Run(name, func(t *testing.T) {
			stdout, stderr, err := bench(tc.env, tc.args...)
			if err != nil {
				t.Fatalf("herald bench: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
			}
			var s struct {
				Accepted  int            `json:"accepted"`
				Completed int            `json:"completed"`
				Errors    map[string]int `json:"errors"`
			}
			if err := json.Unmarshal([]byte(stdout), &s); err != nil {
				t.Fatalf("summary is not JSON: %v\n%s", err, stdout)
			}
			if s.Accepted != 30 || s.Completed != 30 || len(s.Errors) != 0 {
				t.Fatalf("accepted %d completed %d errors %v: want 30, 30, none", s.Accepted, s.Completed, s.Errors)
			}
		})
	}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no token":         {want: "Unauthenticated"},
		"a customer token": {args: []string{"--token", customer}, want: "PermissionDenied"},
	} {
		t.Run(name, func(t *testing.T) {
			_, stderr, err := bench(nil, tc.args...)
			if err == nil || !strings.Contains(stderr, "set stock") || !strings.Contains(stderr, tc.want) {
				t.Fatalf("herald bench = %v, stderr:\n%s\nwant the stock set-up refused with %s", err, stderr, tc.want)
			}
		})
	}
}
