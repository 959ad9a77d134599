package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/herald-events/herald/internal/schemacheck"
	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/schema"
	"github.com/herald-events/herald/platform/schema/compat"
)

const schemaUsage = `Usage:
  herald schema register [flags]          register every event schema (with its imports as references)
  herald schema check [flags]             test proto/ against the versions in the registry; exit 1 when incompatible
  herald schema diff --against REF [flags] the same rules offline, between proto/ at a git revision and now
  herald schema export [--file F] [flags] write every subject, version, id and schema of the registry as JSON
  herald schema import --file F [flags]   put an export back with the same ids (the registry's IMPORT mode)
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
	case "export":
		return runSchemaExport(ctx, args[1:], getenv, stdout, stderr)
	case "import":
		return runSchemaImport(ctx, args[1:], getenv, stdout, stderr)
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

// registryAdmin parses the registry flags plus those extra adds, for the
// export and import subcommands.
func registryAdmin(name string, args []string, getenv func(string) string, stderr io.Writer, extra func(*flag.FlagSet)) (*schema.RegistryAdmin, error) {
	f := newFlags(name, stderr)
	f.registry()
	extra(f.fs)
	if err := f.parse(args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, &usageError{err}
	}
	if f.cfg.Registry.URL == "" {
		return nil, &usageError{fmt.Errorf("%s: required", server.Setting("schema-registry-url"))}
	}
	return &schema.RegistryAdmin{URL: f.cfg.Registry.URL, User: f.cfg.Registry.User, Password: f.cfg.Registry.Password}, nil
}

// runSchemaExport writes the registry's contents, ids included, so a lost
// registry can be refilled with the same ids (see docs/reliability.md).
func runSchemaExport(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var file string
	admin, err := registryAdmin("herald schema export", args, getenv, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&file, "file", "", "write the export to this file instead of stdout")
	})
	if errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	exp, err := admin.ExportRegistry(ctx)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(exp, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if file == "" {
		_, err = stdout.Write(b)
		return err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("--file: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return fmt.Errorf("--file: %w", err)
	}
	fmt.Fprintf(stderr, "exported %d schema versions from %s to %s\n", len(exp.Schemas), admin.URL, file)
	return nil
}

// runSchemaImport registers an export's schemas with their ids and
// versions, through the registry's IMPORT mode.
func runSchemaImport(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var (
		file  string
		force bool
	)
	admin, err := registryAdmin("herald schema import", args, getenv, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&file, "file", "", "the export to import (from herald schema export)")
		fs.BoolVar(&force, "force", false, "import although the registry already has subjects (ids already taken by other schemas still fail)")
	})
	if errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if file == "" {
		return &usageError{errors.New("--file: required (an export written by herald schema export)")}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return &usageError{fmt.Errorf("--file: %w", err)}
	}
	var exp schema.Export
	if err := json.Unmarshal(b, &exp); err != nil {
		return &usageError{fmt.Errorf("--file %s: not an export: %w", file, err)}
	}
	n, err := admin.ImportRegistry(ctx, &exp, force)
	fmt.Fprintf(stdout, "imported %d of %d schema versions into %s with their ids\n", n, len(exp.Schemas), admin.URL)
	return err
}
