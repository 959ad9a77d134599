package main

import (
	"context"
	"errors"
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
