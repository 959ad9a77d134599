package registry_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/rest"

	"github.com/herald-events/herald/platform/registry"
)

const (
	dep = `syntax = "proto3";
package t.v1;
message Money { string currency_code = 1; int64 units = 2; }
`
	v1 = `syntax = "proto3";
package t.v1;
import "t/v1/money.proto";
message Paid { string order_id = 1; t.v1.Money amount = 2; }
`
	v2 = `syntax = "proto3";
package t.v1;
import "t/v1/money.proto";
message Paid { string order_id = 1; t.v1.Money amount = 2; string note = 3; }
`
)

func serve(t *testing.T, cfg registry.Config) *httptest.Server {
	t.Helper()
	r, err := registry.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func client(t *testing.T, url string, userPass ...string) schemaregistry.Client {
	t.Helper()
	cfg := schemaregistry.NewConfig(url)
	if len(userPass) == 2 {
		cfg = schemaregistry.NewConfigWithBasicAuthentication(url, userPass[0], userPass[1])
	}
	cfg.MaxRetries = 0
	c, err := schemaregistry.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func code(err error) int {
	var re *rest.Error
	if errors.As(err, &re) {
		return re.Code
	}
	return 0
}

func TestRegistryWithConfluentClient(t *testing.T) {
	file := filepath.Join(t.TempDir(), "registry.json")
	srv := serve(t, registry.Config{File: file})
	c := client(t, srv.URL)

	depID, err := c.Register("t/v1/money.proto", schemaregistry.SchemaInfo{Schema: dep, SchemaType: "PROTOBUF"}, false)
	if err != nil {
		t.Fatalf("register dependency: %v", err)
	}
	ref := []schemaregistry.Reference{{Name: "t/v1/money.proto", Subject: "t/v1/money.proto", Version: 1}}
	info1 := schemaregistry.SchemaInfo{Schema: v1, SchemaType: "PROTOBUF", References: ref}
	id1, err := c.Register("paid-value", info1, false)
	if err != nil {
		t.Fatalf("register v1: %v", err)
	}
	if id1 == depID {
		t.Fatalf("different schemas share id %d", id1)
	}
	again, err := c.Register("paid-value", info1, false)
	if err != nil || again != id1 {
		t.Fatalf("re-register = %d, %v; want the same id %d", again, err, id1)
	}
	// The same schema under another subject keeps its id, as in Confluent's registry.
	other, err := c.Register("other-value", info1, false)
	if err != nil || other != id1 {
		t.Fatalf("same schema in another subject = %d, %v; want id %d", other, err, id1)
	}
	id2, err := c.Register("paid-value", schemaregistry.SchemaInfo{Schema: v2, SchemaType: "PROTOBUF", References: ref}, false)
	if err != nil || id2 == id1 {
		t.Fatalf("register v2 = %d, %v", id2, err)
	}

	got, err := c.GetBySubjectAndID("paid-value", id1)
	if err != nil || got.Schema != v1 || got.SchemaType != "PROTOBUF" || len(got.References) != 1 {
		t.Fatalf("GetBySubjectAndID = %+v, %v", got, err)
	}
	latest, err := c.GetLatestSchemaMetadata("paid-value")
	if err != nil || latest.Version != 2 || latest.ID != id2 {
		t.Fatalf("latest = v%d id %d, %v; want v2 id %d", latest.Version, latest.ID, err, id2)
	}
	if v, err := c.GetVersion("paid-value", info1, false); err != nil || v != 1 {
		t.Fatalf("lookup v1 = %d, %v", v, err)
	}
	_, err = c.GetID("paid-value", schemaregistry.SchemaInfo{Schema: "syntax = \"proto3\";", SchemaType: "PROTOBUF"}, false)
	if code(err) != 40403 {
		t.Fatalf("lookup of unknown schema: %v, want 40403", err)
	}
	_, err = c.GetLatestSchemaMetadata("nope-value")
	if code(err) != 40401 {
		t.Fatalf("unknown subject: %v, want 40401", err)
	}
	_, err = c.Register("bad-ref", schemaregistry.SchemaInfo{Schema: v1, SchemaType: "PROTOBUF",
		References: []schemaregistry.Reference{{Name: "x.proto", Subject: "missing", Version: 1}}}, false)
	if code(err) != 42201 {
		t.Fatalf("dangling reference: %v, want 42201", err)
	}

	// Compatibility configuration.
	if _, err := c.UpdateDefaultCompatibility(schemaregistry.FullTransitive); err != nil {
		t.Fatalf("set global level: %v", err)
	}
	if lvl, err := c.GetDefaultCompatibility(); err != nil || lvl != schemaregistry.FullTransitive {
		t.Fatalf("global level = %v, %v", lvl, err)
	}
	if _, err := c.UpdateCompatibility("paid-value", schemaregistry.None); err != nil {
		t.Fatalf("set subject level: %v", err)
	}
	if lvl, err := c.GetCompatibility("paid-value"); err != nil || lvl != schemaregistry.None {
		t.Fatalf("subject level = %v, %v", lvl, err)
	}

	// Soft delete hides versions; permanent delete needs a soft delete first.
	if _, err := c.DeleteSubject("other-value", true); code(err) != 40405 {
		t.Fatalf("hard delete before soft delete: %v, want 40405", err)
	}
	if vs, err := c.DeleteSubject("other-value", false); err != nil || len(vs) != 1 {
		t.Fatalf("soft delete = %v, %v", vs, err)
	}
	subjects, err := c.GetAllSubjects()
	if err != nil || strings.Contains(strings.Join(subjects, ","), "other-value") {
		t.Fatalf("subjects after soft delete = %v, %v", subjects, err)
	}
	if _, err := c.DeleteSubject("other-value", true); err != nil {
		t.Fatalf("hard delete after soft delete: %v", err)
	}

	// A restart keeps subjects and ids.
	c2 := client(t, serve(t, registry.Config{File: file}).URL)
	got2, err := c2.GetBySubjectAndID("paid-value", id2)
	if err != nil || got2.Schema != v2 {
		t.Fatalf("after restart: %+v, %v", got2, err)
	}
	if subjects, _ := c2.GetAllSubjects(); strings.Join(subjects, ",") != "paid-value,t/v1/money.proto" {
		t.Fatalf("subjects after restart = %v", subjects)
	}
}

func TestRegistryBasicAuth(t *testing.T) {
	srv := serve(t, registry.Config{User: "ops", Password: "s3cret"})
	if _, err := client(t, srv.URL).GetAllSubjects(); code(err) != 40101 {
		t.Fatalf("no credentials: %v, want 40101", err)
	}
	if _, err := client(t, srv.URL, "ops", "wrong").GetAllSubjects(); code(err) != 40101 {
		t.Fatalf("wrong password: %v, want 40101", err)
	}
	if _, err := client(t, srv.URL, "ops", "s3cret").GetAllSubjects(); err != nil {
		t.Fatalf("right credentials: %v", err)
	}
}

func TestCompatibilityIsEnforced(t *testing.T) {
	srv := serve(t, registry.Config{})
	c := client(t, srv.URL)
	const (
		old = "syntax = \"proto3\";\npackage t.v1;\nmessage Paid {\n  string order_id = 1;\n  int64 amount = 2;\n}\n"
		bad = "syntax = \"proto3\";\npackage t.v1;\nmessage Paid {\n  string order_id = 1;\n  string amount = 2;\n}\n"
		ok  = "syntax = \"proto3\";\npackage t.v1;\nmessage Paid {\n  string order_id = 1;\n  int64 amount = 2;\n  string note = 3;\n}\n"
	)
	info := func(s string) schemaregistry.SchemaInfo {
		return schemaregistry.SchemaInfo{Schema: s, SchemaType: "PROTOBUF"}
	}
	if _, err := c.Register("paid-value", info(old), false); err != nil {
		t.Fatal(err)
	}
	_, err := c.Register("paid-value", info(bad), false)
	if code(err) != 40901 || !strings.Contains(err.Error(), "FIELD_SCALAR_KIND_CHANGED") || !strings.Contains(err.Error(), "t.v1.Paid.amount") ||
		!strings.Contains(err.Error(), "line 5") {
		t.Fatalf("incompatible register: %v; want 409 (40901) naming the rule, the field and its line", err)
	}
	compatible, err := c.TestCompatibility("paid-value", -1, info(bad))
	if err != nil || compatible {
		t.Fatalf("TestCompatibility(bad) = %v, %v; want false", compatible, err)
	}
	resp, err := http.Post(srv.URL+"/compatibility/subjects/paid-value/versions/latest?verbose=true",
		"application/vnd.schemaregistry.v1+json", strings.NewReader(`{"schemaType":"PROTOBUF","schema":`+quote(bad)+`}`))
	if err != nil {
		t.Fatal(err)
	}
	var verbose struct {
		IsCompatible bool     `json:"is_compatible"`
		Messages     []string `json:"messages"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&verbose)
	resp.Body.Close()
	if verbose.IsCompatible || len(verbose.Messages) == 0 || !strings.Contains(verbose.Messages[0], "int64 → string") {
		t.Fatalf("verbose check = %+v; want messages saying int64 → string", verbose)
	}
	if compatible, err := c.TestCompatibility("paid-value", -1, info(ok)); err != nil || !compatible {
		t.Fatalf("TestCompatibility(ok) = %v, %v; want true", compatible, err)
	}
	if _, err := c.Register("paid-value", info(ok), false); err != nil {
		t.Fatalf("compatible register: %v", err)
	}
	if _, err := c.UpdateCompatibility("paid-value", schemaregistry.None); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register("paid-value", info(bad), false); err != nil {
		t.Fatalf("register under NONE: %v", err)
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
