package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/herald-events/herald/internal/heraldtest"
)

func TestBinaryExitCodes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := heraldtest.Build(t)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"serve"}, 2, "HERALD_KAFKA_BROKERS"},
		{[]string{"serve", "--kafka-brokers", "127.0.0.1:abc", "--schema-registry-url=http://r:8081", "--database-url=sqlite:x"}, 2,
			"--kafka-brokers (HERALD_KAFKA_BROKERS)"},
		{[]string{"dev", "--services=nope"}, 2, `unknown service "nope"`},
		{[]string{"help"}, 0, "herald serve"},
	}
	for _, tc := range cases {
		cmd := exec.Command(bin, tc.args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if code != tc.code || !strings.Contains(string(out), tc.want) {
			t.Errorf("herald %v: exit %d, output %q; want exit %d mentioning %q", tc.args, code, out, tc.code, tc.want)
		}
	}
}

// TestDevBinaryServesAndStopsOnSignal builds the herald binary, runs
// `herald dev` on free ports, checks gRPC health, and sends SIGTERM: the
// process must exit 0 on its own.
func TestDevBinaryServesAndStopsOnSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	p := heraldtest.Start(t, heraldtest.Build(t), []string{"dev", "--data-dir", filepath.Join(dir, "data"),
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0"})
	addr := p.GRPCAddr

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "herald.orders.v1.OrderService"})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v; want SERVING", resp.GetStatus(), err)
	}

	if err := p.Stop(t, 30*time.Second); err != nil {
		t.Fatalf("herald dev exited with %v after SIGTERM, want exit 0", err)
	}
}

// TestDevRegistryAuth runs `herald dev` with the embedded registry's basic
// auth on: the process registers its schemas as the read-write user and
// serves, anonymous callers are refused, and the read-only user may read
// but not register.
func TestDevRegistryAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	regAddr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	p := heraldtest.Start(t, heraldtest.Build(t), []string{"dev", "--data-dir", filepath.Join(dir, "data"),
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0", "--registry-addr", regAddr,
		"--registry-user", "ops", "--registry-password", "rw", "--registry-reader-user", "app", "--registry-reader-password", "ro"})
	defer func() { _ = p.Stop(t, 30*time.Second) }()

	get := func(method, path, body string, auth ...string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+regAddr+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		if len(auth) == 2 {
			req.SetBasicAuth(auth[0], auth[1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := get("GET", "/subjects", ""); st != 401 {
		t.Fatalf("anonymous: %d %s, want 401", st, body)
	}
	if st, body := get("GET", "/subjects", "", "app", "ro"); st != 200 || !strings.Contains(body, "herald.orders.v1-value") {
		t.Fatalf("reader: %d %s, want the subjects herald dev registered", st, body)
	}
	if st, body := get("POST", "/subjects/x-value/versions", `{"schemaType":"PROTOBUF","schema":"syntax = \"proto3\";"}`, "app", "ro"); st != 403 {
		t.Fatalf("reader registers: %d %s, want 403", st, body)
	}
}
