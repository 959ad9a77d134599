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
		if _, done := out[ref.Name]; done {
			continue
		}
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

// historyEntry is a version a new schema is checked against.
type historyEntry struct {
	version int
	typ     string
	text    string
	in      compileInput
}

// history lists the versions a new schema for subject is checked against
// at the subject's level: only (when given) alone, else the live versions.
// The caller holds r.mu.
func (r *Registry) history(subject string, only *versionRecord) ([]historyEntry, error) {
	var versions []versionRecord
	if only != nil {
		versions = []versionRecord{*only}
	} else if s, ok := r.st.Subjects[subject]; ok {
		versions = s.live()
	}
	out := make([]historyEntry, 0, len(versions))
	for _, v := range versions {
		sc := r.st.Schemas[v.ID]
		in, err := r.input(sc.Type, sc.Schema, sc.References)
		if err != nil {
			r.cfg.Logger.Warn("registry: a stored schema's reference does not resolve", "subject", subject, "version", v.Version, "err", err)
		}
		out = append(out, historyEntry{version: v.Version, typ: sc.Type, text: sc.Schema, in: in})
	}
	return out, nil
}

// verdict checks a prepared schema against history at subject's level
// (with only one version given, in the level's direction against it) and
// returns the violations in the layout of Confluent's registry: for each
// version found incompatible, one {errorType, description} message per
// violation, then {oldSchemaVersion}, {oldSchema} and {compatibility}.
// None means compatible. It releases r.mu while compiling the history;
// the caller holds it.
func (r *Registry) verdict(subject string, p *prepared, history []historyEntry, single bool) ([]string, error) {
	level := r.levelOf(subject)
	levelName := string(level)
	if level == compat.None || len(history) == 0 {
		return nil, nil
	}
	if single {
		level = compat.Level(strings.TrimSuffix(string(level), "_TRANSITIVE"))
	}
	against := history
	if !strings.HasSuffix(string(level), "_TRANSITIVE") {
		against = history[len(history)-1:]
	}
	// Latest first, as Confluent reports.
	var msgs []string
	r.mu.Unlock()
	defer r.mu.Lock()
	for i := len(against) - 1; i >= 0; i-- {
		h := against[i]
		var found []string
		switch {
		case h.typ != p.in.SchemaType:
			found = []string{`{errorType:"DIFFERENT_SCHEMA_TYPE", description:"Incompatible because of different schema type"}`}
		case h.typ == "PROTOBUF":
			old := r.compiler.compile(h.in)
			if old.err != nil {
				r.cfg.Logger.Warn("registry: stored schema does not parse; skipped in compatibility check",
					"subject", subject, "version", h.version, "err", old.err)
				continue
			}
			vs, err := compat.Check(compat.Level(strings.TrimSuffix(string(level), "_TRANSITIVE")), p.c.fd, []protoreflect.FileDescriptor{old.fd})
			if err != nil {
				return nil, err
			}
			for _, v := range vs {
				found = append(found, violationMessage(v))
			}
		}
		if len(found) == 0 {
			continue
		}
		msgs = append(msgs, found...)
		msgs = append(msgs,
			fmt.Sprintf("{oldSchemaVersion: %d}", h.version),
			fmt.Sprintf("{oldSchema: '%s'}", h.text),
			fmt.Sprintf("{compatibility: '%s'}", levelName))
	}
	return msgs, nil
}

// violationMessage writes a violation as Confluent's registry does, with
// herald's detail (the line, the element and what changed) as the
// description.
func violationMessage(v compat.Violation) string {
	loc := ""
	if v.Line > 0 {
		loc = fmt.Sprintf("line %d: ", v.Line)
	}
	desc := fmt.Sprintf("%s%s: %s (%s)", loc, v.Path, v.Detail, v.Direction)
	return fmt.Sprintf("{errorType:%q, description:%q}", v.Rule, desc)
}

func (r *Registry) compatibility(req *http.Request) (any, error) {
	name := req.PathValue("subject")
	verbose := boolParam(req, "verbose")
	in, err := decodeSchemaRequest(req)
	if err != nil {
		return nil, err
	}
	answer := func(msgs []string) any {
		out := map[string]any{"is_compatible": len(msgs) == 0}
		if verbose {
			if msgs == nil {
				msgs = []string{}
			}
			out["messages"] = msgs
		}
		return out
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var only *versionRecord
	if v := req.PathValue("version"); v != "" {
		rec, err := r.findVersion(name, v, false)
		switch {
		case err != nil && (v == "latest" || v == "-1") && len(r.liveVersions(name)) == 0:
			// As Confluent's registry: nothing to be incompatible with.
			return answer(nil), nil
		case err != nil:
			return nil, err
		}
		only = &rec
	}
	p, err := r.prepare(in)
	if err != nil {
		if ae := (*apiError)(nil); verbose && asAPIError(err, &ae) && ae.Code == codeInvalidSchema {
			return answer([]string{ae.Msg}), nil
		}
		return nil, err
	}
	history, err := r.history(name, only)
	if err != nil {
		return nil, err
	}
	msgs, err := r.verdict(name, p, history, only != nil)
	if err != nil {
		return nil, err
	}
	return answer(msgs), nil
}

// liveVersions returns the live versions of a subject (none when it does
// not exist); the caller holds r.mu.
func (r *Registry) liveVersions(subject string) []versionRecord {
	if s, ok := r.st.Subjects[subject]; ok {
		return s.live()
	}
	return nil
}
