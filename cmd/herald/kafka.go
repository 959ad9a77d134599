package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/bus/kafkabus"
)

const kafkaUsage = `Usage:
  herald kafka transactions [--heal] [flags]
      transactions left open for longer than --min-open on a partition of
      herald's topics (those of --namespace) or of __consumer_offsets
      (unless --consumer-offsets=false), with what the transaction
      coordinator decided for each; --heal writes that decision's markers,
      which closes them (docs/reliability.md, "Broker restart"). Exit 1
      while any is left open.
`

func runKafka(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "transactions" {
		fmt.Fprint(stderr, kafkaUsage)
		if len(args) == 0 {
			return &usageError{errors.New("kafka: no subcommand given")}
		}
		return &usageError{fmt.Errorf("kafka: unknown subcommand %q", args[0])}
	}
	f := newFlags("herald kafka transactions", stderr)
	f.kafka()
	f.fs.StringVar(&f.cfg.Namespace, "namespace", "", "prefix of herald's topics (empty: every topic)")
	heal := f.fs.Bool("heal", false, "write the coordinator's decision to the partitions of the transactions it decided")
	offsets := f.fs.Bool("consumer-offsets", true, "look at __consumer_offsets too, where every consumer group's offsets are (a transaction open there holds a group's offset fetches)")
	minOpen := f.fs.Duration("min-open", 3*kafkabus.DefaultTransactionTimeout,
		"list transactions open this long since their producer last wrote (the broker aborts an undecided one at its timeout, herald's is "+
			kafkabus.DefaultTransactionTimeout.String()+")")
	if err := f.parse(args[1:], getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &usageError{err}
	}
	if len(f.cfg.Kafka.Brokers) == 0 {
		f.cfg.Kafka.Brokers = []string{devKafka}
		fmt.Fprintf(stderr, "herald kafka: %s not set: asking herald dev's Kafka at %s\n", server.Setting("kafka-brokers"), devKafka)
	}
	extra, err := f.cfg.Kafka.ClientOptions()
	if err != nil {
		return &usageError{err}
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(f.cfg.Kafka.Brokers...)}, extra...)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	prefix := ""
	if f.cfg.Namespace != "" {
		prefix = f.cfg.Namespace + "."
	}
	names, err := kafkabus.TopicsWithPrefix(ctx, adm, prefix, *offsets)
	if err != nil {
		return err
	}
	hanging, err := kafkabus.FindHanging(ctx, adm, *minOpen, names...)
	if err != nil {
		return err
	}
	for _, h := range hanging {
		verdict := "undecided: " + h.Why
		if h.Decided {
			verdict = "the coordinator decided: " + h.Decision()
		}
		fmt.Fprintf(stdout, "%s/%d producer %d epoch %d (%s, %s) open from offset %d, last written %s ago; %s\n",
			h.Topic, h.Partition, h.ProducerID, h.ProducerEpoch, cmp.Or(h.TransactionalID, "no transactional id"), cmp.Or(h.State, "unknown"),
			h.StartOffset, time.Since(h.LastWrite).Round(time.Second), verdict)
	}
	open := len(hanging)
	if *heal {
		closed, err := kafkabus.Resolve(ctx, adm, hanging)
		for _, h := range closed {
			fmt.Fprintf(stdout, "healed %s/%d: %s marker written for producer %d\n",
				h.Topic, h.Partition, h.Decision(), h.ProducerID)
		}
		if err != nil {
			return err
		}
		open -= len(closed)
	}
	if open > 0 {
		return fmt.Errorf("%d transaction(s) left open on a partition for more than %s", open, *minOpen)
	}
	if len(hanging) == 0 {
		fmt.Fprintf(stdout, "no transaction open for more than %s\n", *minOpen)
	}
	return nil
}
