// Package registry is an embedded schema registry that speaks the Confluent
// Schema Registry REST API, for `herald dev` and for tests.
//
// It keeps subjects, versions, schema ids, references and compatibility
// configuration, optionally persisted in a JSON file so a restart keeps the
// ids that records on disk refer to. The same schema text (with the same type
// and references) gets the same id in every subject, as in Confluent's
// registry. Compatibility levels are enforced for PROTOBUF schemas with
// Confluent's rules (package compat): an incompatible registration answers
// 409 with the reasons, and POST /compatibility answers truthfully.
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
	codeSubjectNotFound      = 40401
	codeVersionNotFound      = 40402
	codeSchemaNotFound       = 40403
	codeSubjectSoftDeleted   = 40404
	codeInvalidSchema        = 42201
	codeInvalidVersion       = 42202
	codeInvalidCompatibility = 42203
	codeUnauthorized         = 40101
	codeInternal             = 50001
	codeIncompatible         = 409
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
	// User and Password, when User is set, require HTTP basic auth.
	User, Password string
	// Logger receives request errors. Default: [slog.Default].
	Logger *slog.Logger
}

// Registry is the embedded registry. Serve it with [Registry.Handler].
type Registry struct {
	cfg Config
	mu  sync.Mutex
	st  state
}

// New opens a registry, loading cfg.File when it exists.
func New(cfg Config) (*Registry, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Registry{cfg: cfg, st: state{
		NextID:        1,
		Schemas:       map[int]*schemaRecord{},
		Subjects:      map[string]*subjectRecord{},
		Compatibility: "BACKWARD",
	}}
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
	return r, nil
}

// save writes the state atomically; the caller holds r.mu.
func (r *Registry) save() error {
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

// Handler returns the REST API.
func (r *Registry) Handler() http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, fn func(*http.Request) (any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, req *http.Request) {
			r.respond(w, req, fn)
		})
	}
	h("GET /{$}", func(*http.Request) (any, error) { return map[string]any{}, nil })
	h("GET /schemas/types", func(*http.Request) (any, error) { return []string{"AVRO", "JSON", "PROTOBUF"}, nil })
	h("GET /subjects", r.listSubjects)
	h("GET /subjects/{subject}/versions", r.listVersions)
	h("GET /subjects/{subject}/versions/{version}", r.getVersion)
	mux.HandleFunc("GET /subjects/{subject}/versions/{version}/schema", func(w http.ResponseWriter, req *http.Request) {
		if !r.authorized(w, req) {
			return
		}
		v, err := r.getVersion(req)
		if err != nil {
			r.writeErr(w, err)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(v.(versionResponse).Schema))
	})
	h("POST /subjects/{subject}/versions", r.register)
	h("POST /subjects/{subject}", r.lookup)
	h("DELETE /subjects/{subject}", r.deleteSubject)
	h("DELETE /subjects/{subject}/versions/{version}", r.deleteVersion)
	h("GET /schemas/ids/{id}", r.getSchema)
	h("GET /schemas/ids/{id}/schema", func(req *http.Request) (any, error) {
		s, err := r.getSchema(req)
		if err != nil {
			return nil, err
		}
		return s.(schemaResponse).Schema, nil
	})
	h("GET /schemas/ids/{id}/versions", r.getSchemaVersions)
	h("GET /config", r.getGlobalConfig)
	h("PUT /config", r.putGlobalConfig)
	h("GET /config/{subject}", r.getSubjectConfig)
	h("PUT /config/{subject}", r.putSubjectConfig)
	h("POST /compatibility/subjects/{subject}/versions/{version}", r.compatibility)
	h("POST /compatibility/subjects/{subject}/versions", r.compatibility)
	h("GET /mode", r.getGlobalMode)
	h("PUT /mode", r.putGlobalMode)
	h("GET /mode/{subject}", r.getSubjectMode)
	h("PUT /mode/{subject}", r.putSubjectMode)
	h("DELETE /mode/{subject}", r.deleteSubjectMode)
	return mux
}

func (r *Registry) authorized(w http.ResponseWriter, req *http.Request) bool {
	if r.cfg.User == "" {
		return true
	}
	u, p, ok := req.BasicAuth()
	if ok && u == r.cfg.User && p == r.cfg.Password {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="herald registry"`)
	r.writeErr(w, errf(http.StatusUnauthorized, codeUnauthorized, "Unauthorized"))
	return false
}

func (r *Registry) respond(w http.ResponseWriter, req *http.Request, fn func(*http.Request) (any, error)) {
	if !r.authorized(w, req) {
		return
	}
	v, err := fn(req)
	if err != nil {
		r.writeErr(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	_ = json.NewEncoder(w).Encode(v)
}

func (r *Registry) writeErr(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		r.cfg.Logger.Error("registry request failed", "err", err)
		ae = errf(http.StatusInternalServerError, codeInternal, "%v", err)
	}
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	w.WriteHeader(ae.status)
	_ = json.NewEncoder(w).Encode(ae)
}

func boolParam(req *http.Request, name string) bool {
	b, _ := strconv.ParseBool(req.URL.Query().Get(name))
	return b
}

func (r *Registry) listSubjects(req *http.Request) (any, error) {
	deleted := boolParam(req, "deleted")
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []string{}
	for name, s := range r.st.Subjects {
		if deleted || len(s.live()) > 0 {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
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
	deleted := boolParam(req, "deleted")
	r.mu.Lock()
	defer r.mu.Unlock()
	s, err := r.subject(name, deleted)
	if err != nil {
		return nil, err
	}
	out := []int{}
	for _, v := range s.Versions {
		if deleted || !v.Deleted {
			out = append(out, v.Version)
		}
	}
	return out, nil
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
	if version == "latest" || version == "-1" {
		if len(candidates) == 0 {
			return versionRecord{}, errf(http.StatusNotFound, codeVersionNotFound, "Version latest not found.")
		}
		return candidates[len(candidates)-1], nil
	}
	n, err := strconv.Atoi(version)
	if err != nil || n <= 0 {
		return versionRecord{}, errf(http.StatusUnprocessableEntity, codeInvalidVersion,
			"The specified version '%s' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"", version)
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

func (r *Registry) getVersion(req *http.Request) (any, error) {
	name := req.PathValue("subject")
	r.mu.Lock()
	defer r.mu.Unlock()
	v, err := r.findVersion(name, req.PathValue("version"), boolParam(req, "deleted"))
	if err != nil {
		return nil, err
	}
	return r.versionResponse(name, v), nil
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
	if err := json.NewDecoder(req.Body).Decode(&in); err != nil {
		return in, errf(http.StatusUnprocessableEntity, codeInvalidSchema, "Invalid schema request: %v", err)
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

func sameSchema(sc *schemaRecord, in schemaRequest) bool {
	return sc.Type == in.SchemaType && strings.TrimSpace(sc.Schema) == strings.TrimSpace(in.Schema) &&
		slices.Equal(sc.References, in.References)
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

func (r *Registry) register(req *http.Request) (any, error) {
	name := req.PathValue("subject")
	in, err := decodeSchemaRequest(req)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.writable(name); err != nil {
		return nil, err
	}
	if in.ID != 0 || in.Version != 0 {
		return r.importSchema(name, in)
	}
	if err := r.checkReferences(in.References); err != nil {
		return nil, err
	}
	s := r.st.Subjects[name]
	if s != nil {
		for _, v := range s.live() {
			if sameSchema(r.st.Schemas[v.ID], in) {
				return map[string]int{"id": v.ID, "version": v.Version}, nil
			}
		}
	}
	msgs, err := r.check(name, in, nil)
	if err != nil {
		return nil, err
	}
	if len(msgs) > 0 {
		return nil, errf(http.StatusConflict, codeIncompatible,
			"Schema being registered is incompatible with an earlier schema for subject %q (level %s), details: [%s]",
			name, r.levelOf(name), strings.Join(msgs, "; "))
	}
	id := 0
	for _, sc := range r.st.Schemas {
		if sameSchema(sc, in) {
			id = sc.ID
			break
		}
	}
	if id == 0 {
		id = r.st.NextID
		r.st.NextID++
		r.st.Schemas[id] = &schemaRecord{ID: id, Type: in.SchemaType, Schema: in.Schema, References: in.References}
	}
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

// importSchema registers in under name with the id (and version, when
// given) it carries; the caller holds r.mu. The id must be free or
// already name the same schema, and the version free or already name that
// id. Compatibility is not checked: an import copies history as it was.
func (r *Registry) importSchema(name string, in schemaRequest) (any, error) {
	if r.modeOf(name) != ModeImport {
		return nil, errf(http.StatusUnprocessableEntity, codeNotPermitted,
			"Subject %s is not in import mode: a schema id or version may only be given in IMPORT mode", name)
	}
	if in.ID <= 0 || in.Version < 0 {
		return nil, errf(http.StatusUnprocessableEntity, codeInvalidSchema,
			"Invalid import of subject %s: id %d, version %d (an id above 0 is required)", name, in.ID, in.Version)
	}
	if sc, ok := r.st.Schemas[in.ID]; ok && !sameSchema(sc, in) {
		return nil, errf(http.StatusConflict, codeNotPermitted,
			"Overwrite new schema with id %d is not permitted: the id already names another schema", in.ID)
	}
	if err := r.checkReferences(in.References); err != nil {
		return nil, err
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
	deleted := boolParam(req, "deleted")
	r.mu.Lock()
	defer r.mu.Unlock()
	s, err := r.subject(name, deleted)
	if err != nil {
		return nil, err
	}
	for _, v := range s.Versions {
		if (deleted || !v.Deleted) && sameSchema(r.st.Schemas[v.ID], in) {
			return r.versionResponse(name, v), nil
		}
	}
	return nil, errf(http.StatusNotFound, codeSchemaNotFound, "Schema not found")
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
			return nil, errf(http.StatusNotFound, codeSubjectSoftDeleted,
				"Subject '%s' was not deleted first before being permanently deleted", name)
		}
		for _, v := range s.Versions {
			out = append(out, v.Version)
		}
		delete(r.st.Subjects, name)
	} else {
		if len(s.live()) == 0 {
			return nil, errf(http.StatusNotFound, codeSubjectSoftDeleted, "Subject '%s' was soft deleted.", name)
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
	s := r.st.Subjects[name]
	for i := range s.Versions {
		if s.Versions[i].Version != v.Version {
			continue
		}
		if permanent {
			if !s.Versions[i].Deleted {
				return nil, errf(http.StatusNotFound, codeSubjectSoftDeleted,
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
	defer r.mu.Unlock()
	sc, err := r.schemaByID(req)
	if err != nil {
		return nil, err
	}
	resp := schemaResponse{Schema: sc.Schema, References: sc.References}
	if sc.Type != "AVRO" {
		resp.SchemaType = sc.Type
	}
	return resp, nil
}

func (r *Registry) getSchemaVersions(req *http.Request) (any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sc, err := r.schemaByID(req)
	if err != nil {
		return nil, err
	}
	type sv struct {
		Subject string `json:"subject"`
		Version int    `json:"version"`
	}
	out := []sv{}
	for name, s := range r.st.Subjects {
		for _, v := range s.live() {
			if v.ID == sc.ID {
				out = append(out, sv{name, v.Version})
			}
		}
	}
	slices.SortFunc(out, func(a, b sv) int { return strings.Compare(a.Subject, b.Subject) })
	return out, nil
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
	if err := json.NewDecoder(req.Body).Decode(&in); err != nil {
		return "", errf(http.StatusUnprocessableEntity, code, "Invalid %s: %v", what, err)
	}
	given, _ := in[field].(string)
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
