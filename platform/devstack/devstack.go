// Package devstack runs the embedded infrastructure of `herald dev` in the
// current process: a Kafka-protocol broker (franz-go's kfake) whose data is
// kept on disk, and the embedded Confluent-API schema registry.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/herald-events/herald/platform/registry"
)

// Config configures a [Stack].
type Config struct {
	// DataDir keeps the broker's log and the registry's state; empty keeps
	// both in memory.
	DataDir string
	// KafkaAddr is where the broker listens, e.g. "127.0.0.1:9092"; port 0
	// picks a free one.
	KafkaAddr string
	// RegistryAddr is where the registry listens, e.g. "127.0.0.1:8081".
	RegistryAddr string
	// RegistryUser and RegistryPassword, when RegistryUser is set, make
	// the registry require basic auth; this user may change everything.
	RegistryUser, RegistryPassword string
	// RegistryReadOnlyUser and RegistryReadOnlyPassword name a user who
	// may only read from the registry.
	RegistryReadOnlyUser, RegistryReadOnlyPassword string
	// Logger defaults to [slog.Default].
	Logger *slog.Logger
}

// Stack is the running embedded infrastructure.
type Stack struct {
	cluster  *kfake.Cluster
	regSrv   *http.Server
	regLn    net.Listener
	regErr   chan error
	registry *registry.Registry
}

// Start starts the broker and the registry.
func Start(cfg Config) (*Stack, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	kafkaLn, err := net.Listen("tcp", cfg.KafkaAddr)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka: listen %s: %w", cfg.KafkaAddr, err)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(0),
		kfake.ClusterID("herald-dev"),
		kfake.DefaultNumPartitions(3),
		// Hand kfake the listener opened above, so a busy address fails
		// here with a clear error and the broker advertises its real port.
		kfake.ListenFn(func(string, string) (net.Listener, error) { return kafkaLn, nil }),
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(filepath.Join(cfg.DataDir, "kafka")))
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		kafkaLn.Close()
		return nil, fmt.Errorf("embedded kafka: %w", err)
	}
	s := &Stack{cluster: cluster, regErr: make(chan error, 1)}

	regFile := ""
	if cfg.DataDir != "" {
		regFile = filepath.Join(cfg.DataDir, "registry.json")
	}
	if s.registry, err = registry.New(registry.Config{
		File: regFile, Logger: cfg.Logger,
		User: cfg.RegistryUser, Password: cfg.RegistryPassword,
		ReadOnlyUser: cfg.RegistryReadOnlyUser, ReadOnlyPassword: cfg.RegistryReadOnlyPassword,
	}); err != nil {
		cluster.Close()
		return nil, err
	}
	if s.regLn, err = net.Listen("tcp", cfg.RegistryAddr); err != nil {
		cluster.Close()
		return nil, fmt.Errorf("embedded registry: listen %s: %w", cfg.RegistryAddr, err)
	}
	s.regSrv = &http.Server{Handler: s.registry.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		err := s.regSrv.Serve(s.regLn)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.regErr <- err
	}()
	return s, nil
}

// KafkaAddr is the broker's "host:port".
func (s *Stack) KafkaAddr() string { return s.cluster.ListenAddrs()[0] }

// RegistryURL is the registry's base URL.
func (s *Stack) RegistryURL() string { return "http://" + s.regLn.Addr().String() }

// Close stops the registry and the broker, which writes its state to the
// data dir.
func (s *Stack) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.regSrv.Shutdown(ctx)
	err = errors.Join(err, <-s.regErr)
	s.cluster.Close()
	return err
}
