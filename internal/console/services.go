package console

import (
	"fmt"
	"html/template"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// sample is the process's metrics at one moment, summed over labels.
type sample struct {
	At                                        time.Time
	Published, Consumed, Failed, DeadLettered float64
	Lag, Outbox                               float64
	Buckets                                   []bucket // handler time, cumulative
	Up                                        map[string]float64
}

type bucket struct {
	Le    float64
	Count float64
}

// sampler keeps the last samples of the metrics, a bounded ring.
type sampler struct {
	g    prometheus.Gatherer
	keep int
	mu   sync.Mutex
	ring []sample
}

func newSampler(g prometheus.Gatherer, keep int) *sampler { return &sampler{g: g, keep: keep} }

// fresh samples now unless the newest sample is younger than age: a page
// view shows the rates up to its moment, at most one extra sample a second.
func (s *sampler) fresh(now time.Time, age time.Duration) {
	s.mu.Lock()
	stale := len(s.ring) == 0 || now.Sub(s.ring[len(s.ring)-1].At) >= age
	s.mu.Unlock()
	if stale {
		s.sample(now)
	}
}

func (s *sampler) sample(now time.Time) {
	if s.g == nil {
		return
	}
	mfs, err := s.g.Gather()
	if err != nil && len(mfs) == 0 {
		return
	}
	sm := sample{At: now, Up: map[string]float64{}}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "herald_events_published_total":
				sm.Published += m.GetCounter().GetValue()
			case "herald_events_consumed_total":
				sm.Consumed += m.GetCounter().GetValue()
			case "herald_events_failed_total":
				sm.Failed += m.GetCounter().GetValue()
			case "herald_events_dead_lettered_total":
				sm.DeadLettered += m.GetCounter().GetValue()
			case "herald_consumer_lag":
				sm.Lag += m.GetGauge().GetValue()
			case "herald_outbox_pending":
				sm.Outbox += max(0, m.GetGauge().GetValue())
			case "herald_dependency_up":
				sm.Up[label(m, "dependency")] = m.GetGauge().GetValue()
			case "herald_handler_duration_seconds":
				sm.Buckets = addBuckets(sm.Buckets, m.GetHistogram())
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ring = append(s.ring, sm)
	if len(s.ring) > s.keep {
		s.ring = slices.Delete(s.ring, 0, len(s.ring)-s.keep)
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func addBuckets(acc []bucket, h *dto.Histogram) []bucket {
	for i, b := range h.GetBucket() {
		if i >= len(acc) {
			acc = append(acc, bucket{Le: b.GetUpperBound()})
		}
		acc[i].Count += float64(b.GetCumulativeCount())
	}
	return acc
}

// quantile estimates the q-quantile of the observations between two
// cumulative bucket sets (Prometheus's histogram_quantile, linear within a
// bucket), NaN when none.
func quantile(q float64, prev, cur []bucket) float64 {
	if len(cur) == 0 {
		return math.NaN()
	}
	delta := make([]float64, len(cur))
	for i := range cur {
		delta[i] = cur[i].Count
		if i < len(prev) {
			delta[i] -= prev[i].Count
		}
	}
	total := delta[len(delta)-1]
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for i, b := range cur {
		if delta[i] >= rank {
			if math.IsInf(b.Le, 1) {
				return lower
			}
			in := delta[i] - below
			if in <= 0 {
				return b.Le
			}
			return lower + (b.Le-lower)*(rank-below)/in
		}
		lower, below = b.Le, delta[i]
	}
	return lower
}

// series is one chart: values over time.
type series struct {
	Name, Unit string
	Points     []float64
	Last       string
	Max        float64
}

// SVG draws the series as a small line chart, inline.
func (s series) SVG() template.HTML {
	const w, h = 240.0, 48.0
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %g %g" width="%g" height="%g" role="img" aria-label="%s over the last samples, last %s">`,
		w, h, w, h, template.HTMLEscapeString(s.Name), template.HTMLEscapeString(s.Last))
	if len(s.Points) > 1 {
		top := s.Max
		if top <= 0 {
			top = 1
		}
		var pts []string
		for i, v := range s.Points {
			if math.IsNaN(v) {
				v = 0
			}
			x := w * float64(i) / float64(len(s.Points)-1)
			y := h - 2 - (h-4)*v/top
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="%s"/>`, strings.Join(pts, " "))
	}
	b.WriteString(`</svg>`)
	// Built from numbers and escaped text only.
	return template.HTML(b.String())
}

// charts turns the samples into rates (per second between samples),
// levels and the p99 handler time.
func (s *sampler) charts() ([]series, map[string]float64, time.Duration) {
	s.mu.Lock()
	ring := slices.Clone(s.ring)
	s.mu.Unlock()
	out := []series{{Name: "published", Unit: "/s"}, {Name: "consumed", Unit: "/s"}, {Name: "failed", Unit: "/s"},
		{Name: "dead-lettered", Unit: "/s"}, {Name: "consumer lag", Unit: "records"}, {Name: "outbox backlog", Unit: "rows"},
		{Name: "p99 handler time", Unit: "ms"}}
	var up map[string]float64
	var span time.Duration
	for i := 1; i < len(ring); i++ {
		a, b := ring[i-1], ring[i]
		dt := b.At.Sub(a.At).Seconds()
		if dt <= 0 {
			continue
		}
		vals := []float64{(b.Published - a.Published) / dt, (b.Consumed - a.Consumed) / dt, (b.Failed - a.Failed) / dt,
			(b.DeadLettered - a.DeadLettered) / dt, b.Lag, b.Outbox, quantile(0.99, a.Buckets, b.Buckets) * 1000}
		for j, v := range vals {
			out[j].Points = append(out[j].Points, v)
			if !math.IsNaN(v) {
				out[j].Max = max(out[j].Max, v)
			}
		}
	}
	if n := len(ring); n > 0 {
		up = ring[n-1].Up
		span = ring[n-1].At.Sub(ring[0].At)
	}
	for i := range out {
		out[i].Last = "no data yet"
		if n := len(out[i].Points); n > 0 {
			v := out[i].Points[n-1]
			if math.IsNaN(v) {
				out[i].Last = "none handled"
			} else {
				out[i].Last = fmt.Sprintf("%.4g %s", v, out[i].Unit)
			}
		}
	}
	return out, up, span
}

func (c *Console) servicesData() map[string]any {
	c.samples.fresh(time.Now(), time.Second)
	charts, up, span := c.samples.charts()
	type dep struct {
		Name string
		Up   bool
	}
	var deps []dep
	for name, v := range up {
		deps = append(deps, dep{name, v == 1})
	}
	slices.SortFunc(deps, func(a, b dep) int { return strings.Compare(a.Name, b.Name) })
	return map[string]any{"Title": "Services", "Charts": charts, "Deps": deps, "Span": span, "Every": c.cfg.SampleEvery,
		"Keep": c.cfg.SampleKeep, "Consumers": c.cfg.Consumers}
}

func (c *Console) services(w http.ResponseWriter, r *http.Request, s *session) {
	c.render(w, r, "services", s, c.servicesData())
}

func (c *Console) charts(w http.ResponseWriter, r *http.Request, s *session) {
	data := c.servicesData()
	data["Fragment"] = "charts"
	c.render(w, r, "services", s, data)
}
