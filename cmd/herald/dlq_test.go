package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/natsbus"
	"github.com/herald-events/herald/platform/bus/rabbitbus"
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

// TestDLQDefaultsToHeraldDev: with no broker set, `herald dlq list` reads
// herald dev at its default addresses. It needs those ports (9092, 8081)
// free, and skips otherwise.
func TestDLQDefaultsToHeraldDev(t *testing.T) {
	for _, addr := range []string{devKafka, strings.TrimPrefix(devRegistry, "http://")} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("%s is taken (a herald dev running?): %v", addr, err)
		}
		ln.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := server.Start(ctx, server.Config{
		DataDir: t.TempDir(), Embedded: true, GRPCAddr: "127.0.0.1:0", KafkaAddr: devKafka, RegistryAddr: strings.TrimPrefix(devRegistry, "http://"),
		Services: []string{"inventory"},
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
		Headers: []kgo.RecordHeader{{Key: event.HeaderID, Value: []byte("poison-dev")}}}
	if err := cl.ProduceSync(ctx, poison).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		out.Reset()
		errOut.Reset()
		if err := run(ctx, []string{"dlq", "list"}, func(string) string { return "" }, &out, &errOut); err != nil {
			t.Fatalf("herald dlq list: %v\n%s", err, errOut.String())
		}
		if strings.Contains(out.String(), "herald.orders.v1.dlq") && strings.Contains(out.String(), " 1\n") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "herald.orders.v1.dlq") || !strings.Contains(out.String(), " 1\n") {
		t.Fatalf("herald dlq list with no flags:\n%s", out.String())
	}
	if !strings.Contains(errOut.String(), "herald dev's Kafka at 127.0.0.1:9092") {
		t.Errorf("no note of the default on stderr: %q", errOut.String())
	}
}

// TestDLQOnNATSAndRabbitMQ drives `herald dlq list`, `show` and `replay`
// with --bus=nats and --bus=rabbitmq against the servers in the
// environment (HERALD_NATS_URL, HERALD_RABBITMQ_URL, with the registry and
// PostgreSQL of the real stack), through a process that dead-letters a
// message it cannot decode.
func TestDLQOnNATSAndRabbitMQ(t *testing.T) {
	reg, db := os.Getenv("HERALD_SCHEMA_REGISTRY_URL"), os.Getenv("HERALD_DATABASE_URL")
	if reg == "" || db == "" {
		t.Skip("needs HERALD_SCHEMA_REGISTRY_URL and HERALD_DATABASE_URL (scripts/infra/up.sh)")
	}
	for _, b := range []struct{ bus, urlVar string }{{server.BusNATS, "HERALD_NATS_URL"}, {server.BusRabbitMQ, "HERALD_RABBITMQ_URL"}} {
		t.Run(b.bus, func(t *testing.T) {
			url := os.Getenv(b.urlVar)
			if url == "" {
				t.Skipf("%s is not set", b.urlVar)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			ns := fmt.Sprintf("dlq%d", time.Now().UnixNano()%1e9)
			cfg := server.Config{Bus: b.bus, Registry: server.RegistryConfig{URL: reg}, DatabaseURL: db, Namespace: ns, AutoRegister: true,
				GRPCAddr: "127.0.0.1:0", Services: []string{"inventory"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			if b.bus == server.BusNATS {
				cfg.NATSURL = url
			} else {
				cfg.RabbitMQURL = url
			}
			p, err := server.Start(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			var pub bus.Publisher
			if b.bus == server.BusNATS {
				pub, err = natsbus.NewPublisher(natsbus.URL(url))
			} else {
				pub, err = rabbitbus.NewPublisher(rabbitbus.URL(url))
			}
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			topic := event.Namespaced(ns, "herald.orders.v1")
			id := "poison-" + ns
			poison := &bus.Message{ID: id, Topic: topic, Key: []byte("k"), Value: []byte("not an event"),
				Headers: []bus.Header{{Key: event.HeaderID, Value: []byte(id)}}}
			if err := pub.Publish(ctx, poison); err != nil {
				t.Fatal(err)
			}
			env := map[string]string{"HERALD_BUS": b.bus, b.urlVar: url, "HERALD_NAMESPACE": ns, "HERALD_SCHEMA_REGISTRY_URL": reg}
			herald := func(args ...string) string {
				t.Helper()
				var out, errOut bytes.Buffer
				if err := run(ctx, args, func(k string) string { return env[k] }, &out, &errOut); err != nil {
					t.Fatalf("herald %v: %v\n%s", args, err, errOut.String())
				}
				return out.String()
			}
			dlqTopic := topic + ".dlq"
			var list string
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				if list = herald("dlq", "list"); strings.Contains(list, dlqTopic) && strings.Contains(list, " 1\n") {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if !strings.Contains(list, dlqTopic) || !strings.Contains(list, " 1\n") || !strings.Contains(list, "permanent:") {
				t.Fatalf("dlq list:\n%s", list)
			}
			shown := herald("dlq", "show", "--topic", "herald.orders.v1.dlq")
			for _, want := range []string{"herald_dlq_topic: " + topic, "herald_dlq_group: " + ns + ".herald-inventory", "ce_id: " + id} {
				if !strings.Contains(shown, want) {
					t.Errorf("dlq show lacks %q:\n%s", want, shown)
				}
			}
			// Reading did not consume: the dead letter is still listed.
			if again := herald("dlq", "list"); !strings.Contains(again, " 1\n") {
				t.Fatalf("dead letter gone after list and show:\n%s", again)
			}
			if out := herald("dlq", "replay", "--topic", "herald.orders.v1.dlq", "--class", "permanent"); !strings.Contains(out, "replayed 1 of 1") {
				t.Fatalf("replay: %s", out)
			}
			if b.bus == server.BusRabbitMQ {
				// Still poison: the replayed message is dead-lettered again.
				// (On NATS the server drops a replay published within the
				// stream's duplicate window of the original, by its
				// Nats-Msg-Id, the ce_id.)
				deadline = time.Now().Add(30 * time.Second)
				for time.Now().Before(deadline) && !strings.Contains(herald("dlq", "list"), " 2\n") {
					time.Sleep(200 * time.Millisecond)
				}
				if list := herald("dlq", "list"); !strings.Contains(list, " 2\n") {
					t.Fatalf("after replaying a message that is still poison:\n%s", list)
				}
			}
		})
	}
}
