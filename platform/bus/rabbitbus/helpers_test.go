package rabbitbus_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/bus/rabbitbus"
)

// serverURL is the broker of scripts/infra/rabbitmq.sh; tests that need it
// skip without it.
func serverURL(t *testing.T) string {
	t.Helper()
	url := os.Getenv("HERALD_RABBITMQ_URL")
	if url == "" {
		t.Skip("HERALD_RABBITMQ_URL is not set: start a broker with eval \"$(scripts/infra/rabbitmq.sh start)\" to run the RabbitMQ tests")
	}
	return url
}

// quiet discards logs unless HERALD_TEST_DEBUG is set.
func quiet() *slog.Logger {
	if os.Getenv("HERALD_TEST_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func randomHex(t *testing.T) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random: %v", err)
	}
	return hex.EncodeToString(b[:])
}

// prepare declares topics (and their .dlq) like a deploy step would.
func prepare(t *testing.T, url string, topics ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := rabbitbus.EnsureTopology(ctx, url, topics...); err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
}

// rabbitmqctl runs rabbitmqctl against the node of scripts/infra/rabbitmq.sh.
func rabbitmqctl(t *testing.T, args ...string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "..", "scripts", "infra", "rabbitmq.sh")
	if _, err := os.Stat(script); err != nil {
		t.Skipf("no %s: %v", script, err)
	}
	out, err := exec.Command(script, append([]string{"ctl"}, args...)...).CombinedOutput()
	if err != nil {
		t.Skipf("rabbitmqctl %s (is the broker the one of scripts/infra/rabbitmq.sh?): %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
