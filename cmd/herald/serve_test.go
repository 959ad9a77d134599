package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// TestServeWrongRegistryPath runs `herald serve` against an HTTP server
// that is no Confluent-API registry (as Apicurio without /apis/ccompat/v7):
// exit code 2 at once, naming the setting and the path Apicurio needs.
func TestServeWrongRegistryPath(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	notRegistry := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "404 page not found", http.StatusNotFound)
	}))
	t.Cleanup(notRegistry.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	begin := time.Now()
	err = run(ctx, []string{"serve", "--kafka-brokers=" + cluster.ListenAddrs()[0], "--schema-registry-url=" + notRegistry.URL,
		"--database-url=sqlite:" + filepath.Join(t.TempDir(), "db"), "--grpc-addr=127.0.0.1:0", "--http-addr=", "--insecure-no-auth",
		"--startup-timeout=20s"}, func(string) string { return "" }, &out, &errOut)
	var ue *usageError
	if !errors.As(err, &ue) {
		t.Fatalf("run = %v; want a usage error (exit code 2)\n%s", err, errOut.String())
	}
	for _, want := range []string{"--schema-registry-url", "/apis/ccompat/v7"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("a configuration error took %s", took)
	}
}

// TestServeStoppedWhileWaiting stops `herald serve` (as SIGTERM does)
// while it waits for an unreachable registry: it ends at once, without an
// error.
func TestServeStoppedWhileWaiting(t *testing.T) {
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close() // nothing listens there any more
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	var out, errOut bytes.Buffer
	begin := time.Now()
	err := run(ctx, []string{"serve", "--kafka-brokers=127.0.0.1:9", "--schema-registry-url=" + gone.URL,
		"--database-url=sqlite:" + filepath.Join(t.TempDir(), "db"), "--grpc-addr=127.0.0.1:0", "--http-addr=", "--insecure-no-auth",
		"--startup-timeout=1m"}, func(string) string { return "" }, &out, &errOut)
	if err != nil {
		t.Fatalf("run = %v after a stop signal, want nil\n%s", err, errOut.String())
	}
	if took := time.Since(begin); took > 10*time.Second {
		t.Fatalf("stopping took %s", took)
	}
	if !strings.Contains(errOut.String(), "waiting for schema registry at "+gone.URL) {
		t.Fatalf("no line says what it waited for:\n%s", errOut.String())
	}
}
