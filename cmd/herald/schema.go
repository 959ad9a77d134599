package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/schema"
)

const schemaUsage = `Usage:
  herald schema register [flags]   register every event schema of proto/
`

func runSchema(_ context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "register" {
		fmt.Fprint(stderr, schemaUsage)
		if len(args) == 0 {
			return &usageError{errors.New("schema: no subcommand given")}
		}
		return &usageError{fmt.Errorf("schema: unknown subcommand %q", args[0])}
	}
	f := newFlags("herald schema register", stderr)
	f.registry()
	if err := f.parse(args[1:], getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &usageError{err}
	}
	if f.cfg.Registry.URL == "" {
		return &usageError{fmt.Errorf("%s: required", server.Setting("schema-registry-url"))}
	}
	strategy, err := schema.ParseStrategy(f.strategy)
	if err != nil {
		return &usageError{fmt.Errorf("%s: %w", server.Setting("subject-strategy"), err)}
	}
	regs, err := server.RegisterSchemas(f.cfg.Registry, strategy, f.cfg.Namespace)
	for _, r := range regs {
		fmt.Fprintf(stdout, "%-45s %-40s id %d\n", r.Event, r.Subject, r.ID)
	}
	return err
}
