package console

import (
	"context"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-events/herald/platform/bus"
)

// partitionRow is one partition of a topic.
type partitionRow struct {
	Partition          int32
	Start, Stable, End int64
	Lags               []int64 // per group of the topic's groups, -1 unknown
}

// topicRow is one topic with its partitions and the lag of each group that
// reads it.
type topicRow struct {
	Topic      string
	Partitions []partitionRow
	Records    int64
	Groups     []string
	GroupLag   []int64
}

func (c *Console) topicRows(ctx context.Context) ([]*topicRow, error) {
	var topics []string
	for _, t := range c.cfg.Topics {
		topics = append(topics, t, bus.DeadLetterTopic(t))
	}
	offs, err := c.offsetsOf(ctx, topics...)
	if err != nil {
		return nil, err
	}
	var groups []string
	for _, g := range c.cfg.Consumers {
		groups = append(groups, g.Group)
	}
	lags, lerr := c.adm.Lag(ctx, groups...)
	var rows []*topicRow
	for _, t := range topics {
		o := offs[t]
		row := &topicRow{Topic: t}
		for _, g := range c.cfg.Consumers {
			if slices.Contains(g.Topics, t) {
				row.Groups = append(row.Groups, g.Group)
			}
		}
		parts := make([]int32, 0, len(o.End))
		for p := range o.End {
			parts = append(parts, p)
		}
		slices.Sort(parts)
		row.GroupLag = make([]int64, len(row.Groups))
		for _, p := range parts {
			pr := partitionRow{Partition: p, Start: o.Start[p], Stable: o.Stable[p], End: o.End[p]}
			row.Records += o.Stable[p] - o.Start[p]
			for i, g := range row.Groups {
				l := int64(-1)
				if lerr == nil {
					if gl, ok := lags[g]; ok {
						if ml, ok := gl.Lag[t][p]; ok && ml.Err == nil {
							l = ml.Lag
						}
					}
				}
				pr.Lags = append(pr.Lags, l)
				if l >= 0 && row.GroupLag[i] >= 0 {
					row.GroupLag[i] += l
				} else {
					row.GroupLag[i] = -1
				}
			}
			row.Partitions = append(row.Partitions, pr)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func (c *Console) topics(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	rows, err := c.topicRows(ctx)
	data := map[string]any{"Title": "Topics", "Topics": rows}
	if err != nil {
		data["Error"] = err.Error()
	}
	data["Took"] = time.Since(start)
	c.render(w, r, "topics", s, data)
}

// topic shows one topic's partitions and its newest records, pageSize at a
// time, read from the last Window records of each partition (or of the one
// partition a key filter hashes to), filtered by type and key.
func (c *Console) topic(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	name := r.PathValue("topic")
	q := r.URL.Query()
	typ, key := strings.TrimSpace(q.Get("type")), strings.TrimSpace(q.Get("key"))
	page, _ := strconv.Atoi(q.Get("page"))
	page = max(page, 0)
	if !slices.Contains(c.cfg.Topics, strings.TrimSuffix(name, bus.DeadLetterSuffix)) {
		http.Error(w, "unknown topic "+strconv.Quote(name), http.StatusNotFound)
		return
	}
	data := map[string]any{"Title": "Topic " + name, "Topic": name, "Type": typ, "Key": key, "Page": page,
		"Prev": page - 1, "Next": page + 1, "Window": c.cfg.Window, "PageSize": pageSize}
	rows, err := c.topicRows(ctx)
	if err != nil {
		data["Error"] = err.Error()
		c.render(w, r, "topic", s, data)
		return
	}
	var row *topicRow
	for _, tr := range rows {
		if tr.Topic == name {
			row = tr
		}
	}
	data["Row"] = row
	offs, err := c.offsetsOf(ctx, name)
	if err != nil {
		data["Error"] = err.Error()
		c.render(w, r, "topic", s, data)
		return
	}
	o := offs[name]
	var spans []span
	for p := range o.Stable {
		if key != "" && p != partitionOf(name, key, len(o.Stable)) {
			continue
		}
		spans = append(spans, o.tail(p, c.cfg.Window))
	}
	recs, err := c.readSpans(ctx, name, spans)
	if err != nil {
		data["Error"] = err.Error()
	}
	// Newest first, then filtered on headers before anything is decoded.
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Timestamp.After(recs[j].Timestamp) })
	var kept []*kgo.Record
	types := map[string]bool{}
	for _, rec := range recs {
		t := header(rec, "ce_type")
		types[t] = true
		if (typ == "" || t == typ) && (key == "" || string(rec.Key) == key) {
			kept = append(kept, rec)
		}
	}
	var views []*record
	for _, rec := range kept[min(len(kept), page*pageSize):min(len(kept), (page+1)*pageSize)] {
		views = append(views, c.view(rec))
	}
	var typeList []string
	for t := range types {
		if t != "" {
			typeList = append(typeList, t)
		}
	}
	slices.Sort(typeList)
	data["Types"] = typeList
	data["Records"] = views
	data["Matched"] = len(kept)
	data["Scanned"] = len(recs)
	data["HasNext"] = (page+1)*pageSize < len(kept)
	data["Took"] = time.Since(start)
	c.render(w, r, "topic", s, data)
}
