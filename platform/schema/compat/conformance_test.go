package compat_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/herald-events/herald/platform/registry"
	"github.com/herald-events/herald/platform/schema/compat"
)

// evolutionCase is one directory of testdata/cases: versions v1.proto,
// v2.proto, ... of one schema, the last being the new one, and the verdict
// expected at every level. The files a version imports, other than
// google/protobuf ones, sit under a directory named after it (v1/, v2/...),
// at their import paths.
type evolutionCase struct {
	Name        string
	Versions    []string
	Deps        []map[string]string   // per version: import path → text
	Description string                `json:"description"`
	Expect      map[compat.Level]bool `json:"expect"`
	Rule        string                `json:"rule"`
	Path        string                `json:"path"`
}

func loadCases(t *testing.T) []evolutionCase {
	t.Helper()
	dirs, err := filepath.Glob("testdata/cases/*")
	if err != nil {
		t.Fatal(err)
	}
	var out []evolutionCase
	for _, dir := range dirs {
		raw, err := os.ReadFile(filepath.Join(dir, "case.json"))
		if err != nil {
			continue // not a case directory
		}
		c := evolutionCase{Name: filepath.Base(dir)}
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		for i := 1; ; i++ {
			b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("v%d.proto", i)))
			if err != nil {
				break
			}
			c.Versions = append(c.Versions, string(b))
			c.Deps = append(c.Deps, loadDeps(t, filepath.Join(dir, fmt.Sprintf("v%d", i))))
		}
		if len(c.Versions) < 2 {
			t.Fatalf("%s: needs v1.proto and v2.proto", dir)
		}
		for _, l := range compat.Levels {
			if _, ok := c.Expect[l]; !ok {
				t.Fatalf("%s: no expectation for %s", dir, l)
			}
		}
		out = append(out, c)
	}
	if len(out) < 30 {
		t.Fatalf("found %d evolution cases, want at least 30", len(out))
	}
	return out
}

// loadDeps reads the imports of one version from dir, keyed by their path
// under dir; none when dir does not exist.
func loadDeps(t *testing.T, dir string) map[string]string {
	t.Helper()
	deps := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		deps[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("%s: %v", dir, err)
	}
	return deps
}

func parseAll(t *testing.T, c evolutionCase) []protoreflect.FileDescriptor {
	t.Helper()
	var fds []protoreflect.FileDescriptor
	for i, v := range c.Versions {
		fd, err := compat.Parse(compat.Schema{Name: fmt.Sprintf("v%d.proto", i+1), Text: v, Deps: c.Deps[i]})
		if err != nil {
			t.Fatalf("%s v%d: %v", c.Name, i+1, err)
		}
		fds = append(fds, fd)
	}
	return fds
}

// TestConformanceChecker runs every case through the checker.
func TestConformanceChecker(t *testing.T) {
	for _, c := range loadCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			fds := parseAll(t, c)
			next, history := fds[len(fds)-1], fds[:len(fds)-1]
			var seen []compat.Violation
			for _, level := range compat.Levels {
				vs, err := compat.Check(level, next, history)
				if err != nil {
					t.Fatal(err)
				}
				seen = append(seen, vs...)
				if got := len(vs) == 0; got != c.Expect[level] {
					t.Errorf("%s: compatible=%v, want %v (%s); violations: %v", level, got, c.Expect[level], c.Description, vs)
				}
			}
			if c.Rule != "" && !slices.ContainsFunc(seen, func(v compat.Violation) bool {
				return v.Rule == c.Rule && (c.Path == "" || v.Path == c.Path)
			}) {
				t.Errorf("no %s violation at %q among %v", c.Rule, c.Path, seen)
			}
		})
	}
}

// registryVerdicts registers each case's history in a fresh subject per
// level of a Confluent-API registry, then tries the new version, and returns
// the verdict per case and level.
func registryVerdicts(t *testing.T, base string, cases []evolutionCase) map[string]map[compat.Level]bool {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	run := hex.EncodeToString(b[:])
	out := map[string]map[compat.Level]bool{}
	for _, c := range cases {
		out[c.Name] = map[compat.Level]bool{}
		for _, level := range compat.Levels {
			subject := fmt.Sprintf("conformance-%s-%s-%s", run, c.Name, strings.ToLower(string(level)))
			call(t, base, "PUT", "/config/"+subject, `{"compatibility":"NONE"}`, 200)
			bodies := make([]string, len(c.Versions))
			for i, v := range c.Versions {
				bodies[i] = schemaBody(v, registerDeps(t, base, fmt.Sprintf("%s-v%d", subject, i+1), c.Deps[i]))
			}
			for i, body := range bodies[:len(bodies)-1] {
				if st, body := send(t, base, "POST", "/subjects/"+subject+"/versions", body); st != 200 {
					t.Fatalf("%s: register v%d: %d %s", c.Name, i+1, st, body)
				}
			}
			call(t, base, "PUT", "/config/"+subject, `{"compatibility":"`+string(level)+`"}`, 200)
			st, body := send(t, base, "POST", "/subjects/"+subject+"/versions", bodies[len(bodies)-1])
			switch st {
			case 200:
				out[c.Name][level] = true
			case 409:
				out[c.Name][level] = false
			default:
				t.Fatalf("%s at %s: register the new version: %d %s", c.Name, level, st, body)
			}
		}
	}
	return out
}

// reference is a schema reference of the Confluent REST API.
type reference struct {
	Name    string `json:"name"`
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

// registerDeps registers each import of one version as its own subject,
// named prefix-<import path>, and returns the references to them. Imports
// may only import google/protobuf files themselves.
func registerDeps(t *testing.T, base, prefix string, deps map[string]string) []reference {
	t.Helper()
	var refs []reference
	for _, name := range slices.Sorted(maps.Keys(deps)) {
		subject := prefix + "-" + strings.NewReplacer("/", "_", ".", "_").Replace(name)
		call(t, base, "PUT", "/config/"+subject, `{"compatibility":"NONE"}`, 200)
		st, body := send(t, base, "POST", "/subjects/"+subject+"/versions", schemaBody(deps[name], nil))
		if st != 200 {
			t.Fatalf("register import %s as %s: %d %s", name, subject, st, body)
		}
		refs = append(refs, reference{Name: name, Subject: subject, Version: 1})
	}
	return refs
}

func schemaBody(text string, refs []reference) string {
	b, _ := json.Marshal(struct {
		SchemaType string      `json:"schemaType"`
		Schema     string      `json:"schema"`
		References []reference `json:"references,omitempty"`
	}{"PROTOBUF", text, refs})
	return string(b)
}

func send(t *testing.T, base, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, bytes.NewBufferString(body))
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
	return resp.StatusCode, string(b)
}

func call(t *testing.T, base, method, path, body string, want int) {
	t.Helper()
	if st, b := send(t, base, method, path, body); st != want {
		t.Fatalf("%s %s: %d %s", method, path, st, b)
	}
}

// TestConformanceEmbeddedRegistry runs every case through herald's
// embedded registry over its REST API.
func TestConformanceEmbeddedRegistry(t *testing.T) {
	cases := loadCases(t)
	reg, err := registry.New(registry.Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()
	got := registryVerdicts(t, srv.URL, cases)
	for _, c := range cases {
		for _, level := range compat.Levels {
			if got[c.Name][level] != c.Expect[level] {
				t.Errorf("%s at %s: registry says compatible=%v, want %v", c.Name, level, got[c.Name][level], c.Expect[level])
			}
		}
	}
}

// TestConformanceExternalRegistry runs the cases against the registry named
// by HERALD_SCHEMA_REGISTRY_URL (Apicurio in CI). Where its verdicts differ
// from Confluent's documented rules, the differences must be exactly the
// ones recorded in testdata/disagreements/<registry>.json.
func TestConformanceExternalRegistry(t *testing.T) {
	base := os.Getenv("HERALD_SCHEMA_REGISTRY_URL")
	if base == "" {
		t.Skip("HERALD_SCHEMA_REGISTRY_URL is not set")
	}
	name := "confluent"
	if strings.Contains(base, "/apis/ccompat/") {
		name = "apicurio"
	}
	cases := loadCases(t)
	got := registryVerdicts(t, strings.TrimRight(base, "/"), cases)
	observed := map[string]map[string]bool{}
	for _, c := range cases {
		for _, level := range compat.Levels {
			if got[c.Name][level] != c.Expect[level] {
				if observed[c.Name] == nil {
					observed[c.Name] = map[string]bool{}
				}
				observed[c.Name][string(level)] = got[c.Name][level]
			}
		}
	}
	file := filepath.Join("testdata", "disagreements", name+".json")
	recorded := map[string]map[string]bool{}
	if raw, err := os.ReadFile(file); err == nil {
		var rec struct {
			Cases map[string]map[string]bool `json:"cases"`
		}
		if err := json.Unmarshal(raw, &rec); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		recorded = rec.Cases
	}
	if !equalVerdicts(observed, recorded) {
		b, _ := json.MarshalIndent(observed, "", "  ")
		t.Fatalf("%s disagrees with Confluent's rules in other places than %s records.\nObserved (case → level → its verdict):\n%s",
			name, file, b)
	}
	t.Logf("%s: %d cases, %d with recorded disagreements", name, len(cases), len(observed))
}

func equalVerdicts(a, b map[string]map[string]bool) bool {
	keys := func(m map[string]map[string]bool) []string {
		var out []string
		for c, levels := range m {
			for l, v := range levels {
				out = append(out, fmt.Sprintf("%s/%s=%v", c, l, v))
			}
		}
		sort.Strings(out)
		return out
	}
	return slices.Equal(keys(a), keys(b))
}
