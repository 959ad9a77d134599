package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/kafkabus"
	"github.com/herald-events/herald/platform/bus/natsbus"
	"github.com/herald-events/herald/platform/bus/rabbitbus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/dlq"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/schema"
)

const dlqUsage = `Usage:
  herald dlq list [flags]                       dead-letter topics: count and newest reasons
                                                (--bus kafka, nats or rabbitmq; on Kafka without
                                                --kafka-brokers, herald dev's 127.0.0.1:9092)
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
	f.fs.StringVar(&f.cfg.Bus, "bus", "kafka", "message bus: kafka, nats (JetStream) or rabbitmq")
	f.fs.StringVar(&f.cfg.NATSURL, "nats-url", "", "NATS server URL, nats://host:port (--bus=nats)")
	f.fs.StringVar(&f.cfg.RabbitMQURL, "rabbitmq-url", "", "RabbitMQ URL, amqp://user:pass@host:port/vhost (--bus=rabbitmq)")
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
	if verb != "list" && topic == "" {
		return &usageError{errors.New("--topic: required")}
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	src, pub, closeAll, err := dlqBus(ctx, f, stderr)
	if err != nil {
		return err
	}
	defer closeAll()
	switch verb {
	case "list":
		prefix := ""
		if f.cfg.Namespace != "" {
			prefix = f.cfg.Namespace + "."
		}
		topics, err := src.Topics(ctx, prefix)
		if err != nil {
			return err
		}
		for _, t := range topics {
			msgs, err := src.Read(ctx, t)
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
		msgs, err := src.Read(ctx, event.Namespaced(f.cfg.Namespace, topic))
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
		msgs, err := src.Read(ctx, event.Namespaced(f.cfg.Namespace, topic))
		if err != nil {
			return err
		}
		p, err := pub()
		if err != nil {
			return err
		}
		defer p.Close()
		n, err := dlq.Replay(ctx, p, msgs, filter)
		fmt.Fprintf(stdout, "replayed %d of %d dead letters\n", n, len(msgs))
		return err
	}
}

// herald dev's addresses, the defaults of `herald dlq` on Kafka when no
// broker is set.
const (
	devKafka    = "127.0.0.1:9092"
	devRegistry = "http://127.0.0.1:8081"
)

// dlqBus returns the dead-letter source of the bus f names, a constructor
// of its publisher (for replays), and a function that closes the source.
// On Kafka without brokers it reads herald dev's (and its registry, unless
// one is set), and says so on stderr.
func dlqBus(ctx context.Context, f *flags, stderr io.Writer) (dlq.Source, func() (bus.Publisher, error), func(), error) {
	// A command's output is its answer: the clients' connection notes stay
	// out of it, their warnings do not.
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	switch f.cfg.Bus {
	case server.BusKafka:
		if len(f.cfg.Kafka.Brokers) == 0 {
			f.cfg.Kafka.Brokers = []string{devKafka}
			if f.cfg.Registry.URL == "" {
				f.cfg.Registry.URL = devRegistry
			}
			fmt.Fprintf(stderr, "herald dlq: %s not set: reading herald dev's Kafka at %s (registry %s)\n",
				server.Setting("kafka-brokers"), devKafka, f.cfg.Registry.URL)
		}
		extra, err := f.cfg.Kafka.ClientOptions()
		if err != nil {
			return nil, nil, nil, &usageError{err}
		}
		seeds := f.cfg.Kafka.Brokers
		pub := func() (bus.Publisher, error) {
			return kafkabus.NewPublisher(kafkabus.Seeds(seeds...), kafkabus.ClientOptions(extra...))
		}
		return dlq.Kafka{Seeds: seeds, Opts: extra}, pub, func() {}, nil
	case server.BusNATS:
		if f.cfg.NATSURL == "" {
			return nil, nil, nil, &usageError{fmt.Errorf("%s: required with --bus=nats", server.Setting("nats-url"))}
		}
		opts := []natsbus.Option{natsbus.URL(f.cfg.NATSURL), natsbus.Logger(log)}
		src, err := natsbus.NewDeadLetters(opts...)
		if err != nil {
			return nil, nil, nil, err
		}
		pub := func() (bus.Publisher, error) { return natsbus.NewPublisher(opts...) }
		return src, pub, func() { _ = src.Close() }, nil
	case server.BusRabbitMQ:
		if f.cfg.RabbitMQURL == "" {
			return nil, nil, nil, &usageError{fmt.Errorf("%s: required with --bus=rabbitmq", server.Setting("rabbitmq-url"))}
		}
		// AMQP cannot list queues: look for the dead letters of every
		// topic a known consumer group reads.
		var topics []string
		for _, ts := range server.Subscriptions(f.cfg.Namespace) {
			topics = append(topics, ts...)
		}
		opts := []rabbitbus.Option{rabbitbus.URL(f.cfg.RabbitMQURL), rabbitbus.Logger(log)}
		src, err := rabbitbus.NewDeadLetters(ctx, topics, opts...)
		if err != nil {
			return nil, nil, nil, err
		}
		pub := func() (bus.Publisher, error) { return rabbitbus.NewPublisher(opts...) }
		return src, pub, func() { _ = src.Close() }, nil
	default:
		return nil, nil, nil, &usageError{fmt.Errorf("%s: %q is not kafka, nats or rabbitmq", server.Setting("bus"), f.cfg.Bus)}
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
