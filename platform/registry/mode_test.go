package registry_test

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-events/herald/platform/registry"
)

// call sends a JSON request and decodes the JSON answer.
func call(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	if len(b) > 0 && b[0] == '{' {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: %v (%s)", method, url, err, b)
		}
	}
	return resp.StatusCode, out
}

func schemaBody(text string, idVersion ...int) string {
	m := map[string]any{"schemaType": "PROTOBUF", "schema": text}
	if len(idVersion) > 0 {
		m["id"] = idVersion[0]
	}
	if len(idVersion) > 1 {
		m["version"] = idVersion[1]
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}

func TestImportMode(t *testing.T) {
	const (
		a = "syntax = \"proto3\";\npackage t.v1;\nmessage A { string id = 1; }\n"
		b = "syntax = \"proto3\";\npackage t.v1;\nmessage B { string id = 1; }\n"
		c = "syntax = \"proto3\";\npackage t.v1;\nmessage C { string id = 1; }\n"
	)
	file := filepath.Join(t.TempDir(), "registry.json")
	srv := serve(t, registry.Config{File: file})
	u := srv.URL

	if st, out := call(t, "GET", u+"/mode", ""); st != 200 || out["mode"] != "READWRITE" {
		t.Fatalf("GET /mode = %d %v, want READWRITE", st, out)
	}
	// An id outside IMPORT mode is refused.
	if st, out := call(t, "POST", u+"/subjects/a-value/versions", schemaBody(a, 7, 3)); st != 422 || num(out["error_code"]) != 42205 {
		t.Fatalf("id in READWRITE = %d %v, want 422/42205", st, out)
	}
	if st, out := call(t, "PUT", u+"/mode", `{"mode":"SIDEWAYS"}`); st != 422 || num(out["error_code"]) != 42204 {
		t.Fatalf("bad mode = %d %v, want 422/42204", st, out)
	}
	if st, out := call(t, "PUT", u+"/mode", `{"mode":"IMPORT"}`); st != 200 || out["mode"] != "IMPORT" {
		t.Fatalf("PUT /mode IMPORT = %d %v", st, out)
	}
	// Imported ids and versions are kept as given, gaps included.
	if st, out := call(t, "POST", u+"/subjects/a-value/versions", schemaBody(a, 7, 3)); st != 200 || num(out["id"]) != 7 || num(out["version"]) != 3 {
		t.Fatalf("import a = %d %v, want id 7 version 3", st, out)
	}
	if st, out := call(t, "POST", u+"/subjects/b-value/versions", schemaBody(b, 4)); st != 200 || num(out["id"]) != 4 || num(out["version"]) != 1 {
		t.Fatalf("import b = %d %v, want id 4 version 1", st, out)
	}
	// Importing the same again answers the same; a taken id or version conflicts.
	if st, out := call(t, "POST", u+"/subjects/a-value/versions", schemaBody(a, 7, 3)); st != 200 || num(out["id"]) != 7 {
		t.Fatalf("re-import = %d %v", st, out)
	}
	if st, out := call(t, "POST", u+"/subjects/c-value/versions", schemaBody(c, 7, 1)); st != 409 || num(out["error_code"]) != 42205 {
		t.Fatalf("import over a taken id = %d %v, want 409/42205", st, out)
	}
	if st, out := call(t, "POST", u+"/subjects/a-value/versions", schemaBody(c, 9, 3)); st != 409 || num(out["error_code"]) != 42205 {
		t.Fatalf("import over a taken version = %d %v, want 409/42205", st, out)
	}
	if st, out := call(t, "GET", u+"/subjects/a-value/versions/3", ""); st != 200 || num(out["id"]) != 7 || out["schema"] != a {
		t.Fatalf("GET a-value v3 = %d %v", st, out)
	}
	if st, out := call(t, "GET", u+"/schemas/ids/4", ""); st != 200 || out["schema"] != b {
		t.Fatalf("GET id 4 = %d %v", st, out)
	}

	// Back to READWRITE: new ids continue above the imported ones.
	if st, out := call(t, "PUT", u+"/mode", `{"mode":"READWRITE"}`); st != 200 || out["mode"] != "READWRITE" {
		t.Fatalf("PUT /mode READWRITE = %d %v", st, out)
	}
	if st, out := call(t, "POST", u+"/subjects/c-value/versions", schemaBody(c)); st != 200 || num(out["id"]) != 8 {
		t.Fatalf("register after import = %d %v, want id 8", st, out)
	}
	// IMPORT into a registry that has subjects needs force=true.
	if st, out := call(t, "PUT", u+"/mode", `{"mode":"IMPORT"}`); st != 422 || num(out["error_code"]) != 42205 {
		t.Fatalf("IMPORT over existing subjects = %d %v, want 422/42205", st, out)
	}
	if st, out := call(t, "PUT", u+"/mode?force=true", `{"mode":"IMPORT"}`); st != 200 || out["mode"] != "IMPORT" {
		t.Fatalf("forced IMPORT = %d %v", st, out)
	}
	call(t, "PUT", u+"/mode", `{"mode":"READWRITE"}`)

	// A subject's own mode: READONLY refuses writes, DELETE restores the global one.
	if st, out := call(t, "GET", u+"/mode/c-value", ""); st != 404 || num(out["error_code"]) != 40409 {
		t.Fatalf("GET unset subject mode = %d %v, want 404/40409", st, out)
	}
	if st, out := call(t, "GET", u+"/mode/c-value?defaultToGlobal=true", ""); st != 200 || out["mode"] != "READWRITE" {
		t.Fatalf("GET subject mode defaulting = %d %v", st, out)
	}
	if st, out := call(t, "PUT", u+"/mode/c-value", `{"mode":"READONLY"}`); st != 200 || out["mode"] != "READONLY" {
		t.Fatalf("PUT subject READONLY = %d %v", st, out)
	}
	if st, out := call(t, "POST", u+"/subjects/c-value/versions", schemaBody(a)); st != 422 || num(out["error_code"]) != 42205 {
		t.Fatalf("register into READONLY subject = %d %v, want 422/42205", st, out)
	}
	if st, out := call(t, "DELETE", u+"/subjects/c-value", ""); st != 422 || num(out["error_code"]) != 42205 {
		t.Fatalf("delete READONLY subject = %d %v, want 422/42205", st, out)
	}
	if st, _ := call(t, "POST", u+"/subjects/other-value/versions", schemaBody(a)); st != 200 {
		t.Fatalf("register into another subject = %d, want 200", st)
	}

	// Modes and imported ids survive a restart.
	u2 := serve(t, registry.Config{File: file}).URL
	if st, out := call(t, "GET", u2+"/mode/c-value", ""); st != 200 || out["mode"] != "READONLY" {
		t.Fatalf("subject mode after restart = %d %v", st, out)
	}
	if st, out := call(t, "GET", u2+"/subjects/a-value/versions/3", ""); st != 200 || num(out["id"]) != 7 {
		t.Fatalf("imported version after restart = %d %v", st, out)
	}
	if st, out := call(t, "DELETE", u2+"/mode/c-value", ""); st != 200 || out["mode"] != "READONLY" {
		t.Fatalf("DELETE subject mode = %d %v", st, out)
	}
	c2 := strings.Replace(c, "string id = 1;", "string id = 1; string note = 2;", 1)
	if st, out := call(t, "POST", u2+"/subjects/c-value/versions", schemaBody(c2)); st != 200 || num(out["id"]) != 9 || num(out["version"]) != 2 {
		t.Fatalf("register after DELETE /mode = %d %v, want id 9 version 2", st, out)
	}
}
