package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/registry"
)

// runRegistry serves the embedded Confluent-API registry on its own, for
// schema gates in CI and for experiments.
func runRegistry(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	f := newFlags("herald registry", stderr)
	var (
		addr, dir              string
		user, password         string
		reader, readerPassword string
		maxBody                int64
	)
	f.fs.StringVar(&addr, "registry-addr", "127.0.0.1:8081", "listen address")
	f.fs.StringVar(&dir, "data-dir", "", "directory for registry.json (empty: in memory)")
	f.fs.StringVar(&user, "registry-user", "", "require HTTP basic auth; this user may read and change everything")
	f.fs.StringVar(&password, "registry-password", "", "password of --registry-user")
	f.fs.StringVar(&reader, "registry-reader-user", "", "require HTTP basic auth; this user may only read (lookups, fetches, compatibility checks)")
	f.fs.StringVar(&readerPassword, "registry-reader-password", "", "password of --registry-reader-user")
	f.fs.Int64Var(&maxBody, "registry-max-body", registry.DefaultMaxBodyBytes, "largest request body in bytes; larger ones get 413")
	f.fs.StringVar(&f.level, "log-level", "info", "debug, info, warn or error")
	if err := f.parse(args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &usageError{err}
	}
	if (user != "" && password == "") || (reader != "" && readerPassword == "") {
		return &usageError{fmt.Errorf("%s and %s need a password (%s, %s)", server.Setting("registry-user"),
			server.Setting("registry-reader-user"), server.Setting("registry-password"), server.Setting("registry-reader-password"))}
	}
	log, err := newLogger(stderr, f.level)
	if err != nil {
		return &usageError{err}
	}
	file := ""
	if dir != "" {
		file = filepath.Join(dir, "registry.json")
	}
	reg, err := registry.New(registry.Config{
		File: file, User: user, Password: password,
		ReadOnlyUser: reader, ReadOnlyPassword: readerPassword,
		MaxBodyBytes: maxBody, Logger: log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return &usageError{fmt.Errorf("--registry-addr %s: %w", addr, err)}
	}
	srv := &http.Server{Handler: reg.Handler(), ReadHeaderTimeout: 10 * time.Second}
	log.Info("herald registry ready", "url", "http://"+ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
