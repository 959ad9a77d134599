package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/kafkabus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/dlq"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/schema"
)

const dlqUsage = `Usage:
  herald dlq list [flags]                       dead-letter topics: count and newest reasons
  herald dlq show --topic T [flags]             dead letters decoded, with their headers
  herald dlq replay --topic T [--id ID] [--class C] [flags]
                                                send dead letters back to their topic
`

func runDLQ(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "show" && args[0] != "replay") {
		fmt.Fprint(stderr, dlqUsage)
		if len(args) == 0 {
			return &usageError{errors.New("dlq: no subcommand given")}
		}
		return &usageError{fmt.Errorf("dlq: unknown subcommand %q", args[0])}
	}
	verb := args[0]
	f := newFlags("herald dlq "+verb, stderr)
	f.kafka()
	f.registry()
	var topic string
	var filter dlq.Filter
	if verb != "list" {
		f.fs.StringVar(&topic, "topic", "", "dead-letter topic, e.g. herald.orders.v1.dlq (the namespace is added)")
		f.fs.StringVar(&filter.ID, "id", "", "only the dead letter with this ce_id")
		f.fs.StringVar(&filter.Class, "class", "", "only dead letters of this error class (permanent, retries_exhausted, contract, routing)")
	}
	if err := f.parse(args[1:], getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &usageError{err}
	}
	if len(f.cfg.Kafka.Brokers) == 0 {
		return &usageError{fmt.Errorf("%s: required", server.Setting("kafka-brokers"))}
	}
	if verb != "list" && topic == "" {
		return &usageError{errors.New("--topic: required")}
	}
	extra, err := f.cfg.Kafka.ClientOptions()
	if err != nil {
		return &usageError{err}
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	seeds := f.cfg.Kafka.Brokers
	switch verb {
	case "list":
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, extra...)...)
		if err != nil {
			return err
		}
		defer cl.Close()
		prefix := ""
		if f.cfg.Namespace != "" {
			prefix = f.cfg.Namespace + "."
		}
		topics, err := dlq.Topics(ctx, cl, prefix)
		if err != nil {
			return err
		}
		for _, t := range topics {
			msgs, err := dlq.Read(ctx, seeds, extra, t)
			if err != nil {
				return err
			}
			s := dlq.Summarize(t, msgs)
			fmt.Fprintf(stdout, "%-40s %d\n", s.Topic, s.Count)
			for _, r := range s.Newest {
				fmt.Fprintf(stdout, "    %s\n", r)
			}
		}
		return nil
	case "show":
		msgs, err := dlq.Read(ctx, seeds, extra, event.Namespaced(f.cfg.Namespace, topic))
		if err != nil {
			return err
		}
		var codec *schema.Codec
		if f.cfg.Registry.URL != "" {
			client, err := schema.NewClient(f.cfg.Registry.URL, f.cfg.Registry.User, f.cfg.Registry.Password)
			if err != nil {
				return err
			}
			if codec, err = schema.NewCodec(client); err != nil {
				return err
			}
		}
		for _, m := range msgs {
			if filter.Match(m) {
				show(stdout, m, codec)
			}
		}
		return nil
	default:
		msgs, err := dlq.Read(ctx, seeds, extra, event.Namespaced(f.cfg.Namespace, topic))
		if err != nil {
			return err
		}
		pub, err := kafkabus.NewPublisher(kafkabus.Seeds(seeds...), kafkabus.ClientOptions(extra...))
		if err != nil {
			return err
		}
		defer pub.Close()
		n, err := dlq.Replay(ctx, pub, msgs, filter)
		fmt.Fprintf(stdout, "replayed %d of %d dead letters\n", n, len(msgs))
		return err
	}
}

func show(w io.Writer, m *bus.Message, codec *schema.Codec) {
	fmt.Fprintf(w, "--- %s key=%s time=%s\n", m, m.Key, m.Timestamp.UTC().Format(time.RFC3339))
	for _, h := range m.Headers {
		fmt.Fprintf(w, "  %s: %s\n", h.Key, h.Value)
	}
	origin, _ := m.Header(consumer.HeaderDLQTopic)
	if codec != nil {
		msg, err := codec.Decode(origin, m.Value)
		if err == nil {
			b, _ := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(msg)
			fmt.Fprintf(w, "  value (%s):\n  %s\n", msg.ProtoReflect().Descriptor().FullName(), strings.ReplaceAll(string(b), "\n", "\n  "))
			return
		}
		fmt.Fprintf(w, "  value does not decode: %v\n", err)
	}
	fmt.Fprintf(w, "  value (%d bytes): % x\n", len(m.Value), m.Value[:min(64, len(m.Value))])
}
