package schema_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	validatepb "buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	riskv1 "github.com/herald-events/herald/gen/go/herald/risk/v1"
)

// registryCall sends a JSON request to the registry and decodes the
// answer.
func registryCall(t *testing.T, method, u string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(method, u, strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// Subjects hold the contract as proto/ writes it: herald registers its
// events without the options code generation added, so a producer in
// another language, compiled from proto/, finds the same schema id by
// lookup (as text or as a serialized descriptor, with or without
// normalize), and so does herald's own producer.
func TestRegisteredSchemasAreTheContractInProto(t *testing.T) {
	codec, base := newCodec(t)
	root := filepath.Join("..", "..", "proto")
	for _, m := range []proto.Message{&ordersv1.OrderCreated{}, &inventoryv1.InventoryDeducted{}, &riskv1.RiskAssessed{}} {
		md := m.ProtoReflect().Descriptor()
		topic := "contract." + string(md.ParentFile().Package())
		id, err := codec.Register(topic, md)
		if err != nil {
			t.Fatalf("register %s: %v", md.FullName(), err)
		}
		subject := url.PathEscape(topic + "-value")
		st, latest := registryCall(t, "GET", base+"/subjects/"+subject+"/versions/latest", nil)
		if st != 200 {
			t.Fatalf("latest of %s: %d %v", subject, st, latest)
		}
		text := latest["schema"].(string)
		for _, opt := range []string{"go_package", "java_package", "csharp_namespace", "objc_class_prefix", "php_namespace", "ruby_package"} {
			if strings.Contains(text, opt) {
				t.Errorf("%s registered with %s:\n%s", md.FullName(), opt, text)
			}
		}
		refs := latest["references"]

		// The file as proto/ has it, comments and all.
		path := md.ParentFile().Path()
		src, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			t.Fatal(err)
		}
		serialized := compileProtoDir(t, root, path)
		for _, c := range []struct {
			name, schema, query string
		}{
			{"text", string(src), ""},
			{"text, normalize", string(src), "?normalize=true"},
			{"serialized", serialized, ""},
			{"serialized, normalize", serialized, "?normalize=true"},
		} {
			st, got := registryCall(t, "POST", base+"/subjects/"+subject+c.query,
				map[string]any{"schemaType": "PROTOBUF", "schema": c.schema, "references": refs})
			if st != 200 || int(got["id"].(float64)) != id {
				t.Errorf("%s: lookup of proto/%s (%s) = %d %v, want id %d", md.FullName(), path, c.name, st, got, id)
			}
		}
		// herald's own producer finds the same id.
		if got, err := codec.Lookup(topic, md); err != nil || got != id {
			t.Errorf("%s: codec lookup = %d, %v; want %d", md.FullName(), got, err, id)
		}
		b, err := codec.Encode(topic, m)
		if err != nil || len(b) < 5 || int(b[1])<<24|int(b[2])<<16|int(b[3])<<8|int(b[4]) != id {
			t.Errorf("%s: encoded with %v, %v; want schema id %d", md.FullName(), b, err, id)
		}
	}
}

// compileProtoDir compiles a file of proto/ as protoc would for another
// language and returns its descriptor as base64, the form
// confluent-kafka-python registers.
func compileProtoDir(t *testing.T, root, path string) string {
	t.Helper()
	c := protocompile.Compiler{Resolver: protocompile.CompositeResolver{
		protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{root}}),
		// The protovalidate rules, which proto/ imports, as published with
		// their Go module (make protodeps prints the same file for buf).
		protocompile.ResolverFunc(func(path string) (protocompile.SearchResult, error) {
			if path == validatepb.File_buf_validate_validate_proto.Path() {
				return protocompile.SearchResult{Desc: validatepb.File_buf_validate_validate_proto}, nil
			}
			return protocompile.SearchResult{}, protoregistry.NotFound
		}),
	}}
	res, err := c.Compile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	var fd protoreflect.FileDescriptor = res[0]
	b, err := proto.Marshal(protodesc.ToFileDescriptorProto(fd))
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}
