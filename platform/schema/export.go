package schema

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/herald-events/herald/platform/fault"
)

// Export is the contents of a registry: every version of every subject
// with its schema id, as [ExportRegistry] reads it and [ImportRegistry]
// writes it back.
type Export struct {
	// Registry is the URL it was read from.
	Registry string `json:"registry"`
	// Schemas are ordered by id, then subject and version, so a schema's
	// references come before it.
	Schemas []ExportedSchema `json:"schemas"`
}

// ExportedSchema is one subject version.
type ExportedSchema struct {
	Subject    string              `json:"subject"`
	Version    int                 `json:"version"`
	ID         int                 `json:"id"`
	SchemaType string              `json:"schemaType,omitempty"`
	Schema     string              `json:"schema"`
	References []ExportedReference `json:"references,omitempty"`
}

// ExportedReference is a schema reference: an import name resolved by a
// subject version.
type ExportedReference struct {
	Name    string `json:"name"`
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

// RegistryAdmin speaks the parts of the Confluent registry API that the
// Confluent client lacks: listing everything, modes, and registration with
// a given id. Errors of an unreachable registry are marked transient.
type RegistryAdmin struct {
	// URL is the registry's base URL (for Apicurio, ending in
	// /apis/ccompat/v7).
	URL string
	// User and Password, when User is set, are sent as HTTP basic auth.
	User, Password string
	// Client defaults to [http.DefaultClient].
	Client *http.Client
}

// apiError is an error answer of the registry.
type apiError struct {
	Status int    `json:"-"`
	Code   int    `json:"error_code"`
	Msg    string `json:"message"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("HTTP %d, error code %d: %s", e.Status, e.Code, e.Msg)
}

func (a *RegistryAdmin) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(a.URL, "/")+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	req.Header.Set("Accept", "application/vnd.schemaregistry.v1+json, application/json")
	if a.User != "" {
		req.SetBasicAuth(a.User, a.Password)
	}
	hc := a.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fault.Transient(dependency, fmt.Errorf("%s %s: %w", method, path, err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fault.Transient(dependency, fmt.Errorf("%s %s: %w", method, path, err))
	}
	if resp.StatusCode >= 300 {
		ae := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(b, ae) != nil || ae.Msg == "" {
			ae.Msg = strings.TrimSpace(string(b))
		}
		err := fmt.Errorf("%s %s: %w", method, path, ae)
		if resp.StatusCode >= 500 {
			return fault.Transient(dependency, err)
		}
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: unexpected answer %.200q: %w", method, path, b, err)
	}
	return nil
}

func subjectPath(s string) string { return "/subjects/" + url.PathEscape(s) }

// ExportRegistry reads every version of every subject.
func (a *RegistryAdmin) ExportRegistry(ctx context.Context) (*Export, error) {
	var subjects []string
	if err := a.do(ctx, http.MethodGet, "/subjects", nil, &subjects); err != nil {
		return nil, fmt.Errorf("export %s: %w", a.URL, err)
	}
	out := &Export{Registry: a.URL, Schemas: []ExportedSchema{}}
	for _, s := range subjects {
		var versions []int
		if err := a.do(ctx, http.MethodGet, subjectPath(s)+"/versions", nil, &versions); err != nil {
			return nil, fmt.Errorf("export %s: %w", a.URL, err)
		}
		for _, v := range versions {
			var es ExportedSchema
			if err := a.do(ctx, http.MethodGet, subjectPath(s)+"/versions/"+strconv.Itoa(v), nil, &es); err != nil {
				return nil, fmt.Errorf("export %s: %w", a.URL, err)
			}
			es.Subject, es.Version = s, v
			if es.SchemaType == "" {
				es.SchemaType = "AVRO"
			}
			out.Schemas = append(out.Schemas, es)
		}
	}
	slices.SortFunc(out.Schemas, func(x, y ExportedSchema) int {
		return cmp.Or(cmp.Compare(x.ID, y.ID), cmp.Compare(x.Subject, y.Subject), cmp.Compare(x.Version, y.Version))
	})
	return out, nil
}

// Mode returns the registry-wide mode (READWRITE, READONLY or IMPORT).
func (a *RegistryAdmin) Mode(ctx context.Context) (string, error) {
	var m struct {
		Mode string `json:"mode"`
	}
	if err := a.do(ctx, http.MethodGet, "/mode", nil, &m); err != nil {
		return "", err
	}
	return m.Mode, nil
}

// SetMode sets the registry-wide mode; force lets IMPORT be set while
// subjects exist.
func (a *RegistryAdmin) SetMode(ctx context.Context, mode string, force bool) error {
	path := "/mode"
	if force {
		path += "?force=true"
	}
	var m struct {
		Mode string `json:"mode"`
	}
	if err := a.do(ctx, http.MethodPut, path, map[string]string{"mode": mode}, &m); err != nil {
		return err
	}
	if !strings.EqualFold(m.Mode, mode) {
		return fmt.Errorf("PUT %s %s: the registry answered mode %q", path, mode, m.Mode)
	}
	return nil
}

// ImportRegistry puts the contents of exp into the registry with the same
// ids and versions: it sets the IMPORT mode (force lets it do so while
// subjects exist), registers each schema with its id and version, and sets
// READWRITE back, also when an import fails. It fails when the registry
// answers with an id other than the one given: a registry that ignores the
// id has no working IMPORT mode. It returns how many versions it imported.
func (a *RegistryAdmin) ImportRegistry(ctx context.Context, exp *Export, force bool) (n int, err error) {
	if err := a.SetMode(ctx, "IMPORT", force); err != nil {
		return 0, fmt.Errorf("import into %s: set IMPORT mode: %w", a.URL, err)
	}
	defer func() {
		if rerr := a.SetMode(context.WithoutCancel(ctx), "READWRITE", false); rerr != nil && err == nil {
			err = fmt.Errorf("import into %s: set READWRITE mode back: %w", a.URL, rerr)
		}
	}()
	for _, s := range exp.Schemas {
		in := struct {
			ExportedSchema
			Subject string `json:"subject,omitempty"`
		}{ExportedSchema: s}
		var out struct {
			ID int `json:"id"`
		}
		if err := a.do(ctx, http.MethodPost, subjectPath(s.Subject)+"/versions", in, &out); err != nil {
			return n, fmt.Errorf("import into %s: %s version %d (id %d): %w", a.URL, s.Subject, s.Version, s.ID, err)
		}
		if out.ID != s.ID {
			return n, fmt.Errorf("import into %s: %s version %d: the registry gave id %d instead of %d (it does not honour IMPORT mode)",
				a.URL, s.Subject, s.Version, out.ID, s.ID)
		}
		n++
	}
	return n, nil
}
