// Package composecheck validates compose/compose.yaml against the Compose
// Specification's JSON schema (as compose-go, the reference Go
// implementation, embeds it). It is a module of its own so that
// compose-go's dependencies stay out of herald's go.mod; run it with
// `make compose-check`.
package composecheck

import (
	"os"
	"testing"

	"github.com/compose-spec/compose-go/v2/schema"
	"gopkg.in/yaml.v3"
)

// TestComposeFileMatchesTheSpecification validates the file after YAML
// anchors and merge keys are resolved, as Compose reads it.
func TestComposeFileMatchesTheSpecification(t *testing.T) {
	raw, err := os.ReadFile("../../compose/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("parse compose.yaml: %v", err)
	}
	if err := schema.Validate(doc); err != nil {
		t.Fatalf("compose.yaml does not match the Compose Specification: %v", err)
	}
}

// TestTheSchemaRejectsAnUnknownServiceKey proves the check can fail: a
// misspelt service key is refused.
func TestTheSchemaRejectsAnUnknownServiceKey(t *testing.T) {
	doc := map[string]any{"services": map[string]any{"a": map[string]any{"image": "x", "enviroment": map[string]any{"A": "b"}}}}
	if err := schema.Validate(doc); err == nil {
		t.Fatal("a service with key enviroment passed the schema")
	}
}
