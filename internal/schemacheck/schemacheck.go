// Package schemacheck is the schema gate behind `herald schema check` and
// `herald schema diff`: it compiles the .proto tree (from disk or from a
// git revision), finds the event files, and judges them with the
// compatibility rules of package compat, against the versions a registry
// holds or against another revision of the tree.
package schemacheck

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	validatepb "buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"github.com/bufbuild/protocompile"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/rest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/schema"
	"github.com/herald-events/herald/platform/schema/compat"
)

// Tree is a compiled .proto tree.
type Tree map[string]protoreflect.FileDescriptor

// Compile compiles every file of a tree given as path → text (paths
// relative to the import root, e.g. "herald/orders/v1/events.proto").
func Compile(files map[string]string) (Tree, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	c := protocompile.Compiler{
		Resolver: protocompile.CompositeResolver{
			protocompile.WithStandardImports(&protocompile.SourceResolver{
				Accessor: protocompile.SourceAccessorFromMap(files),
			}),
			protocompile.ResolverFunc(moduleImport),
		},
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	res, err := c.Compile(context.Background(), names...)
	if err != nil {
		return nil, fmt.Errorf("compile proto tree: %w", err)
	}
	out := Tree{}
	for _, f := range res {
		out[f.Path()] = f
		// An import taken from a Go module is part of the tree too, so a
		// diff compares it like any import.
		for i := range f.Imports().Len() {
			if imp := f.Imports().Get(i).FileDescriptor; imp.Path() == validatepb.File_buf_validate_validate_proto.Path() {
				out[imp.Path()] = imp
			}
		}
	}
	return out, nil
}

// moduleImport resolves the imports the contracts take from Go modules
// rather than from the tree: the protovalidate annotations, whose
// descriptor is the one the validator uses at run time.
func moduleImport(path string) (protocompile.SearchResult, error) {
	if path == validatepb.File_buf_validate_validate_proto.Path() {
		return protocompile.SearchResult{Desc: validatepb.File_buf_validate_validate_proto}, nil
	}
	return protocompile.SearchResult{}, protoregistry.NotFound
}

// ReadDir reads every .proto file under dir.
func ReadDir(dir string) (map[string]string, error) {
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".proto") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no .proto files under %s", dir)
	}
	return files, nil
}

// ReadGit reads every .proto file under dir as of a git revision. It
// returns no files (and no error) when dir did not exist at rev.
func ReadGit(rev, dir string) (map[string]string, error) {
	prefix, err := exec.Command("git", "rev-parse", "--show-prefix").Output()
	if err != nil {
		return nil, fmt.Errorf("git rev-parse: %w", gitErr(err))
	}
	dir = path.Clean(strings.TrimSpace(string(prefix)) + filepath.ToSlash(dir))
	out, err := exec.Command("git", "ls-tree", "-r", "--name-only", "--full-tree", rev, "--", dir+"/").Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-tree %s: %w", rev, gitErr(err))
	}
	files := map[string]string{}
	for _, p := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.HasSuffix(p, ".proto") {
			continue
		}
		b, err := exec.Command("git", "show", rev+":"+p).Output()
		if err != nil {
			return nil, fmt.Errorf("git show %s:%s: %w", rev, p, gitErr(err))
		}
		files[strings.TrimPrefix(p, dir+"/")] = string(b)
	}
	return files, nil
}

func gitErr(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}

// eventRoute reads the event option of a compiled message. Options of a
// compiled tree may hold the extension as unknown fields, so they are
// re-read with the linked extension types.
func eventRoute(md protoreflect.MessageDescriptor) (event.Route, bool) {
	opts, ok := md.Options().(*descriptorpb.MessageOptions)
	if !ok || opts == nil {
		return event.Route{}, false
	}
	b, err := proto.Marshal(opts)
	if err != nil {
		return event.Route{}, false
	}
	fresh := &descriptorpb.MessageOptions{}
	if err := (proto.UnmarshalOptions{Resolver: protoregistry.GlobalTypes}).Unmarshal(b, fresh); err != nil {
		return event.Route{}, false
	}
	r, err := event.RouteOfOptions(md, fresh)
	return r, err == nil
}

// Subject is one registry subject and the file it holds.
type Subject struct {
	Name string
	File protoreflect.FileDescriptor
}

// Subjects lists the subjects the tree's events are registered under (with
// strategy and namespace), followed by the subjects of their herald
// imports, which are registered under their file path.
func Subjects(tree Tree, strategy schema.Strategy, namespace string) []Subject {
	var out []Subject
	seen := map[string]bool{}
	add := func(name string, fd protoreflect.FileDescriptor) {
		if !seen[name] {
			seen[name] = true
			out = append(out, Subject{Name: name, File: fd})
		}
	}
	paths := make([]string, 0, len(tree))
	for p := range tree {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var imports []protoreflect.FileDescriptor
	for _, p := range paths {
		fd := tree[p]
		for i := range fd.Messages().Len() {
			md := fd.Messages().Get(i)
			r, ok := eventRoute(md)
			if !ok {
				continue
			}
			add(strategy.Subject(event.Namespaced(namespace, r.Topic), md), fd)
			imports = append(imports, fd)
		}
	}
	for len(imports) > 0 {
		fd := imports[0]
		imports = imports[1:]
		for i := range fd.Imports().Len() {
			imp := fd.Imports().Get(i).FileDescriptor
			if builtin(imp.Path()) {
				continue
			}
			if t, ok := tree[imp.Path()]; ok {
				imp = t
			}
			if !seen[imp.Path()] {
				add(imp.Path(), imp)
				imports = append(imports, imp)
			}
		}
	}
	return out
}

func builtin(path string) bool {
	return strings.HasPrefix(path, "google/protobuf/") || strings.HasPrefix(path, "google/type/") || strings.HasPrefix(path, "confluent/")
}

// Finding is the verdict for one subject.
type Finding struct {
	Subject    string             `json:"subject"`
	File       string             `json:"file"`
	Level      compat.Level       `json:"level"`
	Versions   int                `json:"versions_checked"`
	Note       string             `json:"note,omitempty"`
	Violations []compat.Violation `json:"violations"`
	// Warnings are rules tightened on what the newest version compared
	// already had (see [Warning]); they do not make the subject
	// incompatible.
	Warnings []Warning `json:"warnings,omitempty"`
}

// Report is the result of a check or diff.
type Report struct {
	Findings []Finding `json:"findings"`
}

// Compatible reports whether no subject has a violation.
func (r Report) Compatible() bool {
	for _, f := range r.Findings {
		if len(f.Violations) > 0 {
			return false
		}
	}
	return true
}

// Text renders the report for people.
func (r Report) Text() string {
	var b strings.Builder
	bad, warned := 0, 0
	for _, f := range r.Findings {
		status := "ok"
		if len(f.Violations) > 0 {
			status = "INCOMPATIBLE"
			bad++
		}
		fmt.Fprintf(&b, "%-13s %s (%s, %s, %d version(s) checked)", status, f.Subject, f.File, f.Level, f.Versions)
		if f.Note != "" {
			fmt.Fprintf(&b, ": %s", f.Note)
		}
		b.WriteString("\n")
		for _, v := range f.Violations {
			line := ""
			if v.Line > 0 {
				line = fmt.Sprintf("%s:%d: ", f.File, v.Line)
			}
			fmt.Fprintf(&b, "    %s%s %s: %s (%s, against version %d)\n", line, v.Rule, v.Path, v.Detail, v.Direction, v.Version)
		}
		for _, w := range f.Warnings {
			warned++
			line := ""
			if w.Line > 0 {
				line = fmt.Sprintf("%s:%d: ", f.File, w.Line)
			}
			fmt.Fprintf(&b, "    warning: %sRULE_TIGHTENED %s: %s\n", line, w.Path, w.Detail)
		}
	}
	if bad == 0 {
		fmt.Fprintf(&b, "all %d subject(s) compatible", len(r.Findings))
	} else {
		fmt.Fprintf(&b, "%d of %d subject(s) incompatible", bad, len(r.Findings))
	}
	if warned > 0 {
		fmt.Fprintf(&b, "; %d rule warning(s): old data may break the new rules", warned)
	}
	b.WriteString("\n")
	return b.String()
}

// CheckRegistry judges each subject of the tree against the versions the
// registry holds, at level (empty: the level the registry has for the
// subject, else its global level).
func CheckRegistry(client schemaregistry.Client, tree Tree, strategy schema.Strategy, namespace string, level compat.Level) (Report, error) {
	var rep Report
	for _, s := range Subjects(tree, strategy, namespace) {
		f := Finding{Subject: s.Name, File: s.File.Path(), Level: level, Violations: []compat.Violation{}}
		versions, err := client.GetAllVersions(s.Name)
		if notFound(err) {
			f.Note = "not registered yet: nothing to compare"
			if f.Level == "" {
				f.Level = compat.None
			}
			rep.Findings = append(rep.Findings, f)
			continue
		}
		if err != nil {
			return rep, fmt.Errorf("versions of %s: %w", s.Name, err)
		}
		if f.Level == "" {
			if f.Level, err = registryLevel(client, s.Name); err != nil {
				return rep, err
			}
		}
		var history []protoreflect.FileDescriptor
		for _, v := range versions {
			fd, err := fetch(client, s.Name, v)
			if err != nil {
				return rep, err
			}
			history = append(history, fd)
		}
		f.Versions = len(history)
		vs, err := compat.Check(f.Level, s.File, history)
		if err != nil {
			return rep, err
		}
		for i := range vs {
			vs[i].Version = versions[vs[i].Version-1]
		}
		f.Violations = append([]compat.Violation{}, vs...)
		f.Warnings = ruleChanges(s.File, history[len(history)-1])
		rep.Findings = append(rep.Findings, f)
	}
	return rep, nil
}

func notFound(err error) bool {
	var re *rest.Error
	return errors.As(err, &re) && (re.Code == 40401 || re.Code == 404)
}

func registryLevel(client schemaregistry.Client, subject string) (compat.Level, error) {
	c, err := client.GetCompatibility(subject)
	if err != nil {
		if c, err = client.GetDefaultCompatibility(); err != nil {
			return "", fmt.Errorf("compatibility level of %s: %w", subject, err)
		}
	}
	return compat.ParseLevel(c.String())
}

// Fetch compiles one registered version of a subject with its references.
func Fetch(client schemaregistry.Client, subject string, version int) (protoreflect.FileDescriptor, error) {
	return fetch(client, subject, version)
}

// fetch compiles one registered version with its references.
func fetch(client schemaregistry.Client, subject string, version int) (protoreflect.FileDescriptor, error) {
	md, err := client.GetSchemaMetadata(subject, version)
	if err != nil {
		return nil, fmt.Errorf("%s version %d: %w", subject, version, err)
	}
	deps := map[string]string{}
	if err := resolve(client, md.References, deps); err != nil {
		return nil, err
	}
	fd, err := compat.Parse(compat.Schema{Name: subject + ".proto", Text: md.Schema, Deps: deps})
	if err != nil {
		return nil, fmt.Errorf("%s version %d: %w", subject, version, err)
	}
	return fd, nil
}

func resolve(client schemaregistry.Client, refs []schemaregistry.Reference, deps map[string]string) error {
	for _, ref := range refs {
		if _, done := deps[ref.Name]; done {
			continue
		}
		md, err := client.GetSchemaMetadata(ref.Subject, ref.Version)
		if err != nil {
			return fmt.Errorf("reference %s (%s version %d): %w", ref.Name, ref.Subject, ref.Version, err)
		}
		deps[ref.Name] = md.Schema
		if err := resolve(client, md.References, deps); err != nil {
			return err
		}
	}
	return nil
}

// Diff judges the files of a new tree that hold events, or are imported by
// them, against the same files of an old tree, offline.
func Diff(next, old Tree, level compat.Level) (Report, error) {
	var rep Report
	for _, s := range Subjects(next, schema.TopicName, "") {
		f := Finding{Subject: s.Name, File: s.File.Path(), Level: level, Violations: []compat.Violation{}}
		prev, ok := old[s.File.Path()]
		if !ok {
			f.Note = "new file: nothing to compare"
			rep.Findings = append(rep.Findings, f)
			continue
		}
		f.Versions = 1
		vs, err := compat.Check(level, s.File, []protoreflect.FileDescriptor{prev})
		if err != nil {
			return rep, err
		}
		f.Violations = append([]compat.Violation{}, vs...)
		f.Warnings = ruleChanges(s.File, prev)
		rep.Findings = append(rep.Findings, f)
	}
	// An events file (or one of its imports) that disappeared is every
	// message in it removed: incompatible for new readers of old data.
	readsOld := level != compat.None && level != compat.Forward && level != compat.ForwardTransitive
	for _, s := range Subjects(old, schema.TopicName, "") {
		if _, ok := next[s.File.Path()]; !ok && readsOld {
			rep.Findings = append(rep.Findings, Finding{Subject: s.Name, File: s.File.Path(), Level: level, Versions: 1,
				Violations: []compat.Violation{{Difference: compat.Difference{Rule: compat.MessageRemoved, Path: s.File.Path(),
					Detail: "file removed"}, Direction: "BACKWARD", Version: 1}}})
		}
	}
	return rep, nil
}
