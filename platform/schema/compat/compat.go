// Package compat decides whether a new version of a protobuf schema may
// follow earlier ones, with the rules and levels of Confluent Schema
// Registry for PROTOBUF schemas.
//
// [Compare] lists the differences from an original schema to an update, each
// tagged with a rule name (FIELD_SCALAR_KIND_CHANGED, MESSAGE_REMOVED, ...)
// and whether readers of the update can still read data written with the
// original. [Check] applies a [Level] to a new schema and its history:
// BACKWARD compares the latest version with the new one, FORWARD the other
// way round, FULL both, and the *_TRANSITIVE levels every earlier version.
// [Parse] compiles schema text, with its imports, using protocompile.
package compat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Level is a compatibility level.
type Level string

// The compatibility levels.
const (
	None               Level = "NONE"
	Backward           Level = "BACKWARD"
	BackwardTransitive Level = "BACKWARD_TRANSITIVE"
	Forward            Level = "FORWARD"
	ForwardTransitive  Level = "FORWARD_TRANSITIVE"
	Full               Level = "FULL"
	FullTransitive     Level = "FULL_TRANSITIVE"
)

// Levels lists every level.
var Levels = []Level{Backward, BackwardTransitive, Forward, ForwardTransitive, Full, FullTransitive, None}

// ParseLevel reads a level name, case-insensitively.
func ParseLevel(s string) (Level, error) {
	l := Level(strings.ToUpper(s))
	if !slices.Contains(Levels, l) {
		return "", fmt.Errorf("unknown compatibility level %q (want one of %v)", s, Levels)
	}
	return l, nil
}

// Schema is the text of one .proto file and the files it imports, keyed by
// import path. Standard imports (google/protobuf/...) need not be given.
type Schema struct {
	Name string // file name used in messages; default "schema.proto"
	Text string
	Deps map[string]string
}

// Parse compiles a schema.
func Parse(s Schema) (protoreflect.FileDescriptor, error) {
	name := s.Name
	if name == "" {
		name = "schema.proto"
	}
	files := map[string]string{name: s.Text}
	for k, v := range s.Deps {
		if k != name {
			files[k] = v
		}
	}
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
			Accessor: protocompile.SourceAccessorFromMap(files),
		}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	res, err := c.Compile(context.Background(), name)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	return res[0], nil
}

// Difference is one change between two versions of a schema.
type Difference struct {
	// Rule names the kind of change, as in Confluent's registry.
	Rule string `json:"rule"`
	// Path is the full name of the element, e.g. "pkg.Order.amount".
	Path string `json:"path"`
	// Compatible reports whether readers of the update can read data
	// written with the original despite the change.
	Compatible bool `json:"compatible"`
	// Detail says what changed, e.g. "int32 → string".
	Detail string `json:"detail"`
}

// Violation is an incompatible difference found by [Check].
type Violation struct {
	Difference
	// Direction is "BACKWARD" (new schema reading old data) or "FORWARD"
	// (old schema reading new data).
	Direction string `json:"direction"`
	// Version is the index (1-based) in the history of the version the new
	// schema was compared with.
	Version int `json:"version"`
	// Line is the line in the new schema where the element is declared
	// (1-based), or 0 when it does not exist there.
	Line int `json:"line,omitempty"`
}

func (v Violation) String() string {
	loc := ""
	if v.Line > 0 {
		loc = fmt.Sprintf("line %d: ", v.Line)
	}
	return fmt.Sprintf("%s%s %s: %s (%s, against version %d)", loc, v.Rule, v.Path, v.Detail, v.Direction, v.Version)
}

// Check tests a new schema against its history (oldest first) at a level
// and returns the violations, none when the new schema may be registered.
func Check(level Level, next protoreflect.FileDescriptor, history []protoreflect.FileDescriptor) ([]Violation, error) {
	if len(history) == 0 || level == None {
		return nil, nil
	}
	var (
		against   []int
		backward  bool
		forward   bool
		lastIndex = len(history) - 1
	)
	switch level {
	case Backward, Forward, Full:
		against = []int{lastIndex}
	case BackwardTransitive, ForwardTransitive, FullTransitive:
		for i := range history {
			against = append(against, i)
		}
	default:
		return nil, fmt.Errorf("unknown compatibility level %q", level)
	}
	switch level {
	case Backward, BackwardTransitive:
		backward = true
	case Forward, ForwardTransitive:
		forward = true
	default:
		backward, forward = true, true
	}
	var out []Violation
	for _, i := range against {
		old := history[i]
		if backward {
			out = append(out, violations(Compare(old, next), "BACKWARD", i+1, next)...)
		}
		if forward {
			out = append(out, violations(Compare(next, old), "FORWARD", i+1, next)...)
		}
	}
	return out, nil
}

func violations(diffs []Difference, direction string, version int, next protoreflect.FileDescriptor) []Violation {
	var out []Violation
	for _, d := range diffs {
		if d.Compatible {
			continue
		}
		out = append(out, Violation{Difference: d, Direction: direction, Version: version, Line: lineOf(next, d.Path)})
	}
	return out
}

// lineOf finds the declaration of a full name (or of its closest declared
// parent) in fd.
func lineOf(fd protoreflect.FileDescriptor, path string) int {
	for p := path; p != ""; {
		if d := find(fd, protoreflect.FullName(p)); d != nil {
			if loc := fd.SourceLocations().ByDescriptor(d); loc.StartLine >= 0 && (loc.StartLine > 0 || loc.EndLine > 0 || loc.StartColumn > 0) {
				return loc.StartLine + 1
			}
		}
		i := strings.LastIndex(p, ".")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

func find(fd protoreflect.FileDescriptor, name protoreflect.FullName) protoreflect.Descriptor {
	var found protoreflect.Descriptor
	walkMessages(fd.Messages(), func(md protoreflect.MessageDescriptor) {
		if found != nil {
			return
		}
		if md.FullName() == name {
			found = md
			return
		}
		if f := md.Fields().ByName(name.Name()); f != nil && f.FullName() == name {
			found = f
		}
	})
	return found
}

func walkMessages(ms protoreflect.MessageDescriptors, fn func(protoreflect.MessageDescriptor)) {
	for i := range ms.Len() {
		md := ms.Get(i)
		if md.IsMapEntry() {
			continue
		}
		fn(md)
		walkMessages(md.Messages(), fn)
	}
}

// ErrIncompatible is wrapped by errors that report violations.
var ErrIncompatible = errors.New("incompatible schema")
