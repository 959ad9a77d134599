// Command herald is the one binary of the herald event platform.
//
//	herald dev               every service on embedded Kafka, registry and SQLite
//	herald serve             chosen services on real Kafka, registry and database
//	herald schema register   register every event schema (a deploy step)
//	herald schema check      test proto/ against a registry's versions
//	herald schema diff       test proto/ against a git revision of it
//	herald registry          the embedded schema registry on its own
//	herald dlq               list, show and replay dead letters
//	herald bench             place orders on a running herald and measure
//	herald token             mint a development JWT for grpcurl
//	herald help              show usage
//
// Settings come from flags, or from HERALD_* environment variables named
// after the flags (--grpc-addr ↔ HERALD_GRPC_ADDR); a flag wins.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is the release the binary reports as service.version, set by the
// linker (-ldflags "-X main.version=v1.2.3", as the Dockerfile does); when
// empty, the version the Go toolchain recorded is used
// ([observe.BuildVersion]).
var version string

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
  herald dev [flags]              run all services in one process on embedded
                                  Kafka (kfake), an embedded schema registry
                                  and SQLite
  herald serve [flags]            run the services named by --services against
                                  the Kafka, schema registry and database given
                                  by --kafka-brokers, --schema-registry-url and
                                  --database-url
  herald schema register [flags]  register every event schema (with its
                                  imports as references) in the registry
  herald schema check [flags]     test the event schemas of proto/ against the registry's
                                  versions (Confluent's protobuf rules); exit 1 if incompatible
  herald schema diff --against REF
                                  the same rules offline, against proto/ at a git revision
  herald registry [flags]         run the embedded schema registry on its own
  herald dlq list|show|replay     inspect dead-letter topics and send messages back
  herald kafka transactions       transactions left open on a partition after a broker
                                  restart; --heal writes the coordinator's decision
  herald bench [flags]            place orders on a running herald at a chosen
                                  concurrency and rate; print throughput and latencies
  herald token [flags]            print a development JWT (--role customer|operator,
                                  --subject, --ttl) signed by a local key; start
                                  herald with --grpc-jwks=.herald/auth/jwks.json
  herald help                     show this help

Run "herald <command> -h" for the flags. Every flag can also be set through
an environment variable: --grpc-addr is HERALD_GRPC_ADDR, and so on. Bad or
missing settings exit with code 2.
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &usageError{errors.New("no command given")}
	}
	switch args[0] {
	case "dev":
		return runProcess(ctx, true, args[1:], getenv, stderr)
	case "serve":
		return runProcess(ctx, false, args[1:], getenv, stderr)
	case "schema":
		return runSchema(ctx, args[1:], getenv, stdout, stderr)
	case "registry":
		return runRegistry(ctx, args[1:], getenv, stderr)
	case "dlq":
		return runDLQ(ctx, args[1:], getenv, stdout, stderr)
	case "kafka":
		return runKafka(ctx, args[1:], getenv, stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], getenv, stdout, stderr)
	case "token":
		return runToken(ctx, args[1:], getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return &usageError{fmt.Errorf("unknown command %q", args[0])}
	}
}
