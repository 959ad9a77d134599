package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/auth"
	"github.com/herald-events/herald/platform/observe"
	"github.com/herald-events/herald/platform/schema"
)

// listFlag is a comma-separated list.
type listFlag struct{ v *[]string }

func (l listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

func (l listFlag) Set(s string) error {
	*l.v = nil
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l.v = append(*l.v, part)
		}
	}
	return nil
}

// flags binds the flags of one command to a server.Config.
type flags struct {
	fs       *flag.FlagSet
	cfg      server.Config
	strategy string
	level    string
	parts    int
	repl     int
	gc       int
	inbox    time.Duration
}

func newFlags(name string, stderr io.Writer) *flags {
	f := &flags{fs: flag.NewFlagSet(name, flag.ContinueOnError), repl: -1}
	f.fs.SetOutput(stderr)
	return f
}

// registry adds the flags that reach a schema registry.
func (f *flags) registry() {
	f.fs.StringVar(&f.cfg.Registry.URL, "schema-registry-url", "", "Confluent-API schema registry URL (Apicurio: http://host:port/apis/ccompat/v7)")
	f.fs.StringVar(&f.cfg.Registry.URL, "registry", "", "short for --schema-registry-url")
	f.fs.StringVar(&f.cfg.Registry.User, "schema-registry-user", "", "registry basic-auth user")
	f.fs.StringVar(&f.cfg.Registry.Password, "schema-registry-password", "", "registry basic-auth password")
	f.fs.StringVar(&f.strategy, "subject-strategy", string(schema.TopicName), "registry subject naming: topic, record or topic_record")
	f.fs.StringVar(&f.cfg.Namespace, "namespace", "", "prefix for topics, subjects, consumer groups and database schemas")
}

// process adds the flags of dev and serve.
func (f *flags) process(embedded bool) {
	f.fs.StringVar(&f.cfg.GRPCAddr, "grpc-addr", "127.0.0.1:8080", "gRPC listen address (the public API and health)")
	f.fs.StringVar(&f.cfg.HTTPAddr, "http-addr", "127.0.0.1:8082", "admin HTTP listen address for /metrics, /healthz (readiness), /livez (liveness) and, with --pprof, /debug/pprof/ (empty: off); keep it off public networks")
	f.fs.BoolVar(&f.cfg.Console, "console", embedded, "serve the web console at /console/ on the admin listener (--http-addr); herald serve also turns it on with --services=...,console")
	f.fs.BoolVar(&f.cfg.PProf, "pprof", false, "serve Go's profiler under /debug/pprof/ on the admin listener (--http-addr)")
	f.fs.BoolVar(&f.cfg.GRPCReflection, "grpc-reflection", embedded, "serve gRPC server reflection (grpcurl list/describe): the API's shape, not its data, to anyone who reaches the port")
	f.fs.StringVar(&f.cfg.GRPCTLSCert, "grpc-tls-cert", "", "PEM certificate file: serve gRPC over TLS")
	f.fs.StringVar(&f.cfg.GRPCTLSKey, "grpc-tls-key", "", "PEM private key file for --grpc-tls-cert")
	f.fs.IntVar(&f.cfg.GRPCMaxInFlight, "grpc-max-inflight", server.DefaultGRPCMaxInFlight,
		"gRPC calls handled at once; past it calls get RESOURCE_EXHAUSTED at once (health checks excepted; -1: no bound)")
	f.fs.IntVar(&f.cfg.GRPCMaxStreams, "grpc-max-streams", server.DefaultGRPCMaxStreams, "concurrent gRPC streams per client connection")
	f.fs.StringVar(&f.cfg.Auth.ClientCA, "grpc-client-ca", "", "PEM CA bundle: require gRPC client certificates signed by it (mTLS; CN = subject, OU = role customer|operator); needs --grpc-tls-cert")
	f.fs.StringVar(&f.cfg.Auth.JWKS, "grpc-jwks", "", "JWKS file or http(s) URL: accept \"authorization: Bearer <JWT>\" tokens signed by its keys")
	issuer, audience := "", ""
	if embedded {
		issuer, audience = auth.DevIssuer, auth.DevAudience // what `herald token` mints
	}
	f.fs.StringVar(&f.cfg.Auth.JWTIssuer, "grpc-jwt-issuer", issuer, "issuer (iss) a bearer token must name (required with --grpc-jwks)")
	f.fs.StringVar(&f.cfg.Auth.JWTAudience, "grpc-jwt-audience", audience, "audience (aud) a bearer token must name (required with --grpc-jwks)")
	f.fs.StringVar(&f.cfg.Auth.JWTRolesClaim, "grpc-jwt-roles-claim", "", "claim holding the caller's roles (default: roles, else role)")
	f.fs.StringVar(&f.cfg.Auth.JWTSubjectClaim, "grpc-jwt-subject-claim", "sub", "claim holding the caller's customer id")
	if !embedded {
		f.fs.BoolVar(&f.cfg.Auth.InsecureNoAuth, "insecure-no-auth", false, "serve gRPC without authentication: every caller may call every method (needed when neither --grpc-jwks nor --grpc-client-ca is set)")
	}
	f.fs.Var(listFlag{&f.cfg.Services}, "services", "comma-separated services to run (default: "+strings.Join(server.KnownServices(), ",")+"); "+server.ConsoleService+" adds the web console")
	f.fs.Var(listFlag{&f.cfg.RequireCloudEvents}, "require-cloudevents", "comma-separated services (or all) that dead-letter records without CloudEvents headers instead of deriving their id from topic, partition and offset")
	f.fs.IntVar(&f.gc, "gc-percent", defaultGCPercent,
		"Go's garbage collector target (as GOGC): heap growth allowed between collections, in percent; GOGC in the environment wins")
	f.fs.DurationVar(&f.inbox, "inbox-retention", server.DefaultInboxRetention,
		"how long a service keeps the inbox claim of an event it consumed, which makes a redelivery of it a no-op; keep it at least the topics' retention to replay them safely (0: forever)")
	f.fs.IntVar(&f.parts, "partitions", 3, "partitions of each topic created")
	f.fs.DurationVar(&f.cfg.ShutdownGrace, "shutdown-grace", 10*time.Second, "how long consumers finish the messages they hold after SIGTERM")
	f.fs.StringVar(&f.level, "log-level", "info", "debug, info, warn or error")
	f.moduleSettings()
	if embedded {
		f.fs.StringVar(&f.cfg.DataDir, "data-dir", ".herald", "directory for the broker log, registry state and SQLite files")
		f.fs.StringVar(&f.cfg.KafkaAddr, "kafka-addr", "127.0.0.1:9092", "embedded Kafka listen address")
		f.fs.StringVar(&f.cfg.RegistryAddr, "registry-addr", "127.0.0.1:8081", "embedded schema registry listen address")
		f.fs.StringVar(&f.cfg.EmbeddedRegistryAuth.User, "registry-user", "", "embedded registry: require HTTP basic auth; this user may read and change everything")
		f.fs.StringVar(&f.cfg.EmbeddedRegistryAuth.Password, "registry-password", "", "password of --registry-user")
		f.fs.StringVar(&f.cfg.EmbeddedRegistryAuth.ReadOnlyUser, "registry-reader-user", "", "embedded registry: require HTTP basic auth; this user may only read")
		f.fs.StringVar(&f.cfg.EmbeddedRegistryAuth.ReadOnlyPassword, "registry-reader-password", "", "password of --registry-reader-user")
		f.fs.StringVar(&f.strategy, "subject-strategy", string(schema.TopicName), "registry subject naming: topic, record or topic_record")
		return
	}
	f.registry()
	f.fs.StringVar(&f.cfg.Bus, "bus", "kafka", "message bus: kafka, nats (JetStream) or rabbitmq")
	f.kafka()
	f.fs.StringVar(&f.cfg.NATSURL, "nats-url", "", "NATS server URL with JetStream enabled, nats://host:port (--bus=nats)")
	f.fs.StringVar(&f.cfg.RabbitMQURL, "rabbitmq-url", "", "RabbitMQ URL, amqp://user:pass@host:port/vhost (--bus=rabbitmq)")
	f.fs.StringVar(&f.cfg.DatabaseURL, "database-url", "", "postgres://user:pass@host:port/db (a schema per service) or sqlite:DIR")
	f.fs.IntVar(&f.repl, "replication-factor", -1, "replication factor of topics created (-1: the broker's default)")
	f.fs.BoolVar(&f.cfg.AutoRegister, "auto-register-schemas", false, "register missing event schemas at start instead of failing")
	f.fs.DurationVar(&f.cfg.StartupTimeout, "startup-timeout", 2*time.Minute,
		"how long to wait at start for the schema registry, the bus and the database to answer (0: fail at once)")
	f.fs.StringVar(&f.cfg.InstanceID, "instance-id", "", "name of this process in Kafka transactional ids: the same across its restarts, distinct per instance of a service (default: the host name)")
}

// moduleSettings adds a flag for each setting the modules declare:
// --<service>-<key>, into cfg.ModuleSettings.
func (f *flags) moduleSettings() {
	for _, m := range server.Modules() {
		for _, st := range m.Settings {
			f.fs.Func(server.SettingFlag(m, st), st.Usage+" (service "+m.Name+")", func(v string) error {
				if f.cfg.ModuleSettings == nil {
					f.cfg.ModuleSettings = map[string]map[string]string{}
				}
				if f.cfg.ModuleSettings[m.Name] == nil {
					f.cfg.ModuleSettings[m.Name] = map[string]string{}
				}
				f.cfg.ModuleSettings[m.Name][st.Key] = v
				return nil
			})
		}
	}
}

// kafka adds the flags that reach Kafka.
func (f *flags) kafka() {
	f.fs.Var(listFlag{&f.cfg.Kafka.Brokers}, "kafka-brokers", "Kafka bootstrap servers, host:port[,host:port...]")
	f.fs.StringVar(&f.cfg.Kafka.SASLMechanism, "kafka-sasl-mechanism", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	f.fs.StringVar(&f.cfg.Kafka.SASLUser, "kafka-sasl-user", "", "SASL user")
	f.fs.StringVar(&f.cfg.Kafka.SASLPassword, "kafka-sasl-password", "", "SASL password")
	f.fs.BoolVar(&f.cfg.Kafka.TLS, "kafka-tls", false, "connect to Kafka over TLS")
	f.fs.StringVar(&f.cfg.Kafka.TLSCAFile, "kafka-tls-ca", "", "PEM CA bundle to trust for Kafka TLS (implies --kafka-tls)")
}

// parse reads args, then HERALD_* variables for flags not given.
func (f *flags) parse(args []string, getenv func(string) string) error {
	if err := f.fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	var errs []error
	f.fs.VisitAll(func(fl *flag.Flag) {
		if set[fl.Name] {
			return
		}
		name := server.EnvName(fl.Name)
		if v := getenv(name); v != "" {
			if err := fl.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	if f.fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %s", strings.Join(f.fs.Args(), " ")))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	f.cfg.SubjectStrategy = schema.Strategy(f.strategy)
	f.cfg.Partitions = int32(f.parts)
	f.cfg.ReplicationFactor = int16(f.repl)
	if f.repl == 0 {
		return fmt.Errorf("%s: must be -1 or at least 1", server.Setting("replication-factor"))
	}
	switch {
	case f.inbox < 0:
		return fmt.Errorf("%s: %s: want a positive duration, or 0 to keep claims forever", server.Setting("inbox-retention"), f.inbox)
	case f.inbox == 0:
		f.cfg.InboxRetention = -1
	default:
		f.cfg.InboxRetention = f.inbox
	}
	return nil
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%s %q: want debug, info, warn or error", server.Setting("log-level"), level)
	}
	return slog.New(observe.LogHandler(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))), nil
}
