package compat_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/herald-events/herald/platform/schema/compat"
)

// TestCompareDifferences pins the whole list of differences, compatible
// ones included, for the oneof and reference rules: the evolution cases
// only see the verdicts and the main violation.
func TestCompareDifferences(t *testing.T) {
	const header = "syntax = \"proto3\";\npackage herald.test.v1;\n"
	money := func(pkg, units string) string {
		return fmt.Sprintf("syntax = \"proto3\";\npackage %s;\nmessage Money {\n  string currency = 1;\n  %s units = 2;\n  Part part = 3;\n  message Part { int32 cents = 1; }\n}\n", pkg, units)
	}
	tests := []struct {
		name             string
		old, new         string
		oldDeps, newDeps map[string]string
		want             []string // "RULE path", "!" after an incompatible rule
	}{
		{
			name: "oneof renamed with the same fields",
			old:  header + "message M {\n  oneof a { string x = 1; string y = 2; }\n}\n",
			new:  header + "message M {\n  oneof b { string x = 1; string y = 2; }\n}\n",
			want: []string{"ONEOF_REMOVED herald.test.v1.M.a", "ONEOF_ADDED herald.test.v1.M.b"},
		},
		{
			name: "oneof deleted with its fields",
			old:  header + "message M {\n  string id = 1;\n  oneof a { string x = 2; string y = 3; }\n}\n",
			new:  header + "message M {\n  string id = 1;\n}\n",
			want: []string{"ONEOF_REMOVED herald.test.v1.M.a", "FIELD_REMOVED herald.test.v1.M.x", "FIELD_REMOVED herald.test.v1.M.y"},
		},
		{
			name: "oneof renamed and one member dropped",
			old:  header + "message M {\n  oneof a { string x = 1; string y = 2; }\n}\n",
			new:  header + "message M {\n  oneof b { string x = 1; }\n}\n",
			want: []string{"ONEOF_REMOVED herald.test.v1.M.a", "ONEOF_ADDED herald.test.v1.M.b", "ONEOF_FIELD_REMOVED! herald.test.v1.M.y"},
		},
		{
			name: "field moved out of a oneof, type changed",
			old:  header + "message M {\n  oneof a { string x = 1; int32 y = 2; }\n}\n",
			new:  header + "message M {\n  int64 y = 2;\n  oneof a { string x = 1; }\n}\n",
			want: []string{"ONEOF_FIELD_MOVED_TO_TOP_LEVEL herald.test.v1.M.y"},
		},
		{
			name: "field moved out of a oneof across wire groups",
			old:  header + "message M {\n  oneof a { string x = 1; int32 y = 2; }\n}\n",
			new:  header + "message M {\n  string y = 2;\n  oneof a { string x = 1; }\n}\n",
			want: []string{"ONEOF_FIELD_MOVED_TO_TOP_LEVEL herald.test.v1.M.y", "FIELD_SCALAR_KIND_CHANGED! herald.test.v1.M.y"},
		},
		{
			name: "two top-level fields and a oneof merged",
			old:  header + "message M {\n  string x = 1;\n  string y = 2;\n  oneof a { string z = 3; }\n}\n",
			new:  header + "message M {\n  oneof a { string z = 3; string x = 1; string y = 2; }\n}\n",
			want: []string{"MULTIPLE_FIELDS_MOVED_TO_ONEOF! herald.test.v1.M.x"},
		},
		{
			name: "new fields in a new oneof with one moved field",
			old:  header + "message M {\n  string x = 1;\n}\n",
			new:  header + "message M {\n  oneof a { string x = 1; string y = 2; }\n}\n",
			want: []string{"ONEOF_ADDED herald.test.v1.M.a", "ONEOF_FIELD_ADDED herald.test.v1.M.y"},
		},
		{
			name:    "imported message changed: reported inside the import and at the field",
			old:     header + "import \"m.proto\";\nmessage Order { herald.money.v1.Money total = 1; }\n",
			new:     header + "import \"m.proto\";\nmessage Order { herald.money.v1.Money total = 1; }\n",
			oldDeps: map[string]string{"m.proto": money("herald.money.v1", "int64")},
			newDeps: map[string]string{"m.proto": money("herald.money.v1", "double")},
			want: []string{"FIELD_SCALAR_KIND_CHANGED! herald.money.v1.Money.units",
				"FIELD_NAMED_TYPE_CHANGED! herald.test.v1.Order.total"},
		},
		{
			name:    "imported message in another package, compatible change inside",
			old:     header + "import \"m.proto\";\nmessage Order { herald.money.v1.Money total = 1; herald.money.v1.Money tax = 2; }\n",
			new:     header + "import \"n.proto\";\nmessage Order { herald.money.v2.Money total = 1; herald.money.v2.Money tax = 2; }\n",
			oldDeps: map[string]string{"m.proto": money("herald.money.v1", "int32")},
			newDeps: map[string]string{"n.proto": money("herald.money.v2", "int64")},
			want:    nil,
		},
		{
			name:    "imported nested message removed",
			old:     header + "import \"m.proto\";\nmessage Order { herald.money.v1.Money total = 1; }\n",
			new:     header + "import \"m.proto\";\nmessage Order { herald.money.v1.Money total = 1; }\n",
			oldDeps: map[string]string{"m.proto": money("herald.money.v1", "int64")},
			newDeps: map[string]string{"m.proto": "syntax = \"proto3\";\npackage herald.money.v1;\nmessage Money { string currency = 1; int64 units = 2; }\n"},
			want: []string{"FIELD_REMOVED herald.money.v1.Money.part", "MESSAGE_REMOVED! herald.money.v1.Money.Part",
				"FIELD_NAMED_TYPE_CHANGED! herald.test.v1.Order.total"},
		},
		{
			name:    "message moved into an import",
			old:     header + "message Order { Money total = 1; }\nmessage Money { string currency = 1; }\n",
			new:     header + "import \"m.proto\";\nmessage Order { herald.money.v1.Money total = 1; }\n",
			newDeps: map[string]string{"m.proto": "syntax = \"proto3\";\npackage herald.money.v1;\nmessage Money { string currency = 1; }\n"},
			want:    []string{"MESSAGE_REMOVED! herald.test.v1.Money"},
		},
		{
			name: "local message renamed",
			old:  header + "message Order { Money total = 1; }\nmessage Money { string currency = 1; }\n",
			new:  header + "message Order { Amount total = 1; }\nmessage Amount { string currency = 1; }\n",
			want: []string{"MESSAGE_ADDED herald.test.v1.Amount", "MESSAGE_REMOVED! herald.test.v1.Money",
				"FIELD_NAMED_TYPE_CHANGED! herald.test.v1.Order.total"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, err := compat.Parse(compat.Schema{Text: tt.old, Deps: tt.oldDeps})
			if err != nil {
				t.Fatal(err)
			}
			next, err := compat.Parse(compat.Schema{Text: tt.new, Deps: tt.newDeps})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range compat.Compare(old, next) {
				mark := ""
				if !d.Compatible {
					mark = "!"
				}
				got = append(got, d.Rule+mark+" "+d.Path)
			}
			want := slices.Clone(tt.want)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("differences:\n got  %q\n want %q", got, want)
			}
		})
	}
}
