package kafkabus_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/bustest"
	"github.com/herald-events/herald/platform/bus/kafkabus"
)

// conformancePartitions is the partition count of the suite's topics: more
// than one, so that keys spread and a poll spans partitions.
const conformancePartitions = 3

// TestConformance runs the bus conformance suite against kfake and, when
// HERALD_KAFKA_BROKERS names one, a real Kafka; each in both commit modes:
// group transactions with a transactional publisher (as herald runs in
// production), and plain offset commits with an idempotent publisher.
func TestConformance(t *testing.T) {
	t.Run("kfake", func(t *testing.T) {
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			t.Fatalf("start kfake: %v", err)
		}
		t.Cleanup(c.Close)
		runConformanceModes(t, "kfake", c.ListenAddrs())
	})
	t.Run("kafka", func(t *testing.T) {
		brokers := os.Getenv("HERALD_KAFKA_BROKERS")
		if brokers == "" {
			t.Skip("HERALD_KAFKA_BROKERS is not set: the suite ran against kfake only")
		}
		runConformanceModes(t, "kafka", strings.Split(brokers, ","))
	})
}

func runConformanceModes(t *testing.T, cluster string, seeds []string) {
	t.Helper()
	for _, mode := range []struct {
		name string
		txn  bool
	}{{"group-transactions", true}, {"offset-commits", false}} {
		t.Run(mode.name, func(t *testing.T) {
			bustest.Run(t, kafkaConformanceBackend(cluster+"/"+mode.name, seeds, mode.txn))
		})
	}
}

func kafkaConformanceBackend(name string, seeds []string, txn bool) bustest.Backend {
	common := func() []kafkabus.Option {
		return []kafkabus.Option{kafkabus.Seeds(seeds...), kafkabus.Logger(conformanceLogger())}
	}
	var limits map[string]string
	if txn {
		limits = map[string]string{"HandoverDuringGrace": "with consumer transactions a rebalance does not wait for the poll in hand " +
			"(franz-go's GroupTransactSession with BlockRebalanceOnPoll stalled after broker restarts), so a member joining " +
			"mid-poll handles records the leaving member is still finishing; the leaving member's transaction aborts and the inbox drops the repeats"}
	}
	return bustest.Backend{
		Name:        name,
		Limitations: limits,
		Prepare: func(t *testing.T, topics ...string) {
			t.Helper()
			all := make([]string, 0, 2*len(topics))
			for _, tp := range topics {
				all = append(all, tp, tp+".dlq")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := kafkabus.EnsureTopics(ctx, conformancePartitions, -1, all, common()...); err != nil {
				t.Fatalf("prepare topics: %v", err)
			}
		},
		NewPublisher: func(t *testing.T) bus.Publisher {
			t.Helper()
			opts := common()
			if txn {
				opts = append(opts, kafkabus.TransactionalID("bustest-pub-"+randomHex(t)))
			}
			p, err := kafkabus.NewPublisher(opts...)
			if err != nil {
				t.Fatalf("new publisher: %v", err)
			}
			return p
		},
		NewSubscriber: func(t *testing.T, grace time.Duration) bus.Subscriber {
			t.Helper()
			opts := append(common(), kafkabus.ShutdownGrace(grace), kafkabus.RetryBackoff(10*time.Millisecond, 250*time.Millisecond))
			if txn {
				opts = append(opts, kafkabus.GroupTransactions("bustest-"))
			}
			s, err := kafkabus.NewSubscriber(opts...)
			if err != nil {
				t.Fatalf("new subscriber: %v", err)
			}
			return s
		},
	}
}

// conformanceLogger discards logs unless HERALD_TEST_DEBUG is set.
func conformanceLogger() *slog.Logger {
	if os.Getenv("HERALD_TEST_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func randomHex(t *testing.T) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random id: %v", err)
	}
	return hex.EncodeToString(b[:])
}
