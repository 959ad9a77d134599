package schemacheck_test

import (
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/herald-events/herald/internal/schemacheck"
	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/registry"
	"github.com/herald-events/herald/platform/schema"
	"github.com/herald-events/herald/platform/schema/compat"
)

const eventsFile = "herald/orders/v1/events.proto"

func tree(t *testing.T, edit func(string) string) (schemacheck.Tree, string) {
	t.Helper()
	files, err := schemacheck.ReadDir("../../proto")
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		before := files[eventsFile]
		files[eventsFile] = edit(before)
		if files[eventsFile] == before {
			t.Fatal("edit changed nothing")
		}
	}
	tr, err := schemacheck.Compile(files)
	if err != nil {
		t.Fatal(err)
	}
	return tr, files[eventsFile]
}

func lineOf(text, needle string) int {
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, needle) {
			return i + 1
		}
	}
	return 0
}

var (
	// The fields carry rules ("= 2 [(buf.validate.field)...];"): the
	// edits replace a whole declaration, rules included.
	quantityField = regexp.MustCompile(`int32 quantity = 2[^;]*;`)
	createTime    = regexp.MustCompile(`google.protobuf.Timestamp create_time = 5[^;]*;`)
	breaking      = func(s string) string {
		loc := quantityField.FindStringIndex(s)
		if loc == nil {
			return s
		}
		return s[:loc[0]] + "string quantity = 2;" + s[loc[1]:]
	}
	addedField = func(s string) string {
		loc := createTime.FindStringIndex(s)
		if loc == nil {
			return s
		}
		return s[:loc[1]] + "\n  // Where to ship.\n  string shipping_address = 6;" + s[loc[1]:]
	}
)

func TestDiff(t *testing.T) {
	base, _ := tree(t, nil)
	bad, badText := tree(t, breaking)
	rep, err := schemacheck.Diff(bad, base, compat.Backward)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Compatible() {
		t.Fatal("a field changed from int32 to string passed the diff")
	}
	var found bool
	for _, f := range rep.Findings {
		for _, v := range f.Violations {
			if v.Rule == compat.FieldScalarKindChanged && v.Path == "herald.orders.v1.OrderLine.quantity" &&
				v.Line == lineOf(badText, "string quantity = 2;") {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("report does not name the field and its line:\n%s", rep.Text())
	}
	if !strings.Contains(rep.Text(), eventsFile+":") {
		t.Fatalf("text report lacks file:line:\n%s", rep.Text())
	}

	gone := schemacheck.Tree{}
	for path, fd := range base {
		if path != eventsFile {
			gone[path] = fd
		}
	}
	if rep, err := schemacheck.Diff(gone, base, compat.Backward); err != nil || rep.Compatible() || !strings.Contains(rep.Text(), "file removed") {
		t.Fatalf("removing the orders events file: %v\n%s", err, rep.Text())
	}
	if rep, _ := schemacheck.Diff(gone, base, compat.Forward); !rep.Compatible() {
		t.Fatalf("removing a file is a FORWARD-compatible change:\n%s", rep.Text())
	}

	good, _ := tree(t, addedField)
	if rep, err := schemacheck.Diff(good, base, compat.FullTransitive); err != nil || !rep.Compatible() {
		t.Fatalf("adding a field: %v\n%s", err, rep.Text())
	}
}

func TestReadGitMatchesTheTree(t *testing.T) {
	files, err := schemacheck.ReadGit("HEAD", "../../proto")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := files[eventsFile]; !ok || len(files) < 5 {
		t.Fatalf("ReadGit(HEAD) found %d files: %v", len(files), keys(files))
	}
	none, err := schemacheck.ReadGit("HEAD", "../../no-such-dir")
	if err != nil || len(none) != 0 {
		t.Fatalf("ReadGit of a missing dir = %v, %v", keys(none), err)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestCheckRegistry registers the compiled-in event schemas the way a deploy
// does, then checks the proto tree against them: unchanged and a new field
// pass, a changed field type fails.
func TestCheckRegistry(t *testing.T) {
	reg, err := registry.New(registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()
	if _, err := server.RegisterSchemas(server.RegistryConfig{URL: srv.URL}, schema.TopicName, ""); err != nil {
		t.Fatal(err)
	}
	client, err := schema.NewClient(srv.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(string) string
		ok   bool
	}{{"unchanged", nil, true}, {"field added", addedField, true}, {"type changed", breaking, false}} {
		t.Run(tc.name, func(t *testing.T) {
			tr, _ := tree(t, tc.edit)
			rep, err := schemacheck.CheckRegistry(client, tr, schema.TopicName, "", "")
			if err != nil {
				t.Fatal(err)
			}
			if rep.Compatible() != tc.ok {
				t.Fatalf("compatible = %v, want %v\n%s", rep.Compatible(), tc.ok, rep.Text())
			}
			i := slices.IndexFunc(rep.Findings, func(f schemacheck.Finding) bool { return f.Subject == "herald.orders.v1-value" })
			if i < 0 || rep.Findings[i].Versions != 1 || rep.Findings[i].Level != compat.Backward ||
				!slices.ContainsFunc(rep.Findings, func(f schemacheck.Finding) bool { return f.Subject == "herald/money/v1/money.proto" }) {
				t.Fatalf("findings: %+v", rep.Findings)
			}
		})
	}
	// A subject the registry does not have yet is reported, not failed.
	tr, _ := tree(t, nil)
	rep, err := schemacheck.CheckRegistry(client, tr, schema.TopicName, "fresh", compat.Full)
	if err != nil || !rep.Compatible() || !strings.Contains(rep.Text(), "not registered yet") {
		t.Fatalf("unregistered namespace: %v\n%s", err, rep.Text())
	}
}

// TestCheckRegistryFollowsImports changes a field of an imported message
// only: the importing events subject fails too, at every field that uses
// the message, because referenced types are compared by structure.
func TestCheckRegistryFollowsImports(t *testing.T) {
	reg, err := registry.New(registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()
	if _, err := server.RegisterSchemas(server.RegistryConfig{URL: srv.URL}, schema.TopicName, ""); err != nil {
		t.Fatal(err)
	}
	client, err := schema.NewClient(srv.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	files, err := schemacheck.ReadDir("../../proto")
	if err != nil {
		t.Fatal(err)
	}
	const moneyFile = "herald/money/v1/money.proto"
	before := files[moneyFile]
	files[moneyFile] = strings.Replace(before, "int64 units = 2;", "string units = 2;", 1)
	if files[moneyFile] == before {
		t.Fatal("edit changed nothing")
	}
	tr, err := schemacheck.Compile(files)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := schemacheck.CheckRegistry(client, tr, schema.TopicName, "", compat.Backward)
	if err != nil {
		t.Fatal(err)
	}
	violations := map[string][]string{}
	for _, f := range rep.Findings {
		for _, v := range f.Violations {
			violations[f.Subject] = append(violations[f.Subject], v.Rule+" "+v.Path)
		}
	}
	if !slices.Contains(violations[moneyFile], compat.FieldScalarKindChanged+" herald.money.v1.Money.units") {
		t.Errorf("money subject: %v", violations[moneyFile])
	}
	for _, field := range []string{"OrderCreated.total", "OrderLine.unit_price", "OrderConfirmed.total"} {
		if !slices.Contains(violations["herald.orders.v1-value"], compat.FieldNamedTypeChanged+" herald.orders.v1."+field) {
			t.Errorf("orders subject lacks %s at %s: %v", compat.FieldNamedTypeChanged, field, violations["herald.orders.v1-value"])
		}
	}
	if t.Failed() {
		t.Log(rep.Text())
	}
}

// TestDiffWarnsOfTightenedRules: a rule tightened on a field that old data
// already has passes the gate with a warning naming the field and its
// line; a rule loosened or dropped, or unchanged, warns of nothing.
func TestDiffWarnsOfTightenedRules(t *testing.T) {
	base, _ := tree(t, nil)
	withQuantity := func(rules string) func(string) string {
		return func(s string) string {
			loc := quantityField.FindStringIndex(s)
			if loc == nil {
				return s
			}
			return s[:loc[0]] + "int32 quantity = 2" + rules + ";" + s[loc[1]:]
		}
	}
	tighter, text := tree(t, withQuantity(" [(buf.validate.field).int32 = {gt: 0, lte: 100}]"))
	rep, err := schemacheck.Diff(tighter, base, compat.Backward)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Compatible() {
		t.Fatalf("a tightened rule is a warning, not an incompatibility:\n%s", rep.Text())
	}
	var found bool
	for _, f := range rep.Findings {
		for _, w := range f.Warnings {
			if w.Path == "herald.orders.v1.OrderLine.quantity" && w.Line == lineOf(text, "int32 quantity = 2") &&
				strings.Contains(w.Detail, "to (int32:{lte:100 gt:0})") {
				found = true
			}
		}
	}
	if !found || !strings.Contains(rep.Text(), "warning: "+eventsFile+":") {
		t.Fatalf("no warning naming quantity, its line and its new rule:\n%s", rep.Text())
	}

	for name, rules := range map[string]string{
		"rules dropped": "",
		"same rules":    " [(buf.validate.field).int32 = {gt: 0, lte: 10000}]",
	} {
		next, _ := tree(t, withQuantity(rules))
		rep, err := schemacheck.Diff(next, base, compat.Backward)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range rep.Findings {
			if len(f.Warnings) > 0 {
				t.Errorf("%s: unexpected warnings %v", name, f.Warnings)
			}
		}
	}
}
