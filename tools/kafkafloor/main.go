// Command kafkafloor measures what one transactional hop costs on a Kafka
// broker by itself: a transactional producer commits one record per
// transaction at a fixed pace, and a read_committed consumer notes when
// each record reaches it. A hop of herald's saga (relay commit, fetch) can
// not be faster than this on the same broker; scripts/bench-hops.sh prints
// it beside herald's own hops.
//
//	go run ./tools/kafkafloor -brokers 127.0.0.1:19092 -n 1000 -every 20ms
//
// It creates a topic of its own (kafkafloor-<time>) and deletes it at the end.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-events/herald/internal/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafkafloor:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("kafkafloor", flag.ContinueOnError)
	brokers := fs.String("brokers", getenv("HERALD_KAFKA_BROKERS"), "comma-separated bootstrap brokers (default $HERALD_KAFKA_BROKERS)")
	n := fs.Int("n", 1000, "records (one transaction each) after the warm-up")
	warmup := fs.Int("warmup", 100, "records first sent and left out of the figures (connections, JIT)")
	every := fs.Duration("every", 20*time.Millisecond, "pause between transactions")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *brokers == "" || *n <= 0 || *warmup < 0 || *every < 0 {
		return errors.New("need -brokers (or HERALD_KAFKA_BROKERS), -n > 0, -warmup >= 0 and -every >= 0")
	}
	seeds := strings.Split(*brokers, ",")
	topic := fmt.Sprintf("kafkafloor-%d", time.Now().UnixNano())

	admCl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	if _, err := adm.CreateTopic(ctx, 1, -1, nil, topic); err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = adm.DeleteTopics(dctx, topic)
	}()

	// The settings of herald's Kafka publisher.
	prod, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.TransactionalID(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0))
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	defer prod.Close()
	cons, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	defer cons.Close()

	total := *warmup + *n
	received := make(chan []time.Duration, 1)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		var lat []time.Duration
		for seen := 0; seen < total && cctx.Err() == nil; {
			fetches := cons.PollFetches(cctx)
			now := time.Now()
			fetches.EachRecord(func(r *kgo.Record) {
				seen++
				i, _ := strconv.Atoi(string(r.Key))
				sent, _ := strconv.ParseInt(string(r.Value), 10, 64)
				if i >= *warmup {
					lat = append(lat, now.Sub(time.Unix(0, sent)))
				}
			})
		}
		received <- lat
	}()

	var commit []time.Duration
	for i := range total {
		start := time.Now()
		if err := prod.BeginTransaction(); err != nil {
			return fmt.Errorf("begin transaction %d: %w", i, err)
		}
		rec := &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i)), Value: []byte(strconv.FormatInt(start.UnixNano(), 10))}
		produceErr := prod.ProduceSync(ctx, rec).FirstErr()
		end := kgo.TryCommit
		if produceErr != nil {
			end = kgo.TryAbort
		}
		if err := prod.EndTransaction(ctx, end); err != nil || produceErr != nil {
			return fmt.Errorf("transaction %d: %w", i, errors.Join(produceErr, err))
		}
		if i >= *warmup {
			commit = append(commit, time.Since(start))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(*every):
		}
	}
	var lat []time.Duration
	select {
	case lat = <-received:
	case <-time.After(30 * time.Second):
		return errors.New("the consumer did not see every committed record within 30 s")
	}
	fmt.Fprintf(stdout, "broker floor, %d transactions of one record, every %s:\n", *n, *every)
	fmt.Fprintf(stdout, "  produce and commit:          %s\n", percentiles(commit))
	fmt.Fprintf(stdout, "  produce start → read_committed consumer: %s\n", percentiles(lat))
	return nil
}

// percentiles renders p50, p90 and p99 in milliseconds, by herald bench's
// nearest-rank method.
func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	slices.Sort(ds)
	ms := func(p float64) float64 { return float64(loadgen.Percentile(ds, p).Microseconds()) / 1000 }
	return fmt.Sprintf("p50 %.1f ms, p90 %.1f ms, p99 %.1f ms (n=%d)", ms(50), ms(90), ms(99), len(ds))
}
