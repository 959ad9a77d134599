package console

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/dlq"
)

// pageSize is how many records a page lists per topic.
const pageSize = 50

// dlqTopic is one dead-letter topic on the page.
type dlqTopic struct {
	Topic   string
	Count   int64
	Classes map[string]int
	Records []*record
	Error   string
}

// deadLetters lists each dead-letter topic: the number of records it holds
// and its newest dead letters (pageSize per page, over its partitions),
// decoded, optionally of one class.
func (c *Console) deadLetters(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	class := r.URL.Query().Get("class")
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	page = max(page, 0)
	var topics []string
	for _, t := range c.cfg.Topics {
		topics = append(topics, bus.DeadLetterTopic(t))
	}
	start := time.Now()
	data := map[string]any{"Title": "Dead letters", "Class": class, "Page": page, "Next": page + 1, "Prev": page - 1}
	offs, err := c.offsetsOf(ctx, topics...)
	if err != nil {
		data["Error"] = err.Error()
		c.render(w, r, "dlq", s, data)
		return
	}
	out := make([]*dlqTopic, len(topics))
	var wg sync.WaitGroup
	for i, t := range topics {
		dt := &dlqTopic{Topic: t, Classes: map[string]int{}}
		out[i] = dt
		o := offs[t]
		var spans []span
		for p := range o.Stable {
			dt.Count += o.Stable[p] - o.Start[p]
			to := max(o.Start[p], o.Stable[p]-int64(page*pageSize))
			spans = append(spans, span{Partition: p, From: max(o.Start[p], to-pageSize), To: to})
		}
		wg.Go(func() {
			recs, err := c.readSpans(ctx, t, spans)
			if err != nil {
				dt.Error = err.Error()
			}
			slices.SortFunc(recs, func(a, b *kgo.Record) int { return b.Timestamp.Compare(a.Timestamp) })
			for _, rec := range recs {
				v := c.view(rec)
				dt.Classes[v.Class]++
				if class != "" && v.Class != class {
					continue
				}
				if len(dt.Records) < pageSize {
					dt.Records = append(dt.Records, v)
				}
			}
		})
	}
	wg.Wait()
	data["Topics"] = out
	data["Took"] = time.Since(start)
	c.render(w, r, "dlq", s, data)
}

// replay replays the dead letters chosen on the page: the first POST shows
// them for confirmation, the second (confirm=yes) sends them back to their
// topics with [dlq.Replay], the code `herald dlq replay` runs.
func (c *Console) replay(w http.ResponseWriter, r *http.Request, s *session) {
	if !sameOrigin(r) || r.PostFormValue("csrf") != s.CSRF {
		http.Error(w, "refused: the form's token does not match (cross-site request?)", http.StatusForbidden)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	topic := r.PostFormValue("topic")
	if !slices.Contains(c.cfg.Topics, strings.TrimSuffix(topic, bus.DeadLetterSuffix)) || !bus.IsDeadLetterTopic(topic) {
		http.Error(w, "unknown dead-letter topic "+strconv.Quote(topic), http.StatusBadRequest)
		return
	}
	refs := r.PostForm["ref"]
	data := map[string]any{"Title": "Replay dead letters", "Topic": topic, "Refs": refs}
	if len(refs) == 0 {
		data["Error"] = "no dead letter chosen"
		c.render(w, r, "replay", s, data)
		return
	}
	if len(refs) > 500 {
		http.Error(w, "at most 500 dead letters at once", http.StatusRequestEntityTooLarge)
		return
	}
	var recs []*kgo.Record
	for _, ref := range refs {
		p, o, ok := parseRef(ref)
		if !ok {
			http.Error(w, "bad dead letter reference "+strconv.Quote(ref), http.StatusBadRequest)
			return
		}
		got, err := c.readSpans(ctx, topic, []span{{Partition: p, From: o, To: o + 1}})
		if err != nil {
			data["Error"] = err.Error()
			c.render(w, r, "replay", s, data)
			return
		}
		recs = append(recs, got...)
	}
	var views []*record
	var msgs []*bus.Message
	for _, rec := range recs {
		views = append(views, c.view(rec))
		msgs = append(msgs, dlq.Message(rec))
	}
	data["Records"] = views
	if r.PostFormValue("confirm") != "yes" {
		c.render(w, r, "replay", s, data)
		return
	}
	if c.cfg.Replay == nil {
		data["Error"] = "this process has no publisher to replay with"
		c.render(w, r, "replay", s, data)
		return
	}
	n, err := dlq.Replay(ctx, c.cfg.Replay, msgs, dlq.Filter{})
	c.log.Info("console: dead letters replayed", "topic", topic, "replayed", n, "chosen", len(refs), "by", s.Principal.Subject, "err", err)
	data["Done"] = true
	data["Replayed"] = n
	if err != nil {
		data["Error"] = err.Error()
	}
	c.render(w, r, "replay", s, data)
}

// parseRef reads "partition@offset".
func parseRef(s string) (int32, int64, bool) {
	ps, os, ok := strings.Cut(s, "@")
	if !ok {
		return 0, 0, false
	}
	p, err1 := strconv.ParseInt(ps, 10, 32)
	o, err2 := strconv.ParseInt(os, 10, 64)
	return int32(p), o, err1 == nil && err2 == nil && p >= 0 && o >= 0
}
