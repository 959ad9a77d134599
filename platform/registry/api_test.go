package registry_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/herald-events/herald/platform/registry"
)

// do sends a request with a content type and returns the status and raw
// body.
func do(t *testing.T, method, url, contentType, body string, auth ...string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if len(auth) == 2 {
		req.SetBasicAuth(auth[0], auth[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// serializedSchema compiles text (named name) and returns it as the base64
// FileDescriptorProto confluent-kafka-python sends.
func serializedSchema(t *testing.T, name, text string) string {
	t.Helper()
	c := protocompile.Compiler{Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
		Accessor: protocompile.SourceAccessorFromMap(map[string]string{name: text}),
	})}
	res, err := c.Compile(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(protodesc.ToFileDescriptorProto(res[0]))
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func decode(t *testing.T, body string) map[string]any {
	t.Helper()
	out := map[string]any{}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("not a JSON object: %q", body)
	}
	return out
}

const (
	ct    = "application/vnd.schemaregistry.v1+json"
	order = `syntax = "proto3";
package shop.v1;

// An order was placed.
message OrderPlaced {
  string order_id = 1;
  int64 total = 2;
}
`
)

// A schema sent as a base64 FileDescriptorProto is the same schema as its
// text: it gets the same id on register and is found by lookup; and
// format=serialized gives the descriptor back.
func TestSerializedSchemas(t *testing.T) {
	srv := serve(t, registry.Config{})
	u := srv.URL
	st, body := do(t, "POST", u+"/subjects/orders-value/versions", ct, schemaBody(order))
	if st != 200 {
		t.Fatalf("register text: %d %s", st, body)
	}
	id := num(decode(t, body)["id"])
	b64 := serializedSchema(t, "shop/v1/order.proto", order)

	st, body = do(t, "POST", u+"/subjects/orders-value", ct, schemaBody(b64))
	if st != 200 || num(decode(t, body)["id"]) != id {
		t.Fatalf("lookup serialized: %d %s, want id %d", st, body, id)
	}
	st, body = do(t, "POST", u+"/subjects/orders-value/versions", ct, schemaBody(b64))
	if st != 200 || num(decode(t, body)["id"]) != id || num(decode(t, body)["version"]) != 1 {
		t.Fatalf("register serialized again: %d %s, want id %d version 1", st, body, id)
	}
	st, body = do(t, "POST", u+"/compatibility/subjects/orders-value/versions/latest?verbose=true", ct, schemaBody(b64))
	if st != 200 || decode(t, body)["is_compatible"] != true {
		t.Fatalf("compatibility of serialized: %d %s", st, body)
	}

	for _, path := range []string{"/schemas/ids/1?format=serialized", "/subjects/orders-value/versions/1?format=serialized"} {
		st, body = do(t, "GET", u+path, "", "")
		if st != 200 {
			t.Fatalf("GET %s: %d %s", path, st, body)
		}
		raw, err := base64.StdEncoding.DecodeString(decode(t, body)["schema"].(string))
		if err != nil {
			t.Fatalf("GET %s: schema is not base64: %v", path, err)
		}
		fdp := &descriptorpb.FileDescriptorProto{}
		if err := proto.Unmarshal(raw, fdp); err != nil {
			t.Fatalf("GET %s: not a FileDescriptorProto: %v", path, err)
		}
		if fdp.GetPackage() != "shop.v1" || fdp.GetMessageType()[0].GetName() != "OrderPlaced" || len(fdp.GetMessageType()[0].GetField()) != 2 {
			t.Fatalf("GET %s: descriptor %v", path, fdp)
		}
	}
	// Without format, the text as registered, comments included.
	if st, body = do(t, "GET", u+"/schemas/ids/1", "", ""); st != 200 || decode(t, body)["schema"] != order {
		t.Fatalf("GET text: %d %s", st, body)
	}

	// A schema first registered serialized is stored as text.
	other := strings.ReplaceAll(order, "OrderPlaced", "OrderShipped")
	st, body = do(t, "POST", u+"/subjects/shipped-value/versions", ct, schemaBody(serializedSchema(t, "x.proto", other)))
	if st != 200 {
		t.Fatalf("register serialized: %d %s", st, body)
	}
	st, body = do(t, "GET", u+"/subjects/shipped-value/versions/1", "", "")
	if text := decode(t, body)["schema"].(string); st != 200 || !strings.Contains(text, "message OrderShipped {") {
		t.Fatalf("serialized schema stored as %d %q, want .proto text", st, text)
	}
}

// Imports that Confluent's registry knows without references.
func TestBuiltinImports(t *testing.T) {
	srv := serve(t, registry.Config{})
	const s = `syntax = "proto3";
package money.v1;
import "confluent/meta.proto";
import "confluent/type/decimal.proto";
import "google/type/date.proto";
import "google/type/money.proto";
message Price {
  option (confluent.message_meta) = { doc: "a price" };
  confluent.type.Decimal amount = 1 [(confluent.field_meta) = { doc: "exact" }];
  google.type.Date valid_from = 2;
  google.type.Money list = 3;
}
`
	if st, body := do(t, "POST", srv.URL+"/subjects/price-value/versions", ct, schemaBody(s)); st != 200 {
		t.Fatalf("register with built-in imports: %d %s", st, body)
	}
	if st, body := do(t, "GET", srv.URL+"/schemas/ids/1?format=serialized", "", ""); st != 200 {
		t.Fatalf("serialized: %d %s", st, body)
	}
}

// normalize=true finds a schema whose imports, options and fields are in
// another order; without it the lookup fails.
func TestNormalize(t *testing.T) {
	srv := serve(t, registry.Config{})
	u := srv.URL
	const (
		a = "syntax = \"proto3\";\npackage n.v1;\nimport \"google/protobuf/timestamp.proto\";\nimport \"google/protobuf/duration.proto\";\noption java_package = \"x\";\noption go_package = \"y\";\nmessage M {\n  string a = 1;\n  google.protobuf.Timestamp at = 2;\n  google.protobuf.Duration d = 3;\n}\n"
		b = "syntax = \"proto3\";\npackage n.v1;\nimport \"google/protobuf/duration.proto\";\nimport \"google/protobuf/timestamp.proto\";\noption go_package = \"y\";\noption java_package = \"x\";\nmessage M {\n  google.protobuf.Duration d = 3;\n  string a = 1;\n  google.protobuf.Timestamp at = 2;\n}\n"
	)
	if st, body := do(t, "POST", u+"/subjects/n-value/versions", ct, schemaBody(a)); st != 200 {
		t.Fatalf("register: %d %s", st, body)
	}
	if st, body := do(t, "POST", u+"/subjects/n-value", ct, schemaBody(b)); st != 404 || num(decode(t, body)["error_code"]) != 40403 {
		t.Fatalf("lookup reordered without normalize: %d %s, want 404/40403", st, body)
	}
	if st, body := do(t, "POST", u+"/subjects/n-value?normalize=true", ct, schemaBody(b)); st != 200 || num(decode(t, body)["version"]) != 1 {
		t.Fatalf("lookup reordered with normalize: %d %s, want version 1", st, body)
	}
	if st, body := do(t, "POST", u+"/subjects/n-value/versions?normalize=true", ct, schemaBody(b)); st != 200 || num(decode(t, body)["id"]) != 1 {
		t.Fatalf("register reordered with normalize: %d %s, want id 1", st, body)
	}
}

func TestEndpoints(t *testing.T) {
	srv := serve(t, registry.Config{})
	u := srv.URL
	post := func(path, body string, want int) map[string]any {
		t.Helper()
		st, b := do(t, "POST", u+path, ct, body)
		if st != want {
			t.Fatalf("POST %s: %d %s, want %d", path, st, b, want)
		}
		return decode(t, b)
	}
	get := func(path string, want int) string {
		t.Helper()
		st, b := do(t, "GET", u+path, "", "")
		if st != want {
			t.Fatalf("GET %s: %d %s, want %d", path, st, b, want)
		}
		return strings.TrimSpace(b)
	}
	post("/subjects/t%2Fv1%2Fmoney.proto/versions", schemaBody(dep), 200)
	ref := `,"references":[{"name":"t/v1/money.proto","subject":"t/v1/money.proto","version":1}]`
	post("/subjects/paid-value/versions", strings.TrimSuffix(schemaBody(v1), "}")+ref+"}", 200)
	post("/subjects/paid-copy-value/versions", strings.TrimSuffix(schemaBody(v1), "}")+ref+"}", 200)

	if got := get("/schemas/ids/2/subjects", 200); got != `["paid-copy-value","paid-value"]` {
		t.Fatalf("subjects of id 2 = %s", got)
	}
	if got := get("/schemas/ids/2/versions", 200); got != `[{"subject":"paid-copy-value","version":1},{"subject":"paid-value","version":1}]` {
		t.Fatalf("versions of id 2 = %s", got)
	}
	if got := get("/subjects/t%2Fv1%2Fmoney.proto/versions/1/referencedby", 200); got != `[2]` {
		t.Fatalf("referencedby = %s", got)
	}
	if got := get("/contexts", 200); got != `["."]` {
		t.Fatalf("contexts = %s", got)
	}
	if got := get("/subjects?subjectPrefix=paid", 200); got != `["paid-copy-value","paid-value"]` {
		t.Fatalf("subjectPrefix = %s", got)
	}
	// A referenced version cannot be deleted.
	if st, b := do(t, "DELETE", u+"/subjects/t%2Fv1%2Fmoney.proto/versions/1", "", ""); st != 422 || num(decode(t, b)["error_code"]) != 42206 {
		t.Fatalf("delete referenced: %d %s, want 422/42206", st, b)
	}
	if st, b := do(t, "DELETE", u+"/subjects/paid-copy-value", "", ""); st != 200 {
		t.Fatalf("soft delete: %d %s", st, b)
	}
	if got := get("/subjects?deletedOnly=true", 200); got != `["paid-copy-value"]` {
		t.Fatalf("deletedOnly = %s", got)
	}
	if got := get("/subjects/paid-copy-value/versions?deletedOnly=true", 200); got != `[1]` {
		t.Fatalf("versions deletedOnly = %s", got)
	}
	if got := get("/schemas/ids/2/subjects", 200); got != `["paid-value"]` {
		t.Fatalf("subjects of id 2 after delete = %s", got)
	}
	if got := get("/schemas/ids/2/subjects?deleted=true", 200); got != `["paid-copy-value","paid-value"]` {
		t.Fatalf("subjects of id 2 with deleted = %s", got)
	}

	// JSON errors for paths and methods that do not exist.
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/nope", 404}, {"GET", "/subjects/a/b/c/d", 404}, {"PATCH", "/subjects", 405}, {"PUT", "/subjects/x/versions", 405},
	} {
		st, b := do(t, c.method, u+c.path, "", "")
		if st != c.status || num(decode(t, b)["error_code"]) != c.status {
			t.Errorf("%s %s: %d %s, want %d with a JSON error", c.method, c.path, st, b, c.status)
		}
	}

	// Compatibility: a missing subject has nothing to break; an invalid
	// schema is reported in verbose mode; another schema type is
	// incompatible.
	if got := post("/compatibility/subjects/nosuch/versions/latest", schemaBody(v1), 200); got["is_compatible"] != true {
		t.Fatalf("missing subject: %v", got)
	}
	if got := post("/compatibility/subjects/paid-value/versions/latest?verbose=true", schemaBody("syntax = \"proto3\";\nbad"), 200); got["is_compatible"] != false || len(got["messages"].([]any)) != 1 {
		t.Fatalf("invalid verbose: %v", got)
	}
	post("/compatibility/subjects/paid-value/versions/latest", schemaBody("syntax = \"proto3\";\nbad"), 422)
	post("/subjects/json-value/versions", `{"schemaType":"JSON","schema":"{\"type\":\"object\"}"}`, 200)
	if got := post("/compatibility/subjects/json-value/versions/latest?verbose=true", schemaBody(v1alone), 200); got["is_compatible"] != false ||
		!strings.Contains(got["messages"].([]any)[0].(string), "DIFFERENT_SCHEMA_TYPE") {
		t.Fatalf("different type: %v", got)
	}
	// Incompatible: 409 with 40901 and Confluent's layout.
	bad := strings.Replace(v2, "string note = 3", "int64 order_id = 1", 1)
	bad = strings.Replace(bad, "string order_id = 1; ", "", 1)
	st, b := do(t, "POST", u+"/subjects/paid-value/versions", ct, strings.TrimSuffix(schemaBody(bad), "}")+ref+"}")
	if st != 409 || num(decode(t, b)["error_code"]) != 40901 || !strings.Contains(b, "oldSchemaVersion: 1") || !strings.Contains(b, "compatibility: 'BACKWARD'") {
		t.Fatalf("incompatible register: %d %s", st, b)
	}
}

// The hardening of #14: JSON content types only, a body limit, every
// schema parsed, read-only and read-write users.
func TestHardening(t *testing.T) {
	srv := serve(t, registry.Config{MaxBodyBytes: 4096})
	u := srv.URL
	for _, c := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""} {
		st, b := do(t, "POST", u+"/subjects/a-value/versions", c, schemaBody(v1))
		if st != 415 || num(decode(t, b)["error_code"]) != 415 {
			t.Errorf("content type %q: %d %s, want 415", c, st, b)
		}
	}
	for _, c := range []string{"application/json", "application/vnd.schemaregistry+json", "application/vnd.schemaregistry.v1+json; charset=utf-8"} {
		if st, b := do(t, "POST", u+"/subjects/money-"+strings.ReplaceAll(c[12:15], "/", "")+"/versions", c, schemaBody(dep)); st != 200 {
			t.Errorf("content type %q: %d %s, want 200", c, st, b)
		}
	}
	big := schemaBody(dep + "// " + strings.Repeat("x", 5000) + "\n")
	if st, b := do(t, "POST", u+"/subjects/big-value/versions", ct, big); st != 413 || num(decode(t, b)["error_code"]) != 413 {
		t.Errorf("oversized body: %d %s, want 413", st, b)
	}
	// Parsed at NONE too, and for JSON schemas.
	do(t, "PUT", u+"/config/junk-value", ct, `{"compatibility":"NONE"}`)
	if st, b := do(t, "POST", u+"/subjects/junk-value/versions", ct, schemaBody("junk")); st != 422 || num(decode(t, b)["error_code"]) != 42201 {
		t.Errorf("junk at NONE: %d %s, want 422/42201", st, b)
	}
	if st, b := do(t, "POST", u+"/subjects/junk-value/versions", ct, `{"schemaType":"JSON","schema":"{nope"}`); st != 422 {
		t.Errorf("junk JSON schema: %d %s, want 422", st, b)
	}

	auth := serve(t, registry.Config{User: "ops", Password: "rw", ReadOnlyUser: "app", ReadOnlyPassword: "ro"}).URL
	if st, b := do(t, "POST", auth+"/subjects/a-value/versions", ct, schemaBody(dep), "ops", "rw"); st != 200 {
		t.Fatalf("writer registers: %d %s", st, b)
	}
	if st, b := do(t, "POST", auth+"/subjects/b-value/versions", ct, schemaBody(dep), "app", "ro"); st != 403 || num(decode(t, b)["error_code"]) != 40301 {
		t.Fatalf("reader registers: %d %s, want 403/40301", st, b)
	}
	if st, b := do(t, "DELETE", auth+"/subjects/a-value", "", "", "app", "ro"); st != 403 {
		t.Fatalf("reader deletes: %d %s, want 403", st, b)
	}
	if st, b := do(t, "POST", auth+"/subjects/a-value", ct, schemaBody(dep), "app", "ro"); st != 200 {
		t.Fatalf("reader looks up: %d %s", st, b)
	}
	if st, b := do(t, "GET", auth+"/subjects", "", "", "app", "ro"); st != 200 || !strings.Contains(b, "a-value") {
		t.Fatalf("reader lists: %d %s", st, b)
	}
	for _, creds := range [][]string{{"app", "rw"}, {"ops", "ro"}, {"ops", ""}, {}} {
		if st, b := do(t, "GET", auth+"/subjects", "", "", creds...); st != 401 || num(decode(t, b)["error_code"]) != 40101 {
			t.Errorf("credentials %v: %d %s, want 401", creds, st, b)
		}
	}
}

// A schema being compiled does not hold the registry's lock: while one
// registration is stopped inside its compilation, reads and other
// registrations' bookkeeping go on.
func TestCompileOutsideLock(t *testing.T) {
	r, err := registry.New(registry.Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	entered, release := make(chan struct{}), make(chan struct{})
	registry.SetCompileHook(r, func() {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
	})
	srv := httptest.NewServer(r.Handler())
	t.Cleanup(srv.Close)
	u := srv.URL
	if st, b := do(t, "PUT", u+"/config", ct, `{"compatibility":"FULL"}`); st != 200 {
		t.Fatalf("config: %d %s", st, b)
	}

	done := make(chan int, 1)
	go func() {
		st, _ := do(t, "POST", u+"/subjects/slow-value/versions", ct, schemaBody(v1alone))
		done <- st
	}()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the registration never started compiling")
	}
	// The registration is inside its compilation now. Each of these
	// would wait for it if compiling held the lock.
	if st, b := do(t, "GET", u+"/subjects", "", ""); st != 200 || b != "[]\n" {
		t.Fatalf("read during a compilation: %d %s", st, b)
	}
	if st, b := do(t, "GET", u+"/config", "", ""); st != 200 || !strings.Contains(b, "FULL") {
		t.Fatalf("config during a compilation: %d %s", st, b)
	}
	if st, b := do(t, "POST", u+"/subjects/fast-value/versions", ct, schemaBody(dep)); st != 200 {
		t.Fatalf("another registration during a compilation: %d %s", st, b)
	}
	close(release)
	if st := <-done; st != 200 {
		t.Fatalf("the held registration: %d", st)
	}
	if st, b := do(t, "GET", u+"/subjects", "", ""); st != 200 || b != "[\"fast-value\",\"slow-value\"]\n" {
		t.Fatalf("after: %d %s", st, b)
	}
}

const v1alone = `syntax = "proto3";
package t.v1;
message Alone { string order_id = 1; }
`

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestPagination(t *testing.T) {
	srv := serve(t, registry.Config{})
	for _, s := range []string{"a", "b", "c", "d"} {
		if st, b := do(t, "POST", srv.URL+"/subjects/"+s+"-value/versions", ct, schemaBody(dep)); st != 200 {
			t.Fatalf("register: %d %s", st, b)
		}
	}
	for query, want := range map[string]string{
		"":                       `["a-value","b-value","c-value","d-value"]`,
		"?offset=1&limit=2":      `["b-value","c-value"]`,
		"?offset=0&limit=-1":     `["a-value","b-value","c-value","d-value"]`,
		"?offset=3":              `["d-value"]`,
		"?offset=9&limit=1":      `[]`,
		"?subjectPrefix=c&limit": `["c-value"]`,
	} {
		if st, b := do(t, "GET", srv.URL+"/subjects"+query, "", ""); st != 200 || strings.TrimSpace(b) != want {
			t.Errorf("GET /subjects%s = %d %s, want %s", query, st, b, want)
		}
	}
}

// Text made only of base64 characters is not taken for a serialized
// descriptor of nothing.
func TestJunkIsNotASerializedSchema(t *testing.T) {
	srv := serve(t, registry.Config{})
	do(t, "PUT", srv.URL+"/config", ct, `{"compatibility":"NONE"}`)
	for _, junk := range []string{"junk", "AAAA", "eAE=", "QUJD"} {
		if st, b := do(t, "POST", srv.URL+"/subjects/j-value/versions", ct, schemaBody(junk)); st != 422 {
			t.Errorf("%q: %d %s, want 422", junk, st, b)
		}
	}
}
