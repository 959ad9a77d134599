package registry

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"slices"
	"strings"
)

// Content types a request body may have: Confluent's and plain JSON.
// Anything else (text/plain, forms) is refused with 415, so a web page a
// developer opens cannot change the registry with a simple cross-site
// request.
var jsonContentTypes = []string{
	"application/vnd.schemaregistry.v1+json",
	"application/vnd.schemaregistry+json",
	"application/json",
}

// Handler returns the REST API.
func (r *Registry) Handler() http.Handler {
	mux := http.NewServeMux()
	// h serves a route; read marks routes a read-only user may call.
	h := func(pattern string, read bool, fn func(*http.Request) (any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, req *http.Request) {
			if !r.allowed(w, req, read) {
				return
			}
			v, err := fn(req)
			r.respond(w, v, err)
		})
	}
	const read, write = true, false
	h("GET /{$}", read, func(*http.Request) (any, error) { return map[string]any{}, nil })
	h("GET /schemas/types", read, func(*http.Request) (any, error) { return []string{"AVRO", "JSON", "PROTOBUF"}, nil })
	h("GET /contexts", read, func(req *http.Request) (any, error) { return page(req, []string{"."}), nil })
	h("GET /schemas", read, r.listSchemas)
	h("GET /subjects", read, r.listSubjects)
	h("GET /subjects/{subject}/versions", read, r.listVersions)
	h("GET /subjects/{subject}/versions/{version}", read, r.getVersion)
	h("GET /subjects/{subject}/versions/{version}/referencedby", read, r.referencedBy)
	mux.HandleFunc("GET /subjects/{subject}/versions/{version}/schema", func(w http.ResponseWriter, req *http.Request) {
		if !r.allowed(w, req, read) {
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
	h("POST /subjects/{subject}/versions", write, r.register)
	h("POST /subjects/{subject}", read, r.lookup)
	h("DELETE /subjects/{subject}", write, r.deleteSubject)
	h("DELETE /subjects/{subject}/versions/{version}", write, r.deleteVersion)
	h("GET /schemas/ids/{id}", read, r.getSchema)
	h("GET /schemas/ids/{id}/schema", read, func(req *http.Request) (any, error) {
		s, err := r.getSchema(req)
		if err != nil {
			return nil, err
		}
		return s.(schemaResponse).Schema, nil
	})
	h("GET /schemas/ids/{id}/versions", read, r.getSchemaVersions)
	h("GET /schemas/ids/{id}/subjects", read, r.getSchemaSubjects)
	h("GET /config", read, r.getGlobalConfig)
	h("PUT /config", write, r.putGlobalConfig)
	h("DELETE /config", write, r.deleteGlobalConfig)
	h("GET /config/{subject}", read, r.getSubjectConfig)
	h("PUT /config/{subject}", write, r.putSubjectConfig)
	h("DELETE /config/{subject}", write, r.deleteSubjectConfig)
	h("POST /compatibility/subjects/{subject}/versions/{version}", read, r.compatibility)
	h("POST /compatibility/subjects/{subject}/versions", read, r.compatibility)
	h("GET /mode", read, r.getGlobalMode)
	h("PUT /mode", write, r.putGlobalMode)
	h("GET /mode/{subject}", read, r.getSubjectMode)
	h("PUT /mode/{subject}", write, r.putSubjectMode)
	h("DELETE /mode/{subject}", write, r.deleteSubjectMode)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if _, pattern := mux.Handler(req); pattern == "" {
			r.unrouted(w, req, mux)
			return
		}
		if req.ContentLength > r.cfg.MaxBodyBytes {
			r.writeErr(w, tooLarge(r.cfg.MaxBodyBytes))
			return
		}
		if req.Body != nil && req.Body != http.NoBody && req.Method != http.MethodGet && req.Method != http.MethodDelete {
			mt, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
			if !slices.Contains(jsonContentTypes, strings.ToLower(mt)) {
				r.writeErr(w, errf(http.StatusUnsupportedMediaType, http.StatusUnsupportedMediaType,
					"HTTP 415 Unsupported Media Type: content type %q; send %s", req.Header.Get("Content-Type"),
					strings.Join(jsonContentTypes, ", ")))
				return
			}
		}
		req.Body = http.MaxBytesReader(w, req.Body, r.cfg.MaxBodyBytes)
		mux.ServeHTTP(w, req)
	})
}

// unrouted answers a request no route serves with a JSON error, as
// Confluent's registry does: 405 when the path exists for another method,
// 404 otherwise.
func (r *Registry) unrouted(w http.ResponseWriter, req *http.Request, mux *http.ServeMux) {
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		probe := req.Clone(req.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" {
			r.writeErr(w, errf(http.StatusMethodNotAllowed, http.StatusMethodNotAllowed, "HTTP 405 Method Not Allowed"))
			return
		}
	}
	r.writeErr(w, errf(http.StatusNotFound, http.StatusNotFound, "HTTP 404 Not Found"))
}

func tooLarge(limit int64) error {
	return errf(http.StatusRequestEntityTooLarge, http.StatusRequestEntityTooLarge,
		"Request body too large: the registry accepts at most %d bytes", limit)
}

// decodeBody reads a JSON request body into v.
func decodeBody(req *http.Request, v any) error {
	if err := json.NewDecoder(req.Body).Decode(v); err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return tooLarge(mbe.Limit)
		}
		return errf(http.StatusUnprocessableEntity, codeInvalidSchema, "Invalid request body: %v", err)
	}
	return nil
}

// allowed checks basic auth when a user is configured: the read-write
// user may call everything, the read-only user only routes marked read.
// Credentials are compared in constant time.
func (r *Registry) allowed(w http.ResponseWriter, req *http.Request, read bool) bool {
	if r.cfg.User == "" && r.cfg.ReadOnlyUser == "" {
		return true
	}
	u, p, ok := req.BasicAuth()
	writer := ok && r.cfg.User != "" && credentialsMatch(u, p, r.cfg.User, r.cfg.Password)
	reader := ok && r.cfg.ReadOnlyUser != "" && credentialsMatch(u, p, r.cfg.ReadOnlyUser, r.cfg.ReadOnlyPassword)
	switch {
	case writer || (reader && read):
		return true
	case reader:
		r.writeErr(w, errf(http.StatusForbidden, codeForbidden, "User %s may only read: %s %s is a change", u, req.Method, req.URL.Path))
		return false
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="herald registry"`)
	r.writeErr(w, errf(http.StatusUnauthorized, codeUnauthorized, "Unauthorized"))
	return false
}

// credentialsMatch compares a user and password in constant time
// (hashed first, so the lengths do not show either).
func credentialsMatch(user, password, wantUser, wantPassword string) bool {
	hu, hp := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	wu, wp := sha256.Sum256([]byte(wantUser)), sha256.Sum256([]byte(wantPassword))
	return subtle.ConstantTimeCompare(hu[:], wu[:])&subtle.ConstantTimeCompare(hp[:], wp[:]) == 1
}

func (r *Registry) respond(w http.ResponseWriter, v any, err error) {
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

func asAPIError(err error, target **apiError) bool { return errors.As(err, target) }
