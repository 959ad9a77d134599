package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/registry"
	"github.com/herald-events/herald/platform/schema"
)

// TestSchemaExportImportKeepsIDs: register herald's schemas, export them,
// lose the registry (a new empty one at the same address), import the
// export: every subject has its id back, and a codec that had cached the
// ids before the loss verifies fine.
func TestSchemaExportImportKeepsIDs(t *testing.T) {
	var cur atomic.Pointer[http.Handler]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*cur.Load()).ServeHTTP(w, r) }))
	defer srv.Close()
	wipe := func() {
		reg, err := registry.New(registry.Config{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		h := reg.Handler()
		cur.Store(&h)
	}
	herald := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		args = append(args, "--schema-registry-url="+srv.URL)
		if err := run(context.Background(), args, func(string) string { return "" }, &out, &errOut); err != nil {
			t.Fatalf("herald %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
		}
		return out.String()
	}
	ctx := context.Background()

	wipe()
	// A registry that is not fresh: a foreign schema took id 1 first, so
	// `herald schema register` into an empty one would not give these ids.
	admin := &schema.RegistryAdmin{URL: srv.URL}
	foreign := `{"schemaType":"PROTOBUF","schema":"syntax = \"proto3\";\npackage x.v1;\nmessage X { string id = 1; }\n"}`
	resp, err := http.Post(srv.URL+"/subjects/x-value/versions", "application/vnd.schemaregistry.v1+json", strings.NewReader(foreign))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("register a foreign schema: %v %v", resp, err)
	}
	resp.Body.Close()
	herald("schema", "register")
	before, err := admin.ExportRegistry(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// A running process's codec: it looked up every event at start.
	client, err := schema.NewClient(srv.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	codec, err := schema.NewCodec(client)
	if err != nil {
		t.Fatal(err)
	}
	events, err := event.Events(protoregistry.GlobalFiles, "herald")
	if err != nil {
		t.Fatal(err)
	}
	for _, md := range events {
		r, _ := event.RouteOf(md)
		if _, err := codec.Lookup(r.Topic, md); err != nil {
			t.Fatal(err)
		}
	}

	file := filepath.Join(t.TempDir(), "registry-export.json")
	herald("schema", "export", "--file", file)

	wipe()
	if err := codec.Verify(ctx); !errors.Is(err, schema.ErrSchemaDrift) {
		t.Fatalf("Verify against the emptied registry = %v; want drift", err)
	}
	out := herald("schema", "import", "--file", file)
	if !strings.Contains(out, "imported") {
		t.Errorf("import printed %q", out)
	}
	after, err := admin.ExportRegistry(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Schemas) != len(before.Schemas) || len(before.Schemas) < 5 {
		t.Fatalf("exported %d versions, %d after the import", len(before.Schemas), len(after.Schemas))
	}
	for i := range before.Schemas {
		b, a := before.Schemas[i], after.Schemas[i]
		if b.Subject != a.Subject || b.Version != a.Version || b.ID != a.ID || b.Schema != a.Schema {
			t.Errorf("after the import %s v%d id %d; before %s v%d id %d", a.Subject, a.Version, a.ID, b.Subject, b.Version, b.ID)
		}
	}
	if mode, err := admin.Mode(ctx); err != nil || mode != "READWRITE" {
		t.Errorf("mode after the import = %q, %v; want READWRITE back", mode, err)
	}
	if err := codec.Verify(ctx); err != nil || codec.Err() != nil {
		t.Fatalf("Verify after the import = %v", err)
	}
	// The stdout export is the same document.
	var viaStdout schema.Export
	if err := json.Unmarshal([]byte(herald("schema", "export")), &viaStdout); err != nil || len(viaStdout.Schemas) != len(before.Schemas) {
		t.Fatalf("export to stdout: %d versions, %v", len(viaStdout.Schemas), err)
	}
}

func TestSchemaImportUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"schema", "import"}, "--schema-registry-url"},
		{[]string{"schema", "import", "--registry=http://127.0.0.1:1"}, "--file: required"},
		{[]string{"schema", "import", "--registry=http://127.0.0.1:1", "--file=/nonexistent/export.json"}, "--file"},
		{[]string{"schema", "export"}, "--schema-registry-url"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), tc.args, func(string) string { return "" }, &out, &out)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("herald %s = %v; want a usage error naming %s", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
