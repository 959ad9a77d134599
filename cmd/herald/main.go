// Command herald is the one binary of the herald event platform.
//
//	herald dev     run every service on embedded Kafka, registry and SQLite
//	herald help    show usage
//
// Settings come from flags, or from HERALD_* environment variables named
// after the flags (--grpc-addr ↔ HERALD_GRPC_ADDR); a flag wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/schema"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "herald:", err)
		var ue *usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError marks bad flags or configuration (exit code 2).
type usageError struct{ err error }

func (u *usageError) Error() string { return u.err.Error() }
func (u *usageError) Unwrap() error { return u.err }

const usage = `herald — schema-first events on Kafka

Usage:
  herald dev [flags]     run all services in one process on embedded Kafka
                         (kfake), an embedded schema registry and SQLite
  herald help            show this help

Run "herald dev -h" for the flags. Every flag can also be set through an
environment variable: --grpc-addr is HERALD_GRPC_ADDR, and so on.
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &usageError{errors.New("no command given")}
	}
	switch args[0] {
	case "dev":
		return runDev(ctx, args[1:], getenv, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return &usageError{fmt.Errorf("unknown command %q", args[0])}
	}
}

// envFlags applies HERALD_* variables to flags not set on the command line.
func envFlags(fs *flag.FlagSet, getenv func(string) string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		name := "HERALD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func runDev(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("herald dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg      server.Config
		services string
		strategy string
		level    string
		parts    int
	)
	fs.StringVar(&cfg.DataDir, "data-dir", ".herald", "directory for the broker log, registry state and SQLite files")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", "127.0.0.1:8080", "gRPC listen address (reflection and health are on)")
	fs.StringVar(&cfg.KafkaAddr, "kafka-addr", "127.0.0.1:9092", "embedded Kafka listen address")
	fs.StringVar(&cfg.RegistryAddr, "registry-addr", "127.0.0.1:8081", "embedded schema registry listen address")
	fs.StringVar(&services, "services", strings.Join(server.KnownServices(), ","), "comma-separated services to run")
	fs.StringVar(&strategy, "subject-strategy", string(schema.TopicName), "registry subject naming: topic, record or topic_record")
	fs.IntVar(&parts, "partitions", 3, "partitions of each topic created")
	fs.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &usageError{err}
	}
	if err := envFlags(fs, getenv); err != nil {
		return &usageError{err}
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	log, err := newLogger(stderr, level)
	if err != nil {
		return &usageError{err}
	}
	cfg.Embedded = true
	cfg.Logger = log
	cfg.Partitions = int32(parts)
	cfg.SubjectStrategy = schema.Strategy(strategy)
	for _, s := range strings.Split(services, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.Services = append(cfg.Services, s)
		}
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return &usageError{err}
	}
	p, err := server.Start(ctx, cfg)
	if err != nil {
		return err
	}
	log.Info("herald dev ready", "grpc", p.GRPCAddr(), "kafka", strings.Join(p.Brokers(), ","), "registry", p.RegistryURL(),
		"pid", strconv.Itoa(os.Getpid()))
	select {
	case <-ctx.Done():
		log.Info("shutting down")
		return p.Close()
	case <-p.Done():
		return p.Close()
	}
}
