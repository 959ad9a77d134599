// Package server assembles a herald process: the infrastructure (embedded
// for `herald dev`), the selected services, their databases, publishers and
// consumers, and one gRPC server with health and reflection.
package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"

	"github.com/herald-events/herald/platform/schema"
)

// Known services, in start order.
var knownServices = []string{"orders", "inventory"}

// KnownServices lists the services a process can run.
func KnownServices() []string { return slices.Clone(knownServices) }

// Config configures a process.
type Config struct {
	// DataDir holds the SQLite files and, embedded, the broker log and
	// registry state. Default ".herald".
	DataDir string
	// GRPCAddr is the gRPC listen address. Default "127.0.0.1:8080".
	GRPCAddr string
	// Embedded runs kfake and the embedded registry in the process.
	Embedded bool
	// KafkaAddr is where the embedded broker listens. Default
	// "127.0.0.1:9092".
	KafkaAddr string
	// RegistryAddr is where the embedded registry listens. Default
	// "127.0.0.1:8081".
	RegistryAddr string
	// Services to run. Default: all.
	Services []string
	// Partitions of each topic the process creates. Default 3.
	Partitions int32
	// SubjectStrategy names registry subjects. Default topic name.
	SubjectStrategy schema.Strategy
	// Logger defaults to [slog.Default].
	Logger *slog.Logger
	// Hooks inject faults in tests; nil in production.
	Hooks *Hooks
}

// Hooks are fault-injection points for tests.
type Hooks struct {
	// OutboxBeforeMark, per service name, runs between publishing an
	// outbox batch and marking it sent; an error stops the process as a
	// crash at that point would.
	OutboxBeforeMark map[string]func(ids []int64) error
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.DataDir == "" {
		c.DataDir = ".herald"
	}
	if c.GRPCAddr == "" {
		c.GRPCAddr = "127.0.0.1:8080"
	}
	if c.KafkaAddr == "" {
		c.KafkaAddr = "127.0.0.1:9092"
	}
	if c.RegistryAddr == "" {
		c.RegistryAddr = "127.0.0.1:8081"
	}
	if len(c.Services) == 0 {
		c.Services = KnownServices()
	}
	if c.Partitions == 0 {
		c.Partitions = 3
	}
	if c.SubjectStrategy == "" {
		c.SubjectStrategy = schema.TopicName
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every invalid setting, naming its flag.
func (c *Config) Validate() error {
	var errs []error
	for _, a := range []struct{ flag, addr string }{
		{"grpc-addr", c.GRPCAddr}, {"kafka-addr", c.KafkaAddr}, {"registry-addr", c.RegistryAddr},
	} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: want host:port: %w", a.flag, a.addr, err))
		}
	}
	if !c.Embedded {
		errs = append(errs, errors.New("only the embedded infrastructure is supported by this build: run `herald dev`"))
	}
	seen := map[string]bool{}
	for _, s := range c.Services {
		if !slices.Contains(knownServices, s) {
			errs = append(errs, fmt.Errorf("--services: unknown service %q (known: %s)", s, strings.Join(knownServices, ", ")))
		}
		if seen[s] {
			errs = append(errs, fmt.Errorf("--services: %q listed twice", s))
		}
		seen[s] = true
	}
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("--partitions %d: must be at least 1", c.Partitions))
	}
	if _, err := schema.ParseStrategy(string(c.SubjectStrategy)); err != nil {
		errs = append(errs, fmt.Errorf("--subject-strategy: %w", err))
	}
	return errors.Join(errs...)
}
