package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/herald-events/herald/internal/schemacheck"
	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/schema"
	"github.com/herald-events/herald/platform/schema/compat"
)

const schemaUsage = `Usage:
  herald schema register [flags]          register every event schema (with its imports as references)
  herald schema check [flags]             test proto/ against the versions in the registry; exit 1 when incompatible
  herald schema diff --against REF [flags] the same rules offline, between proto/ at a git revision and now
`

func runSchema(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, schemaUsage)
		return &usageError{errors.New("schema: no subcommand given")}
	}
	switch args[0] {
	case "register":
		return runSchemaRegister(args[1:], getenv, stdout, stderr)
	case "check", "diff":
		return runSchemaGate(args[0], args[1:], getenv, stdout, stderr)
	}
	fmt.Fprint(stderr, schemaUsage)
	return &usageError{fmt.Errorf("schema: unknown subcommand %q", args[0])}
}

func runSchemaRegister(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("herald schema register", stderr)
	f.registry()
	if err := f.parse(args, getenv); err != nil {
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

// errIncompatible makes the command exit 1 after printing its report.
var errIncompatible = errors.New("incompatible schema changes")

func runSchemaGate(verb string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("herald schema "+verb, stderr)
	var protoDir, level, format, against string
	f.fs.StringVar(&protoDir, "proto-dir", "proto", "root of the .proto tree (the import root)")
	f.fs.StringVar(&format, "format", "text", "report format: text or json")
	if verb == "check" {
		f.registry()
		f.fs.StringVar(&level, "level", "", "compatibility level to apply (default: the registry's level for each subject)")
	} else {
		f.fs.StringVar(&against, "against", "", "git revision to compare with, e.g. main or HEAD~1")
		f.fs.StringVar(&level, "level", string(compat.Backward), "compatibility level to apply")
	}
	if err := f.parse(args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &usageError{err}
	}
	var lvl compat.Level
	if level != "" {
		var err error
		if lvl, err = compat.ParseLevel(level); err != nil {
			return &usageError{fmt.Errorf("--level: %w", err)}
		}
	}
	if format != "text" && format != "json" {
		return &usageError{fmt.Errorf("--format %q: want text or json", format)}
	}
	files, err := schemacheck.ReadDir(protoDir)
	if err != nil {
		return &usageError{fmt.Errorf("--proto-dir: %w", err)}
	}
	tree, err := schemacheck.Compile(files)
	if err != nil {
		return err
	}
	var rep schemacheck.Report
	switch verb {
	case "check":
		if f.cfg.Registry.URL == "" {
			return &usageError{fmt.Errorf("%s: required", server.Setting("schema-registry-url"))}
		}
		strategy, err := schema.ParseStrategy(f.strategy)
		if err != nil {
			return &usageError{fmt.Errorf("%s: %w", server.Setting("subject-strategy"), err)}
		}
		client, err := schema.NewClient(f.cfg.Registry.URL, f.cfg.Registry.User, f.cfg.Registry.Password)
		if err != nil {
			return err
		}
		if rep, err = schemacheck.CheckRegistry(client, tree, strategy, f.cfg.Namespace, lvl); err != nil {
			return err
		}
	case "diff":
		if against == "" {
			return &usageError{errors.New("--against: required (a git revision)")}
		}
		oldFiles, err := schemacheck.ReadGit(against, protoDir)
		if err != nil {
			return err
		}
		oldTree, err := schemacheck.Compile(oldFiles)
		if err != nil && len(oldFiles) > 0 {
			return fmt.Errorf("proto tree at %s: %w", against, err)
		}
		if rep, err = schemacheck.Diff(tree, oldTree, lvl); err != nil {
			return err
		}
	}
	if format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Compatible bool `json:"compatible"`
			schemacheck.Report
		}{rep.Compatible(), rep}); err != nil {
			return err
		}
	} else {
		fmt.Fprint(stdout, rep.Text())
	}
	if !rep.Compatible() {
		return errIncompatible
	}
	return nil
}
