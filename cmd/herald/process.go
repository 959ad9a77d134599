package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/auth"
	"github.com/herald-events/herald/platform/observe"
)

// defaultGCPercent is the garbage collector's target unless GOGC or
// --gc-percent says otherwise: twice Go's 100, because the saga spent
// about a fifth of its CPU allocating and collecting at 100, and 200
// completed about 5% more orders for about 30 MB more resident memory
// (docs/performance.md).
const defaultGCPercent = 200

// runProcess runs `herald dev` (embedded) or `herald serve`.
func runProcess(ctx context.Context, embedded bool, args []string, getenv func(string) string, stderr io.Writer) error {
	name := "herald serve"
	if embedded {
		name = "herald dev"
	}
	f := newFlags(name, stderr)
	f.process(embedded)
	if err := f.parse(args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &usageError{err}
	}
	log, err := newLogger(stderr, f.level)
	if err != nil {
		return &usageError{err}
	}
	if f.gc <= 0 {
		return &usageError{fmt.Errorf("%s: %d: want a positive percentage", server.Setting("gc-percent"), f.gc)}
	}
	defer setGCPercent(f.gc, getenv)()
	cfg := f.cfg
	cfg.Embedded = embedded
	cfg.RequireAuth = !embedded
	cfg.Logger = log
	cfg.SetDefaults() // the instance id names the spans' service.instance.id
	tracing, shutdownTracing, err := observe.NewTracing(ctx, observe.Identity{Version: version, InstanceID: cfg.InstanceID}, getenv)
	if err != nil {
		return &usageError{err}
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdownTracing(sctx)
	}()
	cfg.Tracing = tracing
	if err := cfg.Validate(); err != nil {
		return &usageError{err}
	}
	p, err := server.Start(ctx, cfg)
	if err != nil {
		if ce := (*server.ConfigError)(nil); errors.As(err, &ce) {
			return &usageError{err}
		}
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			log.Info("stopped while starting", "err", err) // a signal, not a failure
			return nil
		}
		return err
	}
	if embedded && !cfg.Auth.On() {
		jwks := filepath.Join(cfg.DataDir, devKeyDir, auth.DevJWKSFile)
		log.Info("gRPC authentication is off (herald dev); to try it, mint a token with " +
			"`herald token --role operator` (writes " + jwks + ") and restart with --grpc-jwks=" + jwks +
			", then call with grpcurl -H \"authorization: Bearer $(herald token --role customer --subject c-1)\"")
		if !loopback(p.GRPCAddr()) {
			log.Warn("herald dev serves gRPC without authentication beyond the loopback interface: anyone who reaches "+
				p.GRPCAddr()+" may call every method, SetStock included", "grpc", p.GRPCAddr())
		}
	}
	log.Info(name+" ready", "grpc", p.GRPCAddr(), "kafka", strings.Join(p.Brokers(), ","), "registry", p.RegistryURL(),
		"services", strings.Join(cfg.Services, ","), "pid", strconv.Itoa(os.Getpid()))
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case <-p.Done():
	}
	return p.Close()
}

// setGCPercent sets the garbage collector's target unless GOGC is set (the
// runtime read that itself), and returns what puts the earlier one back for
// a caller that goes on, as tests do.
func setGCPercent(percent int, getenv func(string) string) (restore func()) {
	if getenv("GOGC") != "" {
		return func() {}
	}
	old := debug.SetGCPercent(percent)
	return func() { debug.SetGCPercent(old) }
}

// loopback reports whether a listen address is on the loopback interface
// only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
