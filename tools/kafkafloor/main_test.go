package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// TestRunOnEmbeddedBroker: every transaction's record reaches the
// read_committed consumer and both figures are printed over the records
// after the warm-up.
func TestRunOnEmbeddedBroker(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	args := []string{"-brokers", strings.Join(c.ListenAddrs(), ","), "-n", "20", "-warmup", "5", "-every", "0s"}
	if err := run(ctx, args, func(string) string { return "" }, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"20 transactions", "produce and commit:", "read_committed consumer:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	t.Log(out.String())
	if got := strings.Count(out.String(), "(n=20)"); got != 2 {
		t.Errorf("%d figures over 20 samples, want 2:\n%s", got, out.String())
	}
}

func TestRunNeedsBrokers(t *testing.T) {
	err := run(context.Background(), nil, func(string) string { return "" }, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "-brokers") {
		t.Fatalf("run without brokers = %v, want an error naming -brokers", err)
	}
}
