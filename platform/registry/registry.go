// Package registry is an embedded schema registry that speaks the Confluent
// Schema Registry REST API, for `herald dev` and for tests.
//
// It keeps subjects, versions, schema ids, references and compatibility
// configuration, optionally persisted in a JSON file so a restart keeps the
// ids that records on disk refer to. Compatibility levels are enforced for
// PROTOBUF schemas with Confluent's rules (package compat): an incompatible
// registration answers 409 (error code 40901) with the reasons in
// Confluent's message layout, and POST /compatibility answers truthfully.
//
// # Schemas are compared by content
//
// Every schema is parsed, at every level: PROTOBUF schemas are compiled
// with their references, AVRO and JSON ones must be JSON. A PROTOBUF
// schema may be given as .proto text or, as confluent-kafka-python sends
// it, as a base64 FileDescriptorProto (stored as text then); format=serialized
// gives any PROTOBUF schema back in that form. The same schema written
// differently (comments, spacing, serialized) is the same schema: it gets
// the same id in every subject and is found by lookup. With normalize=true
// the order of imports, options, fields and references does not matter
// either. Imports of confluent/meta.proto, confluent/type/decimal.proto,
// google/type/* and google/protobuf/* resolve without references, as in
// Confluent's registry.
//
// Compilation runs outside the registry's lock (and is cached by
// content), so a large schema does not hold up other requests; a change
// that compiled while the registry changed looks again.
//
// # Hardening
//
// Request bodies must be JSON (Confluent's content types or
// application/json; others get 415, so a web page cannot post a form or
// text/plain to it) and at most [Config.MaxBodyBytes] (413). Basic auth
// has a read-write and a read-only user, compared in constant time.
// Paths and methods that do not exist get JSON errors too.
//
// Modes work as in Confluent's registry (GET/PUT /mode, GET/PUT/DELETE
// /mode/{subject}): [ModeReadOnly] refuses changes, and [ModeImport]
// accepts registrations that carry their own "id" and "version", so the
// contents of a lost registry can be put back with the ids that records
// on the bus refer to (`herald schema import`). New ids continue above
// the highest imported one. Modes are persisted with the rest.
package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Confluent error codes used in responses.
const (
	codeUnauthorized         = 40101
	codeForbidden            = 40301
	codeSubjectNotFound      = 40401
	codeVersionNotFound      = 40402
	codeSchemaNotFound       = 40403
	codeSubjectSoftDeleted   = 40404
	codeSubjectNotSoftDel    = 40405
	codeVersionSoftDeleted   = 40406
	codeVersionNotSoftDel    = 40407
	codeIncompatible         = 40901
	codeInvalidSchema        = 42201
	codeInvalidVersion       = 42202
	codeInvalidCompatibility = 42203
	codeReferenceExists      = 42206
	codeInternal             = 50001
)

// Levels are the compatibility levels the registry accepts.
var Levels = []string{"BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE"}

// Reference is a schema reference: an import name resolved by a subject
// version.
type Reference struct {
	Name    string `json:"name"`
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

type schemaRecord struct {
	ID         int         `json:"id"`
	Type       string      `json:"schemaType"`
	Schema     string      `json:"schema"`
	References []Reference `json:"references,omitempty"`
}

type versionRecord struct {
	Version int  `json:"version"`
	ID      int  `json:"id"`
	Deleted bool `json:"deleted,omitempty"`
}

type subjectRecord struct {
	Versions      []versionRecord `json:"versions"`
	Compatibility string          `json:"compatibility,omitempty"`
	Mode          string          `json:"mode,omitempty"`
}

type state struct {
	NextID        int                       `json:"next_id"`
	Schemas       map[int]*schemaRecord     `json:"schemas"`
	Subjects      map[string]*subjectRecord `json:"subjects"`
	Compatibility string                    `json:"compatibility"`
	Mode          string                    `json:"mode,omitempty"`
}

// Config configures a [Registry].
type Config struct {
	// File persists the registry's state; empty keeps it in memory.
	File string
	// User and Password, when User is set, require HTTP basic auth; this
	// user may read and change everything.
	User, Password string
	// ReadOnlyUser and ReadOnlyPassword, when ReadOnlyUser is set, name a
	// second user who may only read: look schemas up, fetch them and
	// test compatibility. Changes answer 403 (error code 40301). Setting
	// it without User also requires basic auth.
	ReadOnlyUser, ReadOnlyPassword string
	// MaxBodyBytes bounds a request body; a larger one is refused with
	// 413. Default [DefaultMaxBodyBytes].
	MaxBodyBytes int64
	// Logger receives request errors. Default: [slog.Default].
	Logger *slog.Logger
}

// DefaultMaxBodyBytes is the default bound on a request body: room for
// schemas far larger than any real one, small enough that a careless or
// hostile client cannot fill the registry's memory and file.
const DefaultMaxBodyBytes = 4 << 20

// schemaKey identifies a stored schema for lookups: canon compares the
// schema as written (comments and spacing aside), norm after Confluent's
// normalization. Both include the type and the references.
type schemaKey struct {
	canon, norm string
}

// Registry is the embedded registry. Serve it with [Registry.Handler].
type Registry struct {
	cfg      Config
	compiler *compiler

	mu   sync.Mutex
	st   state
	keys map[int]schemaKey
	// gen counts changes to st; a request that compiled outside mu
	// commits only if nothing changed meanwhile, and starts again if it
	// did.
	gen uint64
}

// New opens a registry, loading cfg.File when it exists.
func New(cfg Config) (*Registry, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	builtins, err := builtinFiles()
	if err != nil {
		return nil, err
	}
	r := &Registry{
		cfg:      cfg,
		compiler: &compiler{builtins: builtins, cache: map[string]*compiled{}},
		keys:     map[int]schemaKey{},
		st: state{
			NextID:        1,
			Schemas:       map[int]*schemaRecord{},
			Subjects:      map[string]*subjectRecord{},
			Compatibility: "BACKWARD",
		},
	}
	if cfg.File == "" {
		return r, nil
	}
	b, err := os.ReadFile(cfg.File)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return r, nil
	case err != nil:
		return nil, fmt.Errorf("registry: read %s: %w", cfg.File, err)
	}
	if err := json.Unmarshal(b, &r.st); err != nil {
		return nil, fmt.Errorf("registry: parse %s: %w", cfg.File, err)
	}
	for id, sc := range r.st.Schemas {
		in, err := r.input(sc.Type, sc.Schema, sc.References)
		if err != nil {
			cfg.Logger.Warn("registry: stored schema has a broken reference", "id", id, "err", err)
		}
		r.keys[id] = r.keyOf(r.compiler.compile(in), sc.Type, sc.Schema, sc.References)
	}
	return r, nil
}

// keyOf returns the key of a compiled schema; a schema that does not
// compile (stored before the registry parsed everything) is keyed by its
// text.
func (r *Registry) keyOf(c *compiled, typ, text string, refs []Reference) schemaKey {
	canon, norm := c.canon, c.norm
	if c.err != nil {
		canon, norm = strings.TrimSpace(text), strings.TrimSpace(text)
	}
	sortedRefs := slices.Clone(refs)
	slices.SortFunc(sortedRefs, func(a, b Reference) int { return strings.Compare(a.Name, b.Name) })
	return schemaKey{
		canon: fmt.Sprintf("%s\x00%v\x00%s", typ, refs, canon),
		norm:  fmt.Sprintf("%s\x00%v\x00%s", typ, sortedRefs, norm),
	}
}

func (k schemaKey) matches(o schemaKey, normalize bool) bool {
	if normalize {
		return k.norm == o.norm
	}
	return k.canon == o.canon
}

// save writes the state atomically and counts the change; the caller
// holds r.mu.
func (r *Registry) save() error {
	r.gen++
	if r.cfg.File == "" {
		return nil
	}
	b, err := json.MarshalIndent(&r.st, "", " ")
	if err != nil {
		return err
	}
	tmp := r.cfg.File + ".tmp"
	if err := os.MkdirAll(filepath.Dir(r.cfg.File), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, r.cfg.File)
}

type apiError struct {
	status int
	Code   int    `json:"error_code"`
	Msg    string `json:"message"`
}

func (e *apiError) Error() string { return e.Msg }

func errf(status, code int, format string, args ...any) *apiError {
	return &apiError{status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// page applies ?offset= and ?limit= to a list answer, as Confluent's
// registry does (limit -1 or absent: everything from offset).
func page[T any](req *http.Request, list []T) []T {
	q := req.URL.Query()
	offset, _ := strconv.Atoi(q.Get("offset"))
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit < 0 {
		limit = len(list)
	}
	offset = min(max(offset, 0), len(list))
	return list[offset:min(len(list), offset+limit)]
}

func boolParam(req *http.Request, name string) bool {
	b, _ := strconv.ParseBool(req.URL.Query().Get(name))
	return b
}

func (r *Registry) listSubjects(req *http.Request) (any, error) {
	deleted, deletedOnly := boolParam(req, "deleted"), boolParam(req, "deletedOnly")
	prefix := req.URL.Query().Get("subjectPrefix")
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []string{}
	for name, s := range r.st.Subjects {
		if !strings.HasPrefix(name, prefix) || len(s.Versions) == 0 {
			continue
		}
		live := len(s.live()) > 0
		if deletedOnly && len(s.live()) == len(s.Versions) {
			continue
		}
		if deletedOnly || deleted || live {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return page(req, out), nil
}

func (s *subjectRecord) live() []versionRecord {
	var out []versionRecord
	for _, v := range s.Versions {
		if !v.Deleted {
			out = append(out, v)
		}
	}
	return out
}

// subject returns a subject with at least one version visible under
// deleted; the caller holds r.mu.
func (r *Registry) subject(name string, deleted bool) (*subjectRecord, error) {
	s, ok := r.st.Subjects[name]
	if !ok || len(s.Versions) == 0 || (!deleted && len(s.live()) == 0) {
		return nil, errf(http.StatusNotFound, codeSubjectNotFound, "Subject '%s' not found.", name)
	}
	return s, nil
}

func (r *Registry) listVersions(req *http.Request) (any, error) {
	name := req.PathValue("subject")
	deleted, deletedOnly := boolParam(req, "deleted"), boolParam(req, "deletedOnly")
	r.mu.Lock()
	defer r.mu.Unlock()
	s, err := r.subject(name, deleted || deletedOnly)
	if err != nil {
		return nil, err
	}
	out := []int{}
	for _, v := range s.Versions {
		if (deletedOnly && v.Deleted) || (!deletedOnly && (deleted || !v.Deleted)) {
			out = append(out, v.Version)
		}
	}
	return page(req, out), nil
}

type versionResponse struct {
	Subject    string      `json:"subject"`
	Version    int         `json:"version"`
	ID         int         `json:"id"`
	SchemaType string      `json:"schemaType,omitempty"`
	Schema     string      `json:"schema"`
	References []Reference `json:"references,omitempty"`
}

// findVersion resolves "latest", "-1" or a number; the caller holds r.mu.
func (r *Registry) findVersion(name, version string, deleted bool) (versionRecord, error) {
	n := 0
	if version != "latest" && version != "-1" {
		var err error
		n, err = strconv.Atoi(version)
		if err != nil || n <= 0 {
			return versionRecord{}, errf(http.StatusUnprocessableEntity, codeInvalidVersion,
				"The specified version '%s' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"", version)
		}
	}
	s, err := r.subject(name, deleted)
	if err != nil {
		return versionRecord{}, err
	}
	var candidates []versionRecord
	for _, v := range s.Versions {
		if deleted || !v.Deleted {
			candidates = append(candidates, v)
		}
	}
	if n == 0 {
		if len(candidates) == 0 {
			return versionRecord{}, errf(http.StatusNotFound, codeVersionNotFound, "Version latest not found.")
		}
		return candidates[len(candidates)-1], nil
	}
	for _, v := range candidates {
		if v.Version == n {
			return v, nil
		}
	}
	return versionRecord{}, errf(http.StatusNotFound, codeVersionNotFound, "Version %d not found.", n)
}

func (r *Registry) versionResponse(subject string, v versionRecord) versionResponse {
	sc := r.st.Schemas[v.ID]
	resp := versionResponse{Subject: subject, Version: v.Version, ID: v.ID, Schema: sc.Schema, References: sc.References}
	if sc.Type != "AVRO" {
		resp.SchemaType = sc.Type
	}
	return resp
}

// formatted applies ?format= to a schema answer: "serialized" gives a
// PROTOBUF schema as a base64 FileDescriptorProto, as Confluent's
// registry does. It compiles outside r.mu.
func (r *Registry) formatted(req *http.Request, typ string, schema *string, in compileInput) error {
	if req.URL.Query().Get("format") != "serialized" || typ != "PROTOBUF" {
		return nil
	}
	c := r.compiler.compile(in)
	if c.err != nil {
		return errf(http.StatusUnprocessableEntity, codeInvalidSchema, "Invalid schema: %v", c.err)
	}
	s, err := serializedForm(c)
	if err != nil {
		return err
	}
	*schema = s
	return nil
}

// input gathers what compiling a stored or given schema needs; the caller
// holds r.mu.
func (r *Registry) input(typ, text string, refs []Reference) (compileInput, error) {
	in := compileInput{typ: typ, text: text, deps: map[string]string{}}
	if typ != "PROTOBUF" {
		return in, nil
	}
	return in, r.deps(refs, in.deps)
}

func (r *Registry) getVersion(req *http.Request) (any, error) {
	name := req.PathValue("subject")
	r.mu.Lock()
	v, err := r.findVersion(name, req.PathValue("version"), boolParam(req, "deleted"))
	if err != nil {
		r.mu.Unlock()
		return nil, err
	}
	resp := r.versionResponse(name, v)
	in, _ := r.input(resp.schemaType(), resp.Schema, resp.References)
	r.mu.Unlock()
	return resp, r.formatted(req, resp.schemaType(), &resp.Schema, in)
}

func (v versionResponse) schemaType() string {
	if v.SchemaType == "" {
		return "AVRO"
	}
	return v.SchemaType
}

func (r *Registry) referencedBy(req *http.Request) (any, error) {
	name := req.PathValue("subject")
	deleted := boolParam(req, "deleted")
	r.mu.Lock()
	defer r.mu.Unlock()
	v, err := r.findVersion(name, req.PathValue("version"), deleted)
	if err != nil {
		return nil, err
	}
	return page(req, r.referrers(name, v.Version, deleted)), nil
}

// referrers lists the ids of the schemas, registered under some subject
// version, that reference subject's version; the caller holds r.mu.
func (r *Registry) referrers(subject string, version int, deleted bool) []int {
	out := []int{}
	for _, s := range r.st.Subjects {
		for _, v := range s.Versions {
			if v.Deleted && !deleted || slices.Contains(out, v.ID) {
				continue
			}
			if slices.ContainsFunc(r.st.Schemas[v.ID].References, func(ref Reference) bool {
				return ref.Subject == subject && ref.Version == version
			}) {
				out = append(out, v.ID)
			}
		}
	}
	slices.Sort(out)
	return out
}

type schemaRequest struct {
	Schema     string      `json:"schema"`
	SchemaType string      `json:"schemaType"`
	References []Reference `json:"references"`
	// ID and Version are only accepted in IMPORT mode.
	ID      int `json:"id,omitempty"`
	Version int `json:"version,omitempty"`
}

func decodeSchemaRequest(req *http.Request) (schemaRequest, error) {
	var in schemaRequest
	if err := decodeBody(req, &in); err != nil {
		return in, err
	}
	if in.SchemaType == "" {
		in.SchemaType = "AVRO"
	}
	in.SchemaType = strings.ToUpper(in.SchemaType)
	if strings.TrimSpace(in.Schema) == "" {
		return in, errf(http.StatusUnprocessableEntity, codeInvalidSchema, "Invalid schema: empty")
	}
	switch in.SchemaType {
	case "AVRO", "JSON", "PROTOBUF":
	default:
		return in, errf(http.StatusUnprocessableEntity, codeInvalidSchema, "Invalid schema type %s", in.SchemaType)
	}
	return in, nil
}

// checkReferences makes sure every reference resolves; the caller holds r.mu.
func (r *Registry) checkReferences(refs []Reference) error {
	for _, ref := range refs {
		if _, err := r.findVersion(ref.Subject, strconv.Itoa(ref.Version), false); err != nil {
			return errf(http.StatusUnprocessableEntity, codeInvalidSchema,
				"Invalid schema: reference %s -> %s version %d does not resolve", ref.Name, ref.Subject, ref.Version)
		}
	}
	return nil
}

// prepared is a schema request compiled outside r.mu.
type prepared struct {
	in  schemaRequest
	c   *compiled
	key schemaKey
}

// prepare resolves in's references and compiles it, releasing r.mu for
// the compilation: the caller holds r.mu, and holds it again on return.
// A schema that does not compile is an invalid schema (42201).
func (r *Registry) prepare(in schemaRequest) (*prepared, error) {
	if err := r.checkReferences(in.References); err != nil {
		return nil, err
	}
	ci, err := r.input(in.SchemaType, in.Schema, in.References)
	if err != nil {
		return nil, errf(http.StatusUnprocessableEntity, codeInvalidSchema, "Invalid schema: %v", err)
	}
	r.mu.Unlock()
	c := r.compiler.compile(ci)
	r.mu.Lock()
	if c.err != nil {
		return nil, errf(http.StatusUnprocessableEntity, codeInvalidSchema, "Invalid schema: %v", c.err)
	}
	return &prepared{in: in, c: c, key: r.keyOf(c, in.SchemaType, c.text, in.References)}, nil
}

// maxAttempts bounds how often a change that compiled outside the lock
// starts again because the registry changed meanwhile; compilations are
// cached, so later attempts are quick.
const maxAttempts = 16

func (r *Registry) register(req *http.Request) (any, error) {
	name := req.PathValue("subject")
	in, err := decodeSchemaRequest(req)
	if err != nil {
		return nil, err
	}
	normalize := boolParam(req, "normalize")
	r.mu.Lock()
	defer r.mu.Unlock()
	for range maxAttempts {
		gen := r.gen
		if err := r.writable(name); err != nil {
			return nil, err
		}
		if in.ID != 0 || in.Version != 0 {
			if r.modeOf(name) != ModeImport {
				return nil, errf(http.StatusUnprocessableEntity, codeNotPermitted,
					"Subject %s is not in import mode: a schema id or version may only be given in IMPORT mode", name)
			}
		}
		p, err := r.prepare(in)
		if err != nil {
			return nil, err
		}
		if normalize {
			p.in.Schema = p.c.normText
		} else {
			p.in.Schema = p.c.text
		}
		var history []historyEntry
		if in.ID == 0 && in.Version == 0 {
			if v, ok := r.existing(name, p.key, normalize); ok {
				return map[string]int{"id": v.ID, "version": v.Version}, nil
			}
			if history, err = r.history(name, nil); err != nil {
				return nil, err
			}
		}
		if r.gen != gen {
			continue // changed while compiling: look again
		}
		if in.ID != 0 || in.Version != 0 {
			return r.importSchema(name, p)
		}
		msgs, err := r.verdict(name, p, history, false)
		if err != nil {
			return nil, err
		}
		if r.gen != gen {
			continue
		}
		if len(msgs) > 0 {
			return nil, errf(http.StatusConflict, codeIncompatible,
				"Schema being registered is incompatible with an earlier schema for subject \"%s\", details: [%s]",
				name, strings.Join(msgs, ", "))
		}
		return r.add(name, p, normalize)
	}
	return nil, errf(http.StatusInternalServerError, codeInternal, "registry changed too often while registering to %s; try again", name)
}

// existing finds a live version of subject holding the schema; the
// caller holds r.mu.
func (r *Registry) existing(subject string, key schemaKey, normalize bool) (versionRecord, bool) {
	s := r.st.Subjects[subject]
	if s == nil {
		return versionRecord{}, false
	}
	for _, v := range s.live() {
		if r.keys[v.ID].matches(key, normalize) {
			return v, true
		}
	}
	return versionRecord{}, false
}

// add registers a prepared schema as the subject's next version, under
// the id the same schema has elsewhere or a new one; the caller holds
// r.mu.
func (r *Registry) add(name string, p *prepared, normalize bool) (any, error) {
	id := 0
	for sid := range r.st.Schemas {
		if r.keys[sid].matches(p.key, normalize) && (id == 0 || sid < id) {
			id = sid
		}
	}
	if id == 0 {
		id = r.st.NextID
		r.st.NextID++
		r.st.Schemas[id] = &schemaRecord{ID: id, Type: p.in.SchemaType, Schema: p.in.Schema, References: p.in.References}
		r.keys[id] = p.key
	}
	s := r.st.Subjects[name]
	if s == nil {
		s = &subjectRecord{}
		r.st.Subjects[name] = s
	}
	next := 1
	if n := len(s.Versions); n > 0 {
		next = s.Versions[n-1].Version + 1
	}
	s.Versions = append(s.Versions, versionRecord{Version: next, ID: id})
	if err := r.save(); err != nil {
		return nil, err
	}
	r.cfg.Logger.Info("schema registered", "subject", name, "version", next, "id", id)
	return map[string]int{"id": id, "version": next}, nil
}

// importSchema registers p under name with the id (and version, when
// given) it carries; the caller holds r.mu. The id must be free or
// already name the same schema, and the version free or already name that
// id. Compatibility is not checked: an import copies history as it was.
func (r *Registry) importSchema(name string, p *prepared) (any, error) {
	in := p.in
	if in.ID <= 0 || in.Version < 0 {
		return nil, errf(http.StatusUnprocessableEntity, codeInvalidSchema,
			"Invalid import of subject %s: id %d, version %d (an id above 0 is required)", name, in.ID, in.Version)
	}
	if _, ok := r.st.Schemas[in.ID]; ok && !r.keys[in.ID].matches(p.key, false) {
		return nil, errf(http.StatusConflict, codeNotPermitted,
			"Overwrite new schema with id %d is not permitted: the id already names another schema", in.ID)
	}
	s := r.st.Subjects[name]
	if s == nil {
		s = &subjectRecord{}
	}
	version := in.Version
	for _, v := range s.Versions {
		switch {
		case version != 0 && v.Version == version && v.ID == in.ID:
			return map[string]int{"id": v.ID, "version": v.Version}, nil
		case version != 0 && v.Version == version:
			return nil, errf(http.StatusConflict, codeNotPermitted,
				"Version %d of subject %s already names schema id %d, not %d", version, name, v.ID, in.ID)
		case version == 0 && v.ID == in.ID && !v.Deleted:
			return map[string]int{"id": v.ID, "version": v.Version}, nil
		}
	}
	if version == 0 {
		version = 1
		if n := len(s.Versions); n > 0 {
			version = s.Versions[n-1].Version + 1
		}
	}
	if _, ok := r.st.Schemas[in.ID]; !ok {
		r.st.Schemas[in.ID] = &schemaRecord{ID: in.ID, Type: in.SchemaType, Schema: in.Schema, References: in.References}
		r.keys[in.ID] = p.key
	}
	r.st.NextID = max(r.st.NextID, in.ID+1)
	s.Versions = append(s.Versions, versionRecord{Version: version, ID: in.ID})
	slices.SortFunc(s.Versions, func(a, b versionRecord) int { return a.Version - b.Version })
	r.st.Subjects[name] = s
	if err := r.save(); err != nil {
		return nil, err
	}
	r.cfg.Logger.Info("schema imported", "subject", name, "version", version, "id", in.ID)
	return map[string]int{"id": in.ID, "version": version}, nil
}

func (r *Registry) lookup(req *http.Request) (any, error) {
	name := req.PathValue("subject")
	in, err := decodeSchemaRequest(req)
	if err != nil {
		return nil, err
	}
	deleted, normalize := boolParam(req, "deleted"), boolParam(req, "normalize")
	r.mu.Lock()
	if _, err := r.subject(name, deleted); err != nil {
		r.mu.Unlock()
		return nil, err
	}
	p, err := r.prepare(in)
	if err != nil {
		r.mu.Unlock()
		return nil, err
	}
	s, err := r.subject(name, deleted)
	if err != nil {
		r.mu.Unlock()
		return nil, err
	}
	var resp *versionResponse
	for _, v := range slices.Backward(s.Versions) {
		if (deleted || !v.Deleted) && r.keys[v.ID].matches(p.key, normalize) {
			vr := r.versionResponse(name, v)
			resp = &vr
			break
		}
	}
	if resp == nil {
		r.mu.Unlock()
		return nil, errf(http.StatusNotFound, codeSchemaNotFound, "Schema not found")
	}
	ci, _ := r.input(resp.schemaType(), resp.Schema, resp.References)
	r.mu.Unlock()
	return resp, r.formatted(req, resp.schemaType(), &resp.Schema, ci)
}

func (r *Registry) deleteSubject(req *http.Request) (any, error) {
	name := req.PathValue("subject")
	permanent := boolParam(req, "permanent")
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.writable(name); err != nil {
		return nil, err
	}
	s, ok := r.st.Subjects[name]
	if !ok || len(s.Versions) == 0 {
		return nil, errf(http.StatusNotFound, codeSubjectNotFound, "Subject '%s' not found.", name)
	}
	var out []int
	if permanent {
		if len(s.live()) > 0 {
			return nil, errf(http.StatusNotFound, codeSubjectNotSoftDel,
				"Subject '%s' was not deleted first before being permanently deleted", name)
		}
		for _, v := range s.Versions {
			if err := r.unreferenced(name, v.Version); err != nil {
				return nil, err
			}
			out = append(out, v.Version)
		}
		delete(r.st.Subjects, name)
	} else {
		if len(s.live()) == 0 {
			return nil, errf(http.StatusNotFound, codeSubjectSoftDeleted, "Subject '%s' was soft deleted.", name)
		}
		for _, v := range s.live() {
			if err := r.unreferenced(name, v.Version); err != nil {
				return nil, err
			}
		}
		for i := range s.Versions {
			if !s.Versions[i].Deleted {
				s.Versions[i].Deleted = true
				out = append(out, s.Versions[i].Version)
			}
		}
	}
	return out, r.save()
}

// unreferenced refuses to delete a version that a live schema references;
// the caller holds r.mu.
func (r *Registry) unreferenced(subject string, version int) error {
	if ids := r.referrers(subject, version, false); len(ids) > 0 {
		return errf(http.StatusUnprocessableEntity, codeReferenceExists,
			"One or more references exist to the schema {subject=%s,version=%d}: schema ids %v", subject, version, ids)
	}
	return nil
}

func (r *Registry) deleteVersion(req *http.Request) (any, error) {
	name := req.PathValue("subject")
	permanent := boolParam(req, "permanent")
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.writable(name); err != nil {
		return nil, err
	}
	v, err := r.findVersion(name, req.PathValue("version"), permanent)
	if err != nil {
		return nil, err
	}
	if err := r.unreferenced(name, v.Version); err != nil {
		return nil, err
	}
	s := r.st.Subjects[name]
	for i := range s.Versions {
		if s.Versions[i].Version != v.Version {
			continue
		}
		if permanent {
			if !s.Versions[i].Deleted {
				return nil, errf(http.StatusNotFound, codeVersionNotSoftDel,
					"Subject '%s' Version %d was not deleted first before being permanently deleted", name, v.Version)
			}
			s.Versions = slices.Delete(s.Versions, i, i+1)
		} else {
			s.Versions[i].Deleted = true
		}
		break
	}
	return v.Version, r.save()
}

type schemaResponse struct {
	SchemaType string      `json:"schemaType,omitempty"`
	Schema     string      `json:"schema"`
	References []Reference `json:"references,omitempty"`
	MaxID      int         `json:"maxId,omitempty"`
}

func (r *Registry) schemaByID(req *http.Request) (*schemaRecord, error) {
	id, err := strconv.Atoi(req.PathValue("id"))
	if err != nil {
		return nil, errf(http.StatusNotFound, codeSchemaNotFound, "Schema %s not found", req.PathValue("id"))
	}
	sc, ok := r.st.Schemas[id]
	if !ok {
		return nil, errf(http.StatusNotFound, codeSchemaNotFound, "Schema %d not found", id)
	}
	return sc, nil
}

func (r *Registry) getSchema(req *http.Request) (any, error) {
	r.mu.Lock()
	sc, err := r.schemaByID(req)
	if err != nil {
		r.mu.Unlock()
		return nil, err
	}
	resp := schemaResponse{Schema: sc.Schema, References: sc.References}
	if sc.Type != "AVRO" {
		resp.SchemaType = sc.Type
	}
	if boolParam(req, "fetchMaxId") {
		resp.MaxID = r.st.NextID - 1
	}
	in, _ := r.input(sc.Type, sc.Schema, sc.References)
	r.mu.Unlock()
	return resp, r.formatted(req, sc.Type, &resp.Schema, in)
}

type subjectVersion struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

// usesOf lists the subject versions that hold schema id, soft-deleted
// ones too when deleted is set; the caller holds r.mu.
func (r *Registry) usesOf(id int, deleted bool, subject string) []subjectVersion {
	out := []subjectVersion{}
	for name, s := range r.st.Subjects {
		if subject != "" && name != subject {
			continue
		}
		for _, v := range s.Versions {
			if v.ID == id && (deleted || !v.Deleted) {
				out = append(out, subjectVersion{name, v.Version})
			}
		}
	}
	slices.SortFunc(out, func(a, b subjectVersion) int {
		if c := strings.Compare(a.Subject, b.Subject); c != 0 {
			return c
		}
		return a.Version - b.Version
	})
	return out
}

func (r *Registry) getSchemaVersions(req *http.Request) (any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sc, err := r.schemaByID(req)
	if err != nil {
		return nil, err
	}
	return page(req, r.usesOf(sc.ID, boolParam(req, "deleted"), req.URL.Query().Get("subject"))), nil
}

func (r *Registry) getSchemaSubjects(req *http.Request) (any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sc, err := r.schemaByID(req)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, u := range r.usesOf(sc.ID, boolParam(req, "deleted"), req.URL.Query().Get("subject")) {
		if !slices.Contains(out, u.Subject) {
			out = append(out, u.Subject)
		}
	}
	return page(req, out), nil
}

// listSchemas answers GET /schemas: the versions of every subject (with
// subjectPrefix, deleted and latestOnly as in Confluent's registry).
func (r *Registry) listSchemas(req *http.Request) (any, error) {
	prefix := req.URL.Query().Get("subjectPrefix")
	deleted, latestOnly := boolParam(req, "deleted"), boolParam(req, "latestOnly")
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.st.Subjects))
	for name := range r.st.Subjects {
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	out := []versionResponse{}
	for _, name := range names {
		var vs []versionResponse
		for _, v := range r.st.Subjects[name].Versions {
			if deleted || !v.Deleted {
				vs = append(vs, r.versionResponse(name, v))
			}
		}
		if latestOnly && len(vs) > 0 {
			vs = vs[len(vs)-1:]
		}
		out = append(out, vs...)
	}
	return page(req, out), nil
}

// configRequest is the body of a config request and answer.
type configRequest struct {
	Compatibility string `json:"compatibility"`
}

func parseLevel(req *http.Request) (string, error) {
	return parseChoice(req, "compatibility", "compatibility level", codeInvalidCompatibility, Levels)
}

// parseChoice reads a JSON body {field: value} and returns the value in
// upper case when it is one of valid; what names it in errors, code is the
// Confluent error code of an invalid value.
func parseChoice(req *http.Request, field, what string, code int, valid []string) (string, error) {
	var in map[string]any
	if err := decodeBody(req, &in); err != nil {
		return "", err
	}
	given, _ := in[field].(string)
	if alt, ok := in[field+"Level"].(string); given == "" && ok {
		// Confluent's clients also send {"compatibilityLevel": ...}.
		given = alt
	}
	value := strings.ToUpper(given)
	if !slices.Contains(valid, value) {
		return "", errf(http.StatusUnprocessableEntity, code,
			"Invalid %s %q. Valid values are %s", what, given, strings.Join(valid, ", "))
	}
	return value, nil
}

func (r *Registry) getGlobalConfig(*http.Request) (any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return map[string]string{"compatibilityLevel": r.st.Compatibility}, nil
}

func (r *Registry) putGlobalConfig(req *http.Request) (any, error) {
	level, err := parseLevel(req)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.Compatibility = level
	return configRequest{Compatibility: level}, r.save()
}

// deleteGlobalConfig puts the registry's level back to its default,
// BACKWARD, and answers the level it had.
func (r *Registry) deleteGlobalConfig(*http.Request) (any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.st.Compatibility
	r.st.Compatibility = "BACKWARD"
	return map[string]string{"compatibilityLevel": old}, r.save()
}

func (r *Registry) getSubjectConfig(req *http.Request) (any, error) {
	name := req.PathValue("subject")
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.st.Subjects[name]; ok && s.Compatibility != "" {
		return map[string]string{"compatibilityLevel": s.Compatibility}, nil
	}
	if boolParam(req, "defaultToGlobal") {
		return map[string]string{"compatibilityLevel": r.st.Compatibility}, nil
	}
	return nil, errf(http.StatusNotFound, 40408, "Subject '%s' does not have subject-level compatibility configured", name)
}

func (r *Registry) putSubjectConfig(req *http.Request) (any, error) {
	name := req.PathValue("subject")
	level, err := parseLevel(req)
	if err != nil {
		return nil, err
	}
	return configRequest{Compatibility: level}, r.setSubject(name, func(s *subjectRecord) { s.Compatibility = level })
}

// deleteSubjectConfig removes a subject's own level, so the registry's
// applies again, and answers the level it had.
func (r *Registry) deleteSubjectConfig(req *http.Request) (any, error) {
	name := req.PathValue("subject")
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.st.Subjects[name]
	if !ok || s.Compatibility == "" {
		return nil, errf(http.StatusNotFound, 40408, "Subject '%s' does not have subject-level compatibility configured", name)
	}
	old := s.Compatibility
	s.Compatibility = ""
	if len(s.Versions) == 0 && s.Mode == "" {
		delete(r.st.Subjects, name)
	}
	return map[string]string{"compatibilityLevel": old}, r.save()
}

// setSubject applies set to the record of subject name, creating it when
// the subject has none yet, and saves the state.
func (r *Registry) setSubject(name string, set func(*subjectRecord)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.st.Subjects[name]
	if !ok {
		s = &subjectRecord{}
		r.st.Subjects[name] = s
	}
	set(s)
	return r.save()
}
