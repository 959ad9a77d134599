package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/event"
)

// TestDLQCommands drives `herald dlq list`, `show` and `replay` against a
// process on the embedded stack that dead-letters a record it cannot decode.
func TestDLQCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := server.Start(ctx, server.Config{
		DataDir: t.TempDir(), Embedded: true, GRPCAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
		// One consumer group of herald.orders.v1, so one dead letter per poison record.
		Services: []string{"orders", "inventory"},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	poison := &kgo.Record{Topic: "herald.orders.v1", Key: []byte("k"), Value: []byte("not an event"),
		Headers: []kgo.RecordHeader{{Key: event.HeaderID, Value: []byte("poison-1")}}}
	if err := cl.ProduceSync(ctx, poison).FirstErr(); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"HERALD_KAFKA_BROKERS": strings.Join(p.Brokers(), ","), "HERALD_SCHEMA_REGISTRY_URL": p.RegistryURL()}
	herald := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := run(ctx, args, func(k string) string { return env[k] }, &out, &errOut); err != nil {
			t.Fatalf("herald %v: %v\n%s", args, err, errOut.String())
		}
		return out.String()
	}
	var list string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if list = herald("dlq", "list"); strings.Contains(list, "herald.orders.v1.dlq") && strings.Contains(list, " 1\n") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(list, "herald.orders.v1.dlq") || !strings.Contains(list, "permanent:") || !strings.Contains(list, "undecodable") {
		t.Fatalf("dlq list:\n%s", list)
	}
	shown := herald("dlq", "show", "--topic", "herald.orders.v1.dlq")
	for _, want := range []string{"herald_dlq_topic: herald.orders.v1", "herald_dlq_group: herald-inventory", "ce_id: poison-1", "value does not decode"} {
		if !strings.Contains(shown, want) {
			t.Errorf("dlq show lacks %q:\n%s", want, shown)
		}
	}
	if out := herald("dlq", "replay", "--topic", "herald.orders.v1.dlq", "--id", "nope"); !strings.Contains(out, "replayed 0 of 1") {
		t.Fatalf("replay with a non-matching id: %s", out)
	}
	if out := herald("dlq", "replay", "--topic", "herald.orders.v1.dlq", "--class", "permanent"); !strings.Contains(out, "replayed 1 of 1") {
		t.Fatalf("replay: %s", out)
	}
	// Still poison: the replayed record is dead-lettered again.
	deadline = time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(herald("dlq", "list"), " 2\n") {
		time.Sleep(100 * time.Millisecond)
	}
	if list := herald("dlq", "list"); !strings.Contains(list, " 2\n") {
		t.Fatalf("after replaying a record that is still poison:\n%s", list)
	}
}
