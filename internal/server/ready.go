package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-events/herald/platform/bus/natsbus"
	"github.com/herald-events/herald/platform/bus/rabbitbus"
	"github.com/herald-events/herald/platform/fault"
	"github.com/herald-events/herald/platform/observe"
	"github.com/herald-events/herald/platform/sqldb"
)

// dependency is one thing the process needs to reach. [Start] waits for
// each in turn; the running process probes all of them for readiness.
type dependency struct {
	// name is what operators read: "schema registry", "kafka",
	// "database orders".
	name string
	// addr is where it is, secrets removed.
	addr string
	// check answers nil when the dependency works now. A *ConfigError
	// means waiting will not help.
	check func(ctx context.Context) error
}

// Timings of the start-up wait.
const (
	// startAttemptTimeout bounds one attempt to reach a dependency at
	// start (a TLS handshake to a distant broker fits).
	startAttemptTimeout = 5 * time.Second
	// startBackoffMax caps the delay between attempts.
	startBackoffMax = 2 * time.Second
	// waitReportEvery spaces the "waiting for" lines of one dependency.
	waitReportEvery = 10 * time.Second
)

// await calls d.check until it answers, backing off up to
// [startBackoffMax] between attempts, for at most timeout. It logs once when
// the first attempt fails and then at most every [waitReportEvery]. A
// *ConfigError ends the wait at once.
func await(ctx context.Context, log *slog.Logger, d dependency, timeout time.Duration) error {
	begin := time.Now()
	deadline := begin.Add(timeout)
	delay := 100 * time.Millisecond
	var reported time.Time
	for {
		actx, cancel := context.WithTimeout(ctx, startAttemptTimeout)
		err := d.check(actx)
		cancel()
		if err == nil {
			if !reported.IsZero() {
				log.Info(d.name+" answered", "addr", d.addr, "waited", time.Since(begin).Round(time.Millisecond))
			}
			return nil
		}
		if ce := (*ConfigError)(nil); errors.As(err, &ce) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for %s at %s: %w", d.name, d.addr, ctx.Err())
		}
		now := time.Now()
		if !now.Before(deadline) {
			if timeout == 0 {
				return fmt.Errorf("%s at %s: %w (set %s to wait for it)", d.name, d.addr, err, Setting("startup-timeout"))
			}
			return fmt.Errorf("%s at %s did not answer within %s (%s): %w", d.name, d.addr, timeout, Setting("startup-timeout"), err)
		}
		if reported.IsZero() || now.Sub(reported) >= waitReportEvery {
			log.Warn("waiting for "+d.name+" at "+d.addr, "err", err, "waited", now.Sub(begin).Round(time.Second),
				"gives_up_in", deadline.Sub(now).Round(time.Second))
			reported = now
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s at %s: %w", d.name, d.addr, ctx.Err())
		case <-time.After(min(delay, deadline.Sub(now))):
		}
		delay = min(delay*2, startBackoffMax)
	}
}

// reach waits for d (see [await]) and adds it to the readiness probes.
func (p *Process) reach(ctx context.Context, d dependency) error {
	if err := await(ctx, p.log, d, p.cfg.StartupTimeout); err != nil {
		return err
	}
	p.addReadinessProbe(d)
	return nil
}

// addReadinessProbe adds a dependency that readiness (gRPC health,
// /healthz, herald_dependency_up) probes while the process runs. Call it
// before Start builds the readiness checker.
func (p *Process) addReadinessProbe(d dependency) { p.deps = append(p.deps, d) }

// reachDB opens the database of service, waiting for it, and probes it
// for readiness with a ping.
func (p *Process) reachDB(ctx context.Context, service string) error {
	addr := p.cfg.DatabaseURL
	if p.cfg.Embedded {
		addr = "sqlite:" + p.cfg.DataDir
	}
	open := dependency{name: service + " database", addr: sqldb.Redact(addr), check: func(ctx context.Context) error {
		db, err := p.openDB(ctx, service)
		if err != nil {
			return err
		}
		p.dbs[service] = db
		p.closers = append(p.closers, db.Close)
		return nil
	}}
	if err := await(ctx, p.log, open, p.cfg.StartupTimeout); err != nil {
		return err
	}
	db := p.dbs[service]
	p.addReadinessProbe(dependency{name: open.name, addr: open.addr, check: db.Ping})
	return nil
}

// busDependency is the probe of the process's bus: for Kafka, a metadata
// request on one long-lived client; NATS and RabbitMQ offer only a ping
// that connects anew each time.
func (p *Process) busDependency() (dependency, error) {
	switch t := p.bus.(type) {
	case *kafkaTransport:
		extra, err := p.cfg.Kafka.ClientOptions()
		if err != nil {
			return dependency{}, &ConfigError{err}
		}
		d, cl, err := kafkaDependency(p.brokers, extra)
		if err != nil {
			return dependency{}, err
		}
		p.closers = append(p.closers, func() error { cl.Close(); return nil })
		return d, nil
	case *natsTransport:
		return dependency{name: "nats", addr: sqldb.Redact(p.cfg.NATSURL), check: func(ctx context.Context) error {
			return fault.Transient("nats", natsbus.Ping(ctx, t.opts...))
		}}, nil
	case *rabbitTransport:
		return dependency{name: "rabbitmq", addr: sqldb.Redact(p.cfg.RabbitMQURL), check: func(ctx context.Context) error {
			return fault.Transient("rabbitmq", rabbitbus.Ping(ctx, t.opts...))
		}}, nil
	}
	return dependency{}, fmt.Errorf("no readiness probe for %s", p.bus)
}

// registryDependency probes a Confluent-API schema registry with GET
// /config, the cheapest call every such registry answers.
func registryDependency(cfg RegistryConfig) dependency {
	client := &http.Client{}
	u := strings.TrimSuffix(cfg.URL, "/") + "/config"
	return dependency{name: "schema registry", addr: cfg.URL, check: func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return &ConfigError{fmt.Errorf("%s: %w", Setting("schema-registry-url"), err)}
		}
		if cfg.User != "" {
			req.SetBasicAuth(cfg.User, cfg.Password)
		}
		req.Header.Set("Accept", "application/vnd.schemaregistry.v1+json, application/json")
		resp, err := client.Do(req)
		if err != nil {
			return fault.Transient("schema registry", err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if err != nil {
			return fault.Transient("schema registry", fmt.Errorf("GET %s: %w", u, err))
		}
		switch {
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			return &ConfigError{fmt.Errorf("schema registry at %s refused the credentials (%s, %s): %s",
				cfg.URL, Setting("schema-registry-user"), Setting("schema-registry-password"), resp.Status)}
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
			// Starting, overloaded or its storage is down: wait.
			return fault.Transientf("schema registry", "GET %s: %s", u, resp.Status)
		}
		var cfgResp map[string]any
		ctype, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &cfgResp) != nil ||
			(cfgResp["compatibilityLevel"] == nil && cfgResp["compatibility"] == nil) {
			return &ConfigError{fmt.Errorf("%s: %s does not answer like a Confluent-API schema registry "+
				"(GET /config: %s, %s); for Apicurio the URL ends in /apis/ccompat/v7",
				Setting("schema-registry-url"), cfg.URL, resp.Status, ctype)}
		}
		return nil
	}}
}

// kafkaDependency probes the brokers with a metadata request on one
// long-lived client; close it with the process.
func kafkaDependency(brokers []string, extra []kgo.Opt) (dependency, *kgo.Client, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, extra...)...)
	if err != nil {
		return dependency{}, nil, &ConfigError{fmt.Errorf("%s: %w", Setting("kafka-brokers"), err)}
	}
	return dependency{name: "kafka", addr: strings.Join(brokers, ","), check: func(ctx context.Context) error {
		if err := cl.Ping(ctx); err != nil {
			if errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.UnsupportedSaslMechanism) {
				return &ConfigError{fmt.Errorf("kafka at %s refused the SASL settings (%s, %s, %s): %w", strings.Join(brokers, ","),
					Setting("kafka-sasl-mechanism"), Setting("kafka-sasl-user"), Setting("kafka-sasl-password"), err)}
			}
			return fault.Transient("kafka", err)
		}
		return nil
	}}, cl, nil
}

// readiness probes the process's dependencies every interval and keeps
// gRPC health, /healthz and herald_dependency_up in step with them.
type readiness struct {
	log      *slog.Logger
	deps     []dependency
	interval time.Duration
	timeout  time.Duration
	// setServing reports the process's readiness to gRPC health.
	setServing func(bool)

	mu      sync.Mutex
	down    map[string]outage // by dependency name
	serving bool              // the services run and gRPC serves
}

// outage is a dependency that did not answer its last probe.
type outage struct {
	since time.Time
	err   error
}

func newReadiness(log *slog.Logger, m *observe.Metrics, deps []dependency, interval time.Duration, setServing func(bool)) *readiness {
	r := &readiness{log: log, deps: deps, interval: interval, timeout: max(interval, 2*time.Second),
		setServing: setServing, down: map[string]outage{}}
	for _, d := range deps {
		m.GaugeFunc("herald_dependency_up", "1 while a dependency of the process answers its readiness probe, 0 while it does not.",
			prometheus.Labels{"dependency": d.name}, func() float64 {
				r.mu.Lock()
				defer r.mu.Unlock()
				if _, isDown := r.down[d.name]; isDown {
					return 0
				}
				return 1
			})
	}
	return r
}

// markServing records whether the services run and gRPC serves.
func (r *readiness) markServing(on bool) {
	r.mu.Lock()
	r.serving = on
	r.mu.Unlock()
}

// run probes until ctx ends, then marks the process as not serving.
func (r *readiness) run(ctx context.Context) {
	defer r.markServing(false)
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.probe(ctx)
	}
}

// probe checks every dependency at once and records what changed.
func (r *readiness) probe(ctx context.Context) {
	errs := make([]error, len(r.deps))
	var wg sync.WaitGroup
	for i, d := range r.deps {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, r.timeout)
			defer cancel()
			errs[i] = d.check(pctx)
			if errs[i] != nil && pctx.Err() != nil && ctx.Err() == nil {
				errs[i] = fmt.Errorf("no answer within %s: %w", r.timeout, errs[i])
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // stopping: a cancelled probe says nothing
	}
	r.mu.Lock()
	wasReady := len(r.down) == 0
	now := time.Now()
	for i, d := range r.deps {
		o, wasDown := r.down[d.name]
		switch {
		case errs[i] != nil && !wasDown:
			r.down[d.name] = outage{since: now, err: errs[i]}
			r.log.Warn("dependency down: "+d.name, "dependency", d.name, "addr", d.addr, "err", errs[i])
		case errs[i] != nil:
			o.err = errs[i]
			r.down[d.name] = o
		case wasDown:
			delete(r.down, d.name)
			r.log.Info("dependency up: "+d.name, "dependency", d.name, "addr", d.addr, "outage", now.Sub(o.since).Round(time.Millisecond))
		}
	}
	ready := len(r.down) == 0
	serving := r.serving
	r.mu.Unlock()
	if ready != wasReady && serving {
		r.setServing(ready)
	}
}

// healthzFailure is one failing dependency in /healthz's body.
type healthzFailure struct {
	Dependency string    `json:"dependency"`
	Addr       string    `json:"addr"`
	Error      string    `json:"error"`
	Since      time.Time `json:"since"`
}

// healthz answers readiness: 200 "ok" when every dependency answers and
// the services run, otherwise 503 with a JSON body naming what fails.
func (r *readiness) healthz(w http.ResponseWriter, _ *http.Request) {
	r.mu.Lock()
	serving := r.serving
	var failing []healthzFailure
	for _, d := range r.deps {
		if o, isDown := r.down[d.name]; isDown {
			failing = append(failing, healthzFailure{Dependency: d.name, Addr: d.addr, Error: o.err.Error(), Since: o.since.UTC()})
		}
	}
	r.mu.Unlock()
	if serving && len(failing) == 0 {
		_, _ = w.Write([]byte("ok\n"))
		return
	}
	status := "unavailable"
	if !serving {
		status = "not serving"
	}
	slices.SortFunc(failing, func(a, b healthzFailure) int { return strings.Compare(a.Dependency, b.Dependency) })
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = json.NewEncoder(w).Encode(struct {
		Status  string           `json:"status"`
		Failing []healthzFailure `json:"failing,omitempty"`
	}{status, failing})
}
