package console

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/herald-events/herald/internal/schemacheck"
	"github.com/herald-events/herald/platform/schema/compat"
)

// subjectRow is one registry subject.
type subjectRow struct {
	Subject  string
	Versions []int
	Latest   int
	Level    string
	Error    string
}

func (c *Console) level(subject string) string {
	if l, err := c.cfg.Registry.GetCompatibility(subject); err == nil {
		return l.String() + " (subject)"
	}
	if l, err := c.cfg.Registry.GetDefaultCompatibility(); err == nil {
		return l.String() + " (global)"
	}
	return "unknown"
}

// schemaPage is how many subjects the schemas page lists at once.
const schemaPage = 100

// schemas lists the registry's subjects whose names contain the filter
// (default: the namespace, on a registry that several deployments share),
// 100 a page, with their versions and levels, asking the registry about 8
// subjects at a time.
func (c *Console) schemas(w http.ResponseWriter, r *http.Request, s *session) {
	start := time.Now()
	q := r.URL.Query()
	filter, set := q.Get("q"), q.Has("q")
	if !set && c.cfg.Namespace != "" {
		filter = c.cfg.Namespace + "."
	}
	page, _ := strconv.Atoi(q.Get("page"))
	page = max(page, 0)
	data := map[string]any{"Title": "Schemas", "Filter": filter, "Page": page, "Prev": page - 1, "Next": page + 1}
	all, err := c.cfg.Registry.GetAllSubjects()
	if err != nil {
		data["Error"] = err.Error()
	}
	var subjects []string
	for _, sub := range all {
		if strings.Contains(sub, filter) || (filter == c.cfg.Namespace+"." && strings.HasPrefix(sub, "herald/")) {
			subjects = append(subjects, sub)
		}
	}
	slices.Sort(subjects)
	data["Matched"] = len(subjects)
	data["HasNext"] = (page+1)*schemaPage < len(subjects)
	subjects = subjects[min(len(subjects), page*schemaPage):min(len(subjects), (page+1)*schemaPage)]
	global := "unknown"
	if l, err := c.cfg.Registry.GetDefaultCompatibility(); err == nil {
		global = l.String()
	}
	rows := make([]subjectRow, len(subjects))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, sub := range subjects {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			row := subjectRow{Subject: sub, Level: global + " (global)"}
			vs, err := c.cfg.Registry.GetAllVersions(sub)
			if err != nil {
				row.Error = err.Error()
			}
			row.Versions = vs
			if len(vs) > 0 {
				row.Latest = vs[len(vs)-1]
			}
			if l, err := c.cfg.Registry.GetCompatibility(sub); err == nil {
				row.Level = l.String() + " (subject)"
			}
			rows[i] = row
		})
	}
	wg.Wait()
	data["Subjects"] = rows
	data["Took"] = time.Since(start)
	c.render(w, r, "schemas", s, data)
}

// subject shows a subject's versions and, with ?a=&b=, the difference
// between two of them: the lines of the schema text, and the changes as the
// compatibility rules name them.
func (c *Console) subject(w http.ResponseWriter, r *http.Request, s *session) {
	sub := r.PathValue("subject")
	data := map[string]any{"Title": "Subject " + sub, "Subject": sub, "Level": c.level(sub)}
	vs, err := c.cfg.Registry.GetAllVersions(sub)
	if err != nil {
		data["Error"] = err.Error()
		w.WriteHeader(http.StatusNotFound)
		c.render(w, r, "subject", s, data)
		return
	}
	data["Versions"] = vs
	q := r.URL.Query()
	a, _ := strconv.Atoi(q.Get("a"))
	b, _ := strconv.Atoi(q.Get("b"))
	if b == 0 && len(vs) > 0 {
		b = vs[len(vs)-1]
	}
	if a == 0 {
		a = b
		if i := slices.Index(vs, b); i > 0 {
			a = vs[i-1]
		}
	}
	data["A"], data["B"] = a, b
	if !slices.Contains(vs, a) || !slices.Contains(vs, b) {
		data["Error"] = "no such version"
		c.render(w, r, "subject", s, data)
		return
	}
	ma, err1 := c.cfg.Registry.GetSchemaMetadata(sub, a)
	mb, err2 := c.cfg.Registry.GetSchemaMetadata(sub, b)
	if err1 != nil || err2 != nil {
		data["Error"] = "read versions: " + errText(err1, err2)
		c.render(w, r, "subject", s, data)
		return
	}
	data["IDA"], data["IDB"] = ma.ID, mb.ID
	data["Refs"] = refsOf(mb.References)
	data["Diff"] = lineDiff(ma.Schema, mb.Schema)
	fa, err1 := schemacheck.Fetch(c.cfg.Registry, sub, a)
	fb, err2 := schemacheck.Fetch(c.cfg.Registry, sub, b)
	if err1 == nil && err2 == nil {
		data["Changes"] = compat.Compare(fa, fb)
	} else {
		data["CompareError"] = errText(err1, err2)
	}
	c.render(w, r, "subject", s, data)
}

func refsOf(refs []schemaregistry.Reference) []string {
	var out []string
	for _, r := range refs {
		out = append(out, r.Name+" → "+r.Subject+" v"+strconv.Itoa(r.Version))
	}
	return out
}

func errText(errs ...error) string {
	var out []string
	for _, e := range errs {
		if e != nil {
			out = append(out, e.Error())
		}
	}
	return strings.Join(out, "; ")
}

// schemaCheck runs `herald schema check` on the event schemas compiled
// into this binary against the registry, at each subject's level.
func (c *Console) schemaCheck(w http.ResponseWriter, r *http.Request, s *session) {
	start := time.Now()
	data := map[string]any{"Title": "Schema check"}
	rep, err := schemacheck.CheckRegistry(c.cfg.Registry, compiledTree(), c.cfg.Strategy, c.cfg.Namespace, "")
	if err != nil {
		data["Error"] = err.Error()
	}
	data["Report"] = rep
	data["Compatible"] = err == nil && rep.Compatible()
	data["Text"] = rep.Text()
	data["Took"] = time.Since(start)
	c.render(w, r, "check", s, data)
}

// compiledTree is proto/ as compiled into the binary: herald's files.
func compiledTree() schemacheck.Tree {
	tree := schemacheck.Tree{}
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if strings.HasPrefix(fd.Path(), "herald/") {
			tree[fd.Path()] = fd
		}
		return true
	})
	return tree
}

// diffLine is one line of a diff: Op is ' ', '+' or '-'.
type diffLine struct {
	Op     string
	Text   string
	OldNum int
	NewNum int
}

// lineDiff is a longest-common-subsequence diff of two texts by line.
// Schemas are small; past 3000 lines a side the texts are shown whole, one
// removed and one added.
func lineDiff(a, b string) []diffLine {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	if len(al) > 3000 || len(bl) > 3000 {
		var out []diffLine
		for i, l := range al {
			out = append(out, diffLine{Op: "-", Text: l, OldNum: i + 1})
		}
		for i, l := range bl {
			out = append(out, diffLine{Op: "+", Text: l, NewNum: i + 1})
		}
		return out
	}
	n, m := len(al), len(bl)
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if al[i] == bl[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []diffLine
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && al[i] == bl[j]:
			out = append(out, diffLine{Op: " ", Text: al[i], OldNum: i + 1, NewNum: j + 1})
			i++
			j++
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			out = append(out, diffLine{Op: "+", Text: bl[j], NewNum: j + 1})
			j++
		default:
			out = append(out, diffLine{Op: "-", Text: al[i], OldNum: i + 1})
			i++
		}
	}
	return out
}
