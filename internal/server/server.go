package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/herald-events/herald/internal/console"
	"github.com/herald-events/herald/platform/auth"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/kafkabus"
	"github.com/herald-events/herald/platform/bus/natsbus"
	"github.com/herald-events/herald/platform/bus/rabbitbus"
	"github.com/herald-events/herald/platform/contract"
	"github.com/herald-events/herald/platform/devstack"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/fault"
	"github.com/herald-events/herald/platform/grpcx"
	"github.com/herald-events/herald/platform/module"
	"github.com/herald-events/herald/platform/names"
	"github.com/herald-events/herald/platform/observe"
	"github.com/herald-events/herald/platform/outbox"
	"github.com/herald-events/herald/platform/schema"
	"github.com/herald-events/herald/platform/sqldb"
)

// pendingOf reads an outbox backlog for a gauge, with a short timeout.
func pendingOf(ob *outbox.Outbox) func() float64 {
	return func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := ob.Pending(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	}
}

// oldestOf reads an outbox's oldest pending age for a gauge.
func oldestOf(ob *outbox.Outbox) func() float64 {
	return func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		age, err := ob.OldestPendingAge(ctx)
		if err != nil {
			return -1
		}
		return age.Seconds()
	}
}

// serveHTTP serves /metrics, /healthz (readiness) and /livez (liveness)
// until the process stops.
func (p *Process) serveHTTP(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("http: listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", p.metrics.Handler())
	if p.cfg.Console {
		mux.HandleFunc(console.Prefix, p.consoleHandler)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, req *http.Request) {
		if r := p.ready.Load(); r != nil {
			r.healthz(w, req)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"starting"}` + "\n"))
	})
	// Liveness: the process runs and serves HTTP. No dependency is
	// checked, so an outage never gets the process restarted.
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	// Go's profiler, only when asked (--pprof): it shows every goroutine's
	// stack and the heap, and one CPU profile at a time locks others out.
	// For `go tool pprof http://<http-addr>/debug/pprof/profile`
	// (docs/performance.md).
	if p.cfg.PProf {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("http server", "err", err)
		}
	}()
	p.httpAddr = ln.Addr().String()
	p.closers = append(p.closers, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(ctx)
	})
	p.log.Info("admin listening", "url", "http://"+p.httpAddr+"/metrics", "pprof", p.cfg.PProf)
	return nil
}

// HTTPAddr is where /metrics is served, or "" when off.
func (p *Process) HTTPAddr() string { return p.httpAddr }

// Process is a started herald process.
type Process struct {
	cfg      Config
	log      *slog.Logger
	stack    *devstack.Stack
	brokers  []string
	regURL   string
	grpc     *grpc.Server
	health   *health.Server
	grpcLn   net.Listener
	services []*module.Instance
	kopts    []kafkabus.Option // nil unless the bus is Kafka
	bus      transport
	codec    *schema.Codec
	dbs      map[string]*sqldb.DB      // by service, for those with a database
	deps     []dependency              // probed for readiness
	ready    atomic.Pointer[readiness] // nil while Start waits
	metrics  *observe.Metrics
	httpAddr string
	jwt      *auth.Verifier                  // nil unless --grpc-jwks
	console  atomic.Pointer[console.Console] // nil until built, or when off
	closers  []func() error

	runCtx  context.Context
	stop    context.CancelFunc
	done    chan struct{}
	runErr  error
	closeMu sync.Once
}

// Start validates cfg, starts the infrastructure (when embedded) and the
// services, and serves gRPC. Stop it with [Process.Close]; [Process.Done]
// is closed when it ends on its own (a fatal error).
//
// Start reaches the dependencies in this order, waiting for each up to
// cfg.StartupTimeout: the schema registry (before anything is created on
// the bus, so a failed start leaves nothing behind), the bus, the
// databases; then it looks up (or, embedded, registers) the event schemas
// and only then creates the topics, so a start that stops on a missing
// subject leaves no topics behind either. A setting that cannot work is a
// *[ConfigError]: no waiting.
func Start(ctx context.Context, cfg Config) (_ *Process, err error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, &ConfigError{err}
	}
	p := &Process{cfg: cfg, log: cfg.Logger, done: make(chan struct{}), dbs: map[string]*sqldb.DB{}}
	defer func() {
		if err != nil {
			p.closeAll()
		}
	}()

	regCfg := cfg.Registry
	if cfg.Embedded {
		auth := cfg.EmbeddedRegistryAuth
		p.stack, err = devstack.Start(devstack.Config{
			DataDir: cfg.DataDir, KafkaAddr: cfg.KafkaAddr, RegistryAddr: cfg.RegistryAddr, Logger: cfg.Logger,
			RegistryUser: auth.User, RegistryPassword: auth.Password,
			RegistryReadOnlyUser: auth.ReadOnlyUser, RegistryReadOnlyPassword: auth.ReadOnlyPassword,
		})
		if err != nil {
			return nil, err
		}
		p.closers = append(p.closers, p.stack.Close)
		p.brokers = []string{p.stack.KafkaAddr()}
		regCfg = RegistryConfig{URL: p.stack.RegistryURL(), User: auth.User, Password: auth.Password}
		p.log.Info("embedded kafka listening", "addr", p.stack.KafkaAddr(), "data_dir", filepath.Join(cfg.DataDir, "kafka"))
		p.log.Info("embedded schema registry listening", "url", regCfg.URL)
	} else {
		p.brokers = cfg.Kafka.Brokers
	}
	p.regURL = regCfg.URL

	p.metrics = observe.New()
	// HTTP first: /livez answers (and /healthz says "starting") while
	// Start waits for the dependencies, so an orchestrator's liveness probe
	// does not restart a process that waits as it should.
	if cfg.HTTPAddr != "" {
		if err := p.serveHTTP(cfg.HTTPAddr); err != nil {
			return nil, err
		}
	}
	if err := p.reach(ctx, registryDependency(regCfg)); err != nil {
		return nil, err
	}
	if p.bus, err = p.newTransport(); err != nil {
		return nil, err
	}
	busDep, err := p.busDependency()
	if err != nil {
		return nil, err
	}
	if err := p.reach(ctx, busDep); err != nil {
		return nil, err
	}
	for _, m := range cfg.selected() {
		if !m.Database {
			continue
		}
		if err := p.reachDB(ctx, m.Name); err != nil {
			return nil, err
		}
	}

	events, err := moduleEvents(cfg.modules())
	if err != nil {
		return nil, err
	}
	// The schemas before the topics: a start that stops on a missing
	// subject leaves nothing behind on the bus.
	client, err := schema.NewClient(regCfg.URL, regCfg.User, regCfg.Password)
	if err != nil {
		return nil, err
	}
	codec, err := schema.NewCodec(client, schema.WithStrategy(cfg.SubjectStrategy), schema.AutoRegister(cfg.AutoRegister),
		schema.WithLogger(p.log))
	if err != nil {
		return nil, err
	}
	if err := p.prepareSchemas(codec, events); err != nil {
		return nil, err
	}
	p.codec = codec
	// Readiness also covers the ids: while a cached schema id names
	// another schema in the registry, the process refuses to publish and
	// says so (schema.Codec.RunVerifier keeps Err current).
	p.addReadinessProbe(dependency{name: "schema ids", addr: p.regURL,
		check: func(context.Context) error { return codec.Err() }})

	var topics []string
	for _, md := range events {
		r, _ := event.RouteOf(md)
		if t := event.Namespaced(cfg.Namespace, r.Topic); !slices.Contains(topics, t) {
			topics = append(topics, t, bus.DeadLetterTopic(t))
		}
	}
	if err := p.bus.prepare(ctx, topics); err != nil {
		return nil, err
	}
	p.log.Info("topics ready", "bus", p.bus.String(), "topics", topics)

	dlq, err := p.bus.publisher()
	if err != nil {
		return nil, err
	}
	p.closers = append(p.closers, dlq.Close)

	var gopts []grpc.ServerOption
	if cfg.GRPCTLSCert != "" {
		tlsCfg, err := auth.ServerTLS(cfg.GRPCTLSCert, cfg.GRPCTLSKey, cfg.Auth.ClientCA)
		if err != nil {
			return nil, &ConfigError{fmt.Errorf("%s, %s: %w", Setting("grpc-tls-cert"), Setting("grpc-client-ca"), err)}
		}
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	// Load bounds: calls past GRPCMaxInFlight are shed at once, before
	// their credentials are checked.
	gopts = append(gopts, grpc.MaxConcurrentStreams(uint32(cfg.GRPCMaxStreams)))
	gopts = append(gopts, grpcx.NewLimiter(cfg.GRPCMaxInFlight, p.metrics).ServerOptions()...)
	authOpts, err := p.authInterceptors(ctx)
	if err != nil {
		return nil, err
	}
	// The data contracts: requests (once authenticated), produced and
	// consumed events are checked against their schemas' rules (see
	// package contract).
	rules, err := contract.New()
	if err != nil {
		return nil, err
	}
	authOpts = append(authOpts, grpc.ChainUnaryInterceptor(contract.UnaryServerInterceptor(rules)))
	// One gRPC server serves every service of the process: an RPC's span
	// takes the service.name of the module that registered its service.
	var rpcOwners sync.Map // gRPC service name -> module name
	rpcTracing := cfg.Tracing.Routed(func(span string) string {
		svc, _, _ := strings.Cut(strings.TrimPrefix(span, "/"), "/")
		if m, ok := rpcOwners.Load(svc); ok {
			return m.(string)
		}
		return ""
	})
	p.grpc, p.health = grpcx.NewServer(p.log, p.metrics, rpcTracing, append(gopts, authOpts...)...)
	if cfg.GRPCReflection {
		grpcx.RegisterReflection(p.grpc)
	}
	platform := p.platform(codec, dlq)
	platform.Contract = rules
	platform.RequireCloudEvents = func(service string) bool {
		return slices.Contains(cfg.RequireCloudEvents, "all") || slices.Contains(cfg.RequireCloudEvents, service)
	}
	for _, m := range cfg.selected() {
		svc, err := m.Start(ctx, platform)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", m.Name, err)
		}
		for _, g := range svc.GRPC() {
			p.grpc.RegisterService(g.Desc, g.Impl)
			rpcOwners.Store(g.Desc.ServiceName, m.Name)
		}
		p.services = append(p.services, svc)
		name := m.Name
		if db := svc.DB(); db != nil {
			p.metrics.CounterFunc("herald_db_units_total", "Units of work (an event's, a request's) run in shared database transactions.",
				prometheus.Labels{"service": name}, func() float64 { return float64(db.GroupStats().Calls) })
			p.metrics.CounterFunc("herald_db_transactions_total", "Shared database transactions committed or rolled back; units ÷ transactions is the mean group size.",
				prometheus.Labels{"service": name}, func() float64 { return float64(db.GroupStats().Transactions) })
			p.metrics.CounterFunc("herald_db_statements_total", "SQL statements sent to the database (BEGIN, COMMIT and savepoints included): on PostgreSQL each is a round trip.",
				prometheus.Labels{"service": name}, func() float64 { return float64(db.Statements()) })
			p.metrics.CounterFunc("herald_db_transactions_rerun_total", "Shared database transactions run again, a savepoint per unit, because a unit failed the first.",
				prometheus.Labels{"service": name}, func() float64 { return float64(db.GroupStats().Rerun) })
		}
		if ob := svc.Outbox(); ob != nil { // services that publish nothing have no outbox
			p.metrics.GaugeFunc("herald_outbox_pending", "Outbox rows not yet published.",
				prometheus.Labels{"service": name}, pendingOf(ob))
			p.metrics.GaugeFunc("herald_outbox_oldest_pending_seconds", "Age of the oldest outbox row not yet published (0: none).",
				prometheus.Labels{"service": name}, oldestOf(ob))
		}
	}
	if cfg.Console {
		if err := p.startConsole(client, codec, dlq, topics); err != nil {
			return nil, fmt.Errorf("console: %w", err)
		}
	}
	p.ready.Store(newReadiness(p.log, p.metrics, p.deps, cfg.HealthInterval, p.setServing))
	if p.grpcLn, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("grpc: listen %s: %w", cfg.GRPCAddr, err)
	}
	p.run()
	p.log.Info("grpc listening", "addr", p.grpcLn.Addr().String(), "services", cfg.Services, "tls", cfg.GRPCTLSCert != "",
		"max_in_flight", cfg.GRPCMaxInFlight, "max_streams", cfg.GRPCMaxStreams,
		"mtls", cfg.Auth.ClientCA != "", "jwt", cfg.Auth.JWKS != "", "reflection", cfg.GRPCReflection)
	return p, nil
}

// authInterceptors are the gRPC server options that authenticate callers
// and enforce [AccessPolicy], after grpcx's error-mapping interceptor; none
// when authentication is off.
func (p *Process) authInterceptors(ctx context.Context) ([]grpc.ServerOption, error) {
	a := p.cfg.Auth
	if !a.On() {
		if a.InsecureNoAuth {
			p.log.Warn("gRPC authentication is OFF (--insecure-no-auth): every caller may call every method, SetStock included")
		}
		return nil, nil
	}
	authn := &auth.Authenticator{MTLS: a.ClientCA != ""}
	if a.JWKS != "" {
		v, err := auth.NewVerifier(ctx, auth.JWTConfig{JWKS: a.JWKS, Issuer: a.JWTIssuer, Audience: a.JWTAudience,
			RolesClaim: a.JWTRolesClaim, SubjectClaim: a.JWTSubjectClaim})
		if err != nil {
			return nil, &ConfigError{fmt.Errorf("%s: %w", Setting("grpc-jwks"), err)}
		}
		authn.JWT = v
		p.jwt = v
	}
	unary, stream := auth.Interceptors(authn, AccessPolicy(), p.log)
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream)}, nil
}

// prepareSchemas registers the event schemas (herald dev, or serve with
// AutoRegister) or checks that a deploy step registered them.
func (p *Process) prepareSchemas(codec *schema.Codec, events []protoreflect.MessageDescriptor) error {
	register := p.cfg.Embedded || p.cfg.AutoRegister
	// The events of one file share their imports, so one missing subject
	// fails several lookups alike: say each cause once, with its events.
	var causes []string
	byCause := map[string][]string{}
	transient := false
	for _, md := range events {
		r, _ := event.RouteOf(md)
		topic := event.Namespaced(p.cfg.Namespace, r.Topic)
		var err error
		if register {
			_, err = codec.Register(topic, md)
		} else {
			_, err = codec.Lookup(topic, md)
		}
		if err == nil {
			continue
		}
		transient = transient || fault.IsTransient(err)
		cause := err
		if inner := errors.Unwrap(err); inner != nil {
			cause = inner
		}
		if _, seen := byCause[cause.Error()]; !seen {
			causes = append(causes, cause.Error())
		}
		byCause[cause.Error()] = append(byCause[cause.Error()], string(md.Name()))
	}
	if len(causes) > 0 {
		var b strings.Builder
		for i, c := range causes {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "%s (%s)", c, strings.Join(byCause[c], ", "))
		}
		switch {
		case transient:
			return fault.Transient("schema registry", fmt.Errorf("schema registry at %s stopped answering during the start: %s", p.regURL, b.String()))
		case register:
			return fmt.Errorf("register event schemas at %s: %s", p.regURL, b.String())
		}
		return fmt.Errorf("event schemas are not registered at %s (run `herald schema register`, or start with %s): %s",
			p.regURL, Setting("auto-register-schemas"), b.String())
	}
	verb := "found"
	if register {
		verb = "registered"
	}
	p.log.Info("event schemas "+verb, "events", len(events), "strategy", p.cfg.SubjectStrategy, "registry", p.regURL)
	return nil
}

func (p *Process) openDB(ctx context.Context, name string) (*sqldb.DB, error) {
	file := name + ".db"
	if p.cfg.Namespace != "" {
		file = p.cfg.Namespace + "_" + file
	}
	if p.cfg.Embedded {
		// The embedded stack survives a crash of its process, not of the
		// machine: its broker does not sync either (docs/performance.md).
		return sqldb.OpenSQLite(filepath.Join(p.cfg.DataDir, file), sqldb.NoSync())
	}
	u, err := url.Parse(p.cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "sqlite" {
		dir := u.Opaque
		if dir == "" {
			dir = u.Path
		}
		return sqldb.OpenSQLite(filepath.Join(dir, file))
	}
	schemaName := name
	if p.cfg.Namespace != "" {
		schemaName = p.cfg.Namespace + "_" + name
	}
	return sqldb.OpenPostgres(ctx, p.cfg.DatabaseURL, schemaName)
}

// platform is what the process offers its modules.
func (p *Process) platform(codec *schema.Codec, dlq bus.Publisher) module.Platform {
	var beforeMark map[string]func([]int64) error
	if p.cfg.Hooks != nil {
		beforeMark = p.cfg.Hooks.OutboxBeforeMark
	}
	return module.Platform{
		Namespace: p.cfg.Namespace, Instance: p.cfg.InstanceID,
		Codec: codec, DeadLetter: dlq,
		DB: func(service string) (*sqldb.DB, error) {
			if db := p.dbs[service]; db != nil {
				return db, nil
			}
			return nil, fmt.Errorf("%s: no database opened", service)
		},
		// Each relay's publisher is the process's to close.
		Relay: func(n names.Service) (bus.Publisher, error) {
			pub, err := p.bus.relayPublisher(n)
			if err != nil {
				return nil, err
			}
			p.closers = append(p.closers, pub.Close)
			return pub, nil
		},
		BusTransactions: p.kopts != nil, BusName: p.bus.String(),
		Settings: p.cfg.ModuleSettings,
		Logger:   p.log, Metrics: p.metrics, Tracing: p.cfg.Tracing,
		OutboxBeforeMark: beforeMark,
		InboxRetention:   max(p.cfg.InboxRetention, 0),
	}
}

// moduleEvents are the events the modules consume or produce, in the
// order of their files and declarations (schemas are registered in this
// order, so a fresh registry gives every process the same ids).
func moduleEvents(ms []module.Module) ([]protoreflect.MessageDescriptor, error) {
	declared := map[protoreflect.FullName]bool{}
	for _, m := range ms {
		if err := m.Validate(); err != nil {
			return nil, err
		}
		for _, md := range m.Events() {
			declared[md.FullName()] = true
		}
	}
	all, err := event.Events(protoregistry.GlobalFiles, "")
	if err != nil {
		return nil, err
	}
	var out []protoreflect.MessageDescriptor
	for _, md := range all {
		if declared[md.FullName()] {
			out = append(out, md)
		}
	}
	return out, nil
}

func (p *Process) run() {
	p.runCtx, p.stop = context.WithCancel(context.Background())
	sub, err := p.bus.subscriber()
	g, gctx := errgroup.WithContext(p.runCtx)
	if err != nil {
		g.Go(func() error { return err })
	}
	for _, s := range p.services {
		g.Go(func() error {
			if err := s.Run(gctx, sub); err != nil {
				return fmt.Errorf("%s: %w", s.Name(), err)
			}
			return nil
		})
	}
	// Start has just reached every dependency: serve, then let the
	// readiness probes say otherwise.
	p.setServing(true)
	ready := p.ready.Load()
	ready.markServing(true)
	g.Go(func() error {
		ready.run(gctx)
		return nil
	})
	g.Go(func() error {
		p.codec.RunVerifier(gctx, 0)
		return nil
	})
	if c := p.console.Load(); c != nil {
		g.Go(func() error {
			c.Run(gctx)
			return nil
		})
	}
	g.Go(func() error {
		if err := p.grpc.Serve(p.grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("grpc: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		p.health.Shutdown()
		p.grpc.GracefulStop()
		return nil
	})
	go func() {
		p.runErr = g.Wait()
		close(p.done)
	}()
}

// setServing sets the gRPC health of the process ("") and of each of its
// gRPC services. After the health server's Shutdown it changes nothing.
func (p *Process) setServing(ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	p.health.SetServingStatus("", st)
	for _, s := range p.services {
		for _, g := range s.GRPC() {
			p.health.SetServingStatus(g.Desc.ServiceName, st)
		}
	}
}

// newTransport connects the configured bus.
func (p *Process) newTransport() (transport, error) {
	switch p.cfg.Bus {
	case BusKafka:
		extra, err := p.cfg.Kafka.ClientOptions()
		if err != nil {
			return nil, err
		}
		p.kopts = []kafkabus.Option{kafkabus.Seeds(p.brokers...), kafkabus.Logger(p.log), kafkabus.ClientOptions(extra...)}
		return &kafkaTransport{cfg: &p.cfg, p: p, brokers: p.brokers, opts: p.kopts}, nil
	case BusRabbitMQ:
		return &rabbitTransport{cfg: &p.cfg, p: p, opts: []rabbitbus.Option{rabbitbus.URL(p.cfg.RabbitMQURL), rabbitbus.Logger(p.log),
			rabbitbus.Registerer(p.metrics.Registerer())}}, nil
	case BusNATS:
		return &natsTransport{cfg: &p.cfg, p: p, opts: []natsbus.Option{natsbus.URL(p.cfg.NATSURL), natsbus.Logger(p.log),
			natsbus.Registerer(p.metrics.Registerer())}}, nil
	}
	return nil, fmt.Errorf("%s: unknown bus %q", Setting("bus"), p.cfg.Bus)
}

// Subscriptions are the consumer groups of the process's services and the
// topics each reads.
func (p *Process) Subscriptions() map[string][]string {
	out := map[string][]string{}
	for _, s := range p.services {
		if g, topics := s.Subscription(); len(topics) > 0 {
			out[g] = topics
		}
	}
	return out
}

// GRPCAddr is the address gRPC listens on.
func (p *Process) GRPCAddr() string { return p.grpcLn.Addr().String() }

// Brokers are the Kafka bootstrap addresses in use.
func (p *Process) Brokers() []string { return slices.Clone(p.brokers) }

// RegistryURL is the schema registry in use.
func (p *Process) RegistryURL() string { return p.regURL }

// Done is closed when the process has stopped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait blocks until the process stops and returns why.
func (p *Process) Wait() error {
	<-p.done
	return p.runErr
}

// Close stops the services, drains gRPC and stops the infrastructure.
func (p *Process) Close() error {
	p.stop()
	<-p.done
	p.closeAll()
	return p.runErr
}

func (p *Process) closeAll() {
	p.closeMu.Do(func() {
		for _, c := range slices.Backward(p.closers) {
			if err := c(); err != nil {
				p.log.Warn("shutdown", "err", err)
			}
		}
	})
}
