// Package observe holds herald's Prometheus metrics and serves them.
//
// One [Metrics] value per process is shared by the gRPC interceptor, every
// outbox relay and every consumer router; [Metrics.Handler] serves the
// exposition at /metrics. A nil *Metrics is valid and records nothing, so
// components can be used without metrics in tests.
package observe

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Consumer results counted in herald_events_consumed_total.
const (
	ResultOK           = "ok"
	ResultDuplicate    = "duplicate"
	ResultDeadLettered = "dead_lettered"
	ResultError        = "error"
)

// Metrics are the process's metrics.
type Metrics struct {
	reg          *prometheus.Registry
	grpcRequests *prometheus.CounterVec
	grpcDuration *prometheus.HistogramVec
	grpcShed     *prometheus.CounterVec
	published    *prometheus.CounterVec
	consumed     *prometheus.CounterVec
	failed       *prometheus.CounterVec
	retried      *prometheus.CounterVec
	handlerTime  *prometheus.HistogramVec
	latency      *prometheus.HistogramVec
	lag          *prometheus.GaugeVec
	deadLettered *prometheus.CounterVec
	circuitOpen  *prometheus.GaugeVec
	circuitMoves *prometheus.CounterVec
	relayPublish *prometheus.HistogramVec
	relayDelay   *prometheus.HistogramVec
	inboxPurged  *prometheus.CounterVec
}

// New registers herald's metrics and the Go runtime and process collectors
// in a fresh registry.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		grpcRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_grpc_requests_total", Help: "gRPC requests handled, by method and status code.",
		}, []string{"method", "code"}),
		grpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "herald_grpc_request_duration_seconds", Help: "gRPC request handling time.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"method"}),
		grpcShed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_grpc_shed_total", Help: "gRPC calls refused at once with RESOURCE_EXHAUSTED because too many were in flight, by method.",
		}, []string{"method"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_events_published_total", Help: "Events published by outbox relays, by service and event type.",
		}, []string{"service", "type"}),
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_events_consumed_total", Help: "Messages handled by consumers, by group, event type and result (ok, duplicate, dead_lettered, error).",
		}, []string{"group", "type", "result"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_events_failed_total", Help: "Failed handler attempts, by group, event type and error class (transient, permanent or unclassified).",
		}, []string{"group", "type", "class"}),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_events_retried_total", Help: "Handler attempts repeated after a transient failure, by group and event type.",
		}, []string{"group", "type"}),
		handlerTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "herald_handler_duration_seconds", Help: "Time to handle one message, retries and dead-lettering included.",
			// Up to 2 minutes: a message retried until MaxRetryTime (30s by
			// default) or waiting out a dependency's outage still lands in
			// a bucket that tells its time.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"group", "type"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "herald_event_latency_seconds", Help: "End-to-end latency: handling time minus the event's ce_time.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"group", "type"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_consumer_lag", Help: "Committed-readable messages not yet handled, per group and partition, as of the last poll.",
		}, []string{"group", "topic", "partition"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_events_dead_lettered_total", Help: "Messages moved to a dead-letter topic, by group, event type and class (permanent, retries_exhausted, contract, routing).",
		}, []string{"group", "type", "class"}),
		circuitOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_consumer_circuit_open", Help: "1 while a consumer group waits for an unavailable dependency (its circuit is open), else 0.",
		}, []string{"group"}),
		circuitMoves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_consumer_circuit_transitions_total", Help: "Changes of a consumer group's circuit, by group and new state (open, closed).",
		}, []string{"group", "state"}),
		relayPublish: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "herald_outbox_publish_duration_seconds", Help: "Time an outbox relay takes to publish one batch (on Kafka, one transaction).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"service"}),
		relayDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "herald_outbox_delay_seconds", Help: "Time from an event's ce_time (its business transaction) until its relay has published it.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"service"}),
		inboxPurged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_inbox_purged_total", Help: "Inbox claims deleted once older than the inbox retention, by service.",
		}, []string{"service"}),
	}
	m.reg.MustRegister(m.grpcRequests, m.grpcDuration, m.grpcShed, m.published, m.consumed, m.failed, m.retried, m.handlerTime, m.latency, m.lag,
		m.deadLettered, m.circuitOpen, m.circuitMoves, m.relayPublish, m.relayDelay, m.inboxPurged,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// CounterVec registers a counter vector in reg, or returns the one already
// registered there under the same name, so that several clients of one
// process (a bus backend's publishers and subscribers, say) share it.
func CounterVec(reg prometheus.Registerer, opts prometheus.CounterOpts, labels ...string) (*prometheus.CounterVec, error) {
	vec := prometheus.NewCounterVec(opts, labels)
	if err := reg.Register(vec); err != nil {
		var dup prometheus.AlreadyRegisteredError
		if errors.As(err, &dup) {
			if existing, ok := dup.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("register %s: %w", opts.Name, err)
	}
	return vec, nil
}

// Registerer is the registry behind [Metrics.Handler], for collectors a
// component owns (a bus backend's connection counters, say).
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }

// Gatherer is the registry behind [Metrics.Handler], for a reader of the
// metrics in process (the console's charts).
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// GRPC records one handled gRPC request.
func (m *Metrics) GRPC(method, code string, d time.Duration) {
	if m == nil {
		return
	}
	m.grpcRequests.WithLabelValues(method, code).Inc()
	m.grpcDuration.WithLabelValues(method).Observe(d.Seconds())
}

// Shed records a gRPC call refused by load shedding.
func (m *Metrics) Shed(method string) {
	if m == nil {
		return
	}
	m.grpcShed.WithLabelValues(method).Inc()
}

// Published records n events of one type published by service.
func (m *Metrics) Published(service, eventType string, n int) {
	if m == nil {
		return
	}
	m.published.WithLabelValues(service, eventType).Add(float64(n))
}

// Relayed records a batch that service's outbox relay published in took,
// ending at done, and for each of its events the time from the event's
// ce_time until done.
func (m *Metrics) Relayed(service string, took time.Duration, done time.Time, eventTimes []time.Time) {
	if m == nil {
		return
	}
	m.relayPublish.WithLabelValues(service).Observe(took.Seconds())
	delay := m.relayDelay.WithLabelValues(service)
	for _, t := range eventTimes {
		if !t.IsZero() {
			delay.Observe(done.Sub(t).Seconds())
		}
	}
}

// InboxPurged records n inbox claims of service deleted by the retention.
func (m *Metrics) InboxPurged(service string, n int64) {
	if m == nil {
		return
	}
	m.inboxPurged.WithLabelValues(service).Add(float64(n))
}

// ConsumerInit publishes group's failure, retry and dead-letter counters
// at 0 for every event type it handles and every class it may count, so
// that dashboards and alerts see a series (and its first increase) before
// the first failure.
func (m *Metrics) ConsumerInit(group string, types, failureClasses, deadLetterClasses []string) {
	if m == nil {
		return
	}
	for _, t := range types {
		m.retried.WithLabelValues(group, t).Add(0)
		for _, c := range failureClasses {
			m.failed.WithLabelValues(group, t, c).Add(0)
		}
		for _, c := range deadLetterClasses {
			m.deadLettered.WithLabelValues(group, t, c).Add(0)
		}
	}
}

// Consumed records one message handled by group with a result.
func (m *Metrics) Consumed(group, eventType, result string) {
	if m == nil {
		return
	}
	m.consumed.WithLabelValues(group, eventType, result).Inc()
}

// Failed records one failed handler attempt.
func (m *Metrics) Failed(group, eventType, class string) {
	if m == nil {
		return
	}
	m.failed.WithLabelValues(group, eventType, class).Inc()
}

// DeadLettered records one message moved to a dead-letter topic with its
// error class.
func (m *Metrics) DeadLettered(group, eventType, class string) {
	if m == nil {
		return
	}
	m.deadLettered.WithLabelValues(group, eventType, class).Inc()
}

// CircuitInit publishes group's circuit as closed, with no transitions, so
// the series exist before the first outage.
func (m *Metrics) CircuitInit(group string) {
	if m == nil {
		return
	}
	m.circuitOpen.WithLabelValues(group).Set(0)
	m.circuitMoves.WithLabelValues(group, "open").Add(0)
	m.circuitMoves.WithLabelValues(group, "closed").Add(0)
}

// CircuitChanged records that group's circuit opened (open) or closed.
func (m *Metrics) CircuitChanged(group string, open bool) {
	if m == nil {
		return
	}
	state, v := "closed", 0.0
	if open {
		state, v = "open", 1
	}
	m.circuitOpen.WithLabelValues(group).Set(v)
	m.circuitMoves.WithLabelValues(group, state).Inc()
}

// Retried records one repeated attempt.
func (m *Metrics) Retried(group, eventType string) {
	if m == nil {
		return
	}
	m.retried.WithLabelValues(group, eventType).Inc()
}

// Handled records how long handling one message took and, when the event
// time is known, its end-to-end latency.
func (m *Metrics) Handled(group, eventType string, took time.Duration, eventTime time.Time) {
	if m == nil {
		return
	}
	m.handlerTime.WithLabelValues(group, eventType).Observe(took.Seconds())
	if !eventTime.IsZero() {
		m.latency.WithLabelValues(group, eventType).Observe(time.Since(eventTime).Seconds())
	}
}

// Lag records a partition's consumer lag.
func (m *Metrics) Lag(group, topic string, partition int32, lag int64) {
	if m == nil {
		return
	}
	m.lag.WithLabelValues(group, topic, strconv.Itoa(int(partition))).Set(float64(max(lag, 0)))
}

// CounterFunc registers a counter whose value is read at scrape time, such
// as a count kept by another package. A nil *Metrics ignores it.
func (m *Metrics) CounterFunc(name, help string, labels prometheus.Labels, fn func() float64) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, fn))
}

// GaugeFunc registers a gauge whose value is read at scrape time, such as
// an outbox backlog. A nil *Metrics ignores it.
func (m *Metrics) GaugeFunc(name, help string, labels prometheus.Labels, fn func() float64) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, fn))
}
