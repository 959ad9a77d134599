package registry

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/herald-events/herald/platform/schema/compat"
)

// levelOf returns the compatibility level in force for a subject; the
// caller holds r.mu.
func (r *Registry) levelOf(subject string) compat.Level {
	if s, ok := r.st.Subjects[subject]; ok && s.Compatibility != "" {
		return compat.Level(s.Compatibility)
	}
	return compat.Level(r.st.Compatibility)
}

// deps collects the texts of a schema's references, recursively, keyed by
// import name; the caller holds r.mu.
func (r *Registry) deps(refs []Reference, out map[string]string) error {
	for _, ref := range refs {
		v, err := r.findVersion(ref.Subject, strconv.Itoa(ref.Version), true)
		if err != nil {
			return fmt.Errorf("reference %s: %w", ref.Name, err)
		}
		sc := r.st.Schemas[v.ID]
		out[ref.Name] = sc.Schema
		if err := r.deps(sc.References, out); err != nil {
			return err
		}
	}
	return nil
}

// parse compiles a PROTOBUF schema with its references; the caller holds
// r.mu.
func (r *Registry) parse(text string, refs []Reference) (protoreflect.FileDescriptor, error) {
	deps := map[string]string{}
	if err := r.deps(refs, deps); err != nil {
		return nil, err
	}
	return compat.Parse(compat.Schema{Text: text, Deps: deps})
}

// check tests a PROTOBUF schema against the versions of a subject at the
// subject's level. With onlyVersion set it compares with that version alone
// (in the level's direction). It returns the violations as messages; the
// caller holds r.mu.
func (r *Registry) check(subject string, in schemaRequest, only *versionRecord) ([]string, error) {
	level := r.levelOf(subject)
	if in.SchemaType != "PROTOBUF" || level == compat.None {
		return nil, nil
	}
	next, err := r.parse(in.Schema, in.References)
	if err != nil {
		return nil, errf(http.StatusUnprocessableEntity, codeInvalidSchema, "Invalid schema: %v", err)
	}
	var versions []versionRecord
	if only != nil {
		versions = []versionRecord{*only}
		level = compat.Level(strings.TrimSuffix(string(level), "_TRANSITIVE"))
	} else if s, ok := r.st.Subjects[subject]; ok {
		versions = s.live()
	}
	var history []protoreflect.FileDescriptor
	for _, v := range versions {
		sc := r.st.Schemas[v.ID]
		if sc.Type != "PROTOBUF" {
			continue
		}
		fd, err := r.parse(sc.Schema, sc.References)
		if err != nil {
			r.cfg.Logger.Warn("registry: stored schema does not parse; skipped in compatibility check",
				"subject", subject, "version", v.Version, "err", err)
			continue
		}
		history = append(history, fd)
	}
	vs, err := compat.Check(level, next, history)
	if err != nil {
		return nil, err
	}
	msgs := make([]string, len(vs))
	for i, v := range vs {
		// Name the version by its subject version number.
		v.Version = versions[v.Version-1].Version
		msgs[i] = v.String()
	}
	return msgs, nil
}

func (r *Registry) compatibility(req *http.Request) (any, error) {
	name := req.PathValue("subject")
	in, err := decodeSchemaRequest(req)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var only *versionRecord
	if v := req.PathValue("version"); v != "" {
		rec, err := r.findVersion(name, v, false)
		if err != nil {
			return nil, err
		}
		only = &rec
	}
	msgs, err := r.check(name, in, only)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"is_compatible": len(msgs) == 0}
	if boolParam(req, "verbose") {
		if msgs == nil {
			msgs = []string{}
		}
		out["messages"] = msgs
	}
	return out, nil
}
