// Package server assembles a herald process: the infrastructure (embedded
// for `herald dev`, configured for `herald serve`), the selected services,
// their databases, publishers and consumers, and one gRPC server with health,
// authentication and authorization ([AccessPolicy]) and, when asked,
// reflection.
package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/herald-events/herald/platform/module"
	"github.com/herald-events/herald/platform/observe"
	"github.com/herald-events/herald/platform/schema"
)

// Setting names a configuration field by its flag and environment variable,
// for error messages: Setting("kafka-brokers") is
// "--kafka-brokers (HERALD_KAFKA_BROKERS)".
func Setting(flag string) string {
	return "--" + flag + " (" + EnvName(flag) + ")"
}

// EnvName is the environment variable of a flag: HERALD_ and the flag in
// upper case with dashes as underscores.
func EnvName(flag string) string {
	return "HERALD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// KafkaConfig says how to reach Kafka.
type KafkaConfig struct {
	// Brokers are the bootstrap "host:port" addresses.
	Brokers []string
	// SASLMechanism is "", "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512".
	SASLMechanism string
	SASLUser      string
	SASLPassword  string
	// TLS turns on TLS to the brokers; TLSCAFile adds a CA bundle to trust.
	TLS       bool
	TLSCAFile string
}

// RegistryConfig says how to reach the schema registry.
type RegistryConfig struct {
	// URL of a Confluent-API registry, e.g. http://host:8081 or Apicurio's
	// http://host:8080/apis/ccompat/v7.
	URL string
	// User and Password enable HTTP basic auth.
	User, Password string
}

// RegistryAuth are the basic-auth users of the embedded registry.
type RegistryAuth struct {
	User, Password                 string
	ReadOnlyUser, ReadOnlyPassword string
}

// Config configures a process.
type Config struct {
	// DataDir holds the SQLite files and, embedded, the broker log and
	// registry state. Default ".herald".
	DataDir string
	// GRPCAddr is the gRPC listen address. Default "127.0.0.1:8080".
	GRPCAddr string
	// HTTPAddr is the admin listener, apart from gRPC: /metrics
	// (Prometheus), /healthz, /livez and, with PProf, /debug/pprof/. Empty
	// turns it off.
	HTTPAddr string
	// GRPCTLSCert and GRPCTLSKey (PEM files) serve gRPC over TLS.
	GRPCTLSCert, GRPCTLSKey string
	// GRPCMaxInFlight bounds the gRPC calls handled at once; past it a call
	// is refused at once with RESOURCE_EXHAUSTED (load shedding, see
	// grpcx.Limiter). Default 256; negative: no bound.
	GRPCMaxInFlight int
	// GRPCMaxStreams bounds the concurrent streams (calls) of one client
	// connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS); a client queues
	// calls past it on its side. Default 1000.
	GRPCMaxStreams int
	// Auth says how gRPC callers authenticate. Default: not at all.
	Auth AuthConfig
	// RequireAuth refuses a configuration without an authentication
	// setting unless Auth.InsecureNoAuth says so (herald serve sets it).
	RequireAuth bool
	// GRPCReflection serves gRPC server reflection. Default off (herald
	// dev turns it on).
	GRPCReflection bool
	// Console serves the web console at /console/ on the admin listener
	// (HTTPAddr); see internal/console. herald dev turns it on; herald
	// serve with --services naming "console". Needs the Kafka bus.
	Console bool
	// PProf serves Go's profiler under /debug/pprof/ on the admin
	// listener (HTTPAddr). Default off.
	PProf bool

	// Embedded runs kfake and the embedded registry in the process and
	// keeps the databases in DataDir (herald dev).
	Embedded bool
	// KafkaAddr and RegistryAddr are where the embedded parts listen.
	// Defaults "127.0.0.1:9092" and "127.0.0.1:8081".
	KafkaAddr, RegistryAddr string
	// EmbeddedRegistryAuth, when its User is set, makes the embedded
	// registry require basic auth: User and Password may change
	// everything (the process itself uses them), ReadOnlyUser and
	// ReadOnlyPassword may only read.
	EmbeddedRegistryAuth RegistryAuth

	// Bus is the message bus: "kafka" (default), "nats" (JetStream) or
	// "rabbitmq". herald dev always uses its embedded Kafka.
	Bus string
	// NATSURL (nats://host:port) and RabbitMQURL (amqp://user:pass@host:port/vhost)
	// reach the other buses.
	NATSURL, RabbitMQURL string

	// Kafka, Registry and DatabaseURL name the real infrastructure
	// (herald serve). DatabaseURL is postgres://... (one schema per
	// service) or sqlite:DIR (one file per service in DIR).
	Kafka       KafkaConfig
	Registry    RegistryConfig
	DatabaseURL string

	// Namespace prefixes topics, subjects, consumer groups, transactional
	// ids and database schemas, so several deployments can share the same
	// infrastructure. Default none.
	Namespace string
	// InstanceID names this process among the instances of its services.
	// It ends the Kafka transactional ids of its outbox relays
	// ("herald-<service>-outbox-<instance>") and consumers
	// ("herald-consumer-<group>-<instance>"): a restarted process with the
	// same id fences its predecessor, and the broker aborts the
	// transactions that one left open at once instead of after the
	// transaction timeout. It must stay the same across restarts of one
	// instance and differ between instances running at once (two instances
	// of one service on one host need distinct ids). Up to 64 of
	// [A-Za-z0-9._-]. Default: the host name.
	InstanceID string
	// Services to run. Default: every module the bus can carry.
	Services []string
	// Modules the process knows. Default [Modules]; a test may add one.
	Modules []module.Module
	// ModuleSettings are the values of the modules' settings (see
	// module.Setting), by service and key.
	ModuleSettings map[string]map[string]string
	// RequireCloudEvents lists the services whose consumers refuse
	// (dead-letter) records without CloudEvents headers; "all" names
	// every service. Default none: a record from a producer outside
	// herald (Confluent framing, no ce_* headers) is accepted, its id
	// derived from its topic, partition and offset (consumer.DerivedID).
	RequireCloudEvents []string
	// Partitions and ReplicationFactor of topics the process creates.
	// Defaults 3 and -1 (the broker's default).
	Partitions        int32
	ReplicationFactor int16
	// SubjectStrategy names registry subjects. Default topic name.
	SubjectStrategy schema.Strategy
	// AutoRegister lets a serving process register event schemas itself.
	// Default false: schemas come from `herald schema register`, and a
	// missing subject stops the start. herald dev always registers.
	AutoRegister bool
	// Tracing is the process's OpenTelemetry setup (see
	// observe.NewTracing). Default: spans and propagation, no export.
	Tracing *observe.Tracing
	// InboxRetention is how long a service keeps the inbox claim of an
	// event it consumed, which is what makes a redelivery of that event a
	// no-op. Default [DefaultInboxRetention]; negative keeps claims
	// forever.
	InboxRetention time.Duration
	// ShutdownGrace bounds how long consumers finish the messages they hold
	// after a stop signal. Default 10s.
	ShutdownGrace time.Duration
	// StartupTimeout bounds how long [Start] waits for the schema registry,
	// the bus and the databases to answer, retrying with backoff. Zero (the
	// default for a Config; herald serve's flag defaults to 2m) fails at the
	// first unanswered attempt.
	StartupTimeout time.Duration
	// HealthInterval is how often a running process probes its
	// dependencies for readiness (gRPC health and /healthz). Default 1s.
	HealthInterval time.Duration
	// Logger defaults to [slog.Default].
	Logger *slog.Logger
	// Hooks inject faults in tests; nil in production.
	Hooks *Hooks

	// consoleOnly records that Services named the console alone, so that
	// a second SetDefaults does not fill in every module.
	consoleOnly bool
}

// AuthConfig says how gRPC callers authenticate. With neither ClientCA
// nor JWKS every caller may call every method.
type AuthConfig struct {
	// ClientCA (a PEM file) turns on mTLS: every client must present a
	// certificate it signed; its CN is the subject and an OU naming a role
	// ("customer", "operator") its role. Needs GRPCTLSCert.
	ClientCA string
	// JWKS (a file or an http(s) URL) turns on bearer JWTs ("authorization:
	// Bearer <token>") verified against its keys, with JWTIssuer and
	// JWTAudience required.
	JWKS, JWTIssuer, JWTAudience string
	// JWTRolesClaim names the roles claim (default "roles", then "role");
	// JWTSubjectClaim the customer id's (default "sub").
	JWTRolesClaim, JWTSubjectClaim string
	// InsecureNoAuth runs without authentication where RequireAuth asks for
	// it, with a warning in the log.
	InsecureNoAuth bool
}

// On reports whether callers must authenticate.
func (a AuthConfig) On() bool { return a.ClientCA != "" || a.JWKS != "" }

// Hooks are fault-injection points for tests.
type Hooks struct {
	// OutboxBeforeMark, per service name, runs between publishing an
	// outbox batch and marking it sent; an error stops the process as a
	// crash at that point would.
	OutboxBeforeMark map[string]func(ids []int64) error
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.DataDir == "" {
		c.DataDir = ".herald"
	}
	if c.GRPCAddr == "" {
		c.GRPCAddr = "127.0.0.1:8080"
	}
	if c.GRPCMaxInFlight == 0 {
		c.GRPCMaxInFlight = DefaultGRPCMaxInFlight
	}
	if c.GRPCMaxStreams == 0 {
		c.GRPCMaxStreams = DefaultGRPCMaxStreams
	}
	if c.KafkaAddr == "" {
		c.KafkaAddr = "127.0.0.1:9092"
	}
	if c.RegistryAddr == "" {
		c.RegistryAddr = "127.0.0.1:8081"
	}
	if c.Bus == "" {
		c.Bus = BusKafka
	}
	if c.InstanceID == "" {
		c.InstanceID = hostInstanceID()
	}
	named, only := c.takeConsoleService()
	c.Console = c.Console || named
	c.consoleOnly = c.consoleOnly || only
	if len(c.Services) == 0 && !c.consoleOnly {
		// Default: every service the bus can carry (one that publishes in
		// consumer transactions needs Kafka).
		for _, m := range c.modules() {
			if c.Bus == BusKafka || !m.NeedsBusTransactions() {
				c.Services = append(c.Services, m.Name)
			}
		}
	}
	if c.Partitions == 0 {
		c.Partitions = 3
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
	}
	if c.SubjectStrategy == "" {
		c.SubjectStrategy = schema.TopicName
	}
	if c.Tracing == nil {
		c.Tracing = observe.LocalTracing()
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.InboxRetention == 0 {
		c.InboxRetention = DefaultInboxRetention
	}
	if c.HealthInterval <= 0 {
		c.HealthInterval = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// DefaultInboxRetention is Kafka's default log retention (retention.ms,
// seven days): an event replayed from a topic's earliest offset is then
// still found in the inbox.
const DefaultInboxRetention = 7 * 24 * time.Hour

// Defaults of the gRPC load bounds; see docs/operations.md for how they
// were chosen.
const (
	DefaultGRPCMaxInFlight = 256
	DefaultGRPCMaxStreams  = 1000
)

// The buses a process can use.
const (
	BusKafka    = "kafka"
	BusNATS     = "nats"
	BusRabbitMQ = "rabbitmq"
)

var namespaceRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,30}$`)

var instanceIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// hostInstanceID is the default [Config.InstanceID]: the host name, its
// characters outside [A-Za-z0-9._-] replaced by '-' and cut to 64, or
// "herald" when the host has no name.
func hostInstanceID() string {
	name, err := os.Hostname()
	if err != nil || name == "" {
		return "herald"
	}
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	return string(b[:min(len(b), 64)])
}

// Validate reports every invalid setting, naming its flag and variable.
func (c *Config) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", Setting(flag), fmt.Sprintf(format, args...)))
	}
	addrs := []struct{ flag, addr string }{{"grpc-addr", c.GRPCAddr}}
	if c.HTTPAddr != "" {
		addrs = append(addrs, struct{ flag, addr string }{"http-addr", c.HTTPAddr})
	}
	if c.Embedded {
		addrs = append(addrs, struct{ flag, addr string }{"kafka-addr", c.KafkaAddr},
			struct{ flag, addr string }{"registry-addr", c.RegistryAddr})
	}
	for _, a := range addrs {
		if err := checkHostPort(a.addr, false); err != nil {
			bad(a.flag, "%v", err)
		}
	}
	if a := c.EmbeddedRegistryAuth; c.Embedded && a != (RegistryAuth{}) {
		switch {
		case a.User == "" || a.Password == "":
			bad("registry-user", "the embedded registry's basic auth needs --registry-user and --registry-password (the process registers its schemas as that user)")
		case a.ReadOnlyUser != "" && a.ReadOnlyPassword == "":
			bad("registry-reader-password", "required with --registry-reader-user")
		}
	}
	if c.Console && c.HTTPAddr == "" {
		bad("http-addr", "the console is served on the admin listener: set --http-addr")
	}
	if c.Console && c.Bus != BusKafka {
		bad("services", "the console reads Kafka: it needs --bus=kafka")
	}
	if c.GRPCMaxStreams < 0 || int64(c.GRPCMaxStreams) > math.MaxUint32 {
		bad("grpc-max-streams", "%d: must be between 1 and %d", c.GRPCMaxStreams, uint32(math.MaxUint32))
	}
	if (c.GRPCTLSCert == "") != (c.GRPCTLSKey == "") {
		bad("grpc-tls-cert", "set both --grpc-tls-cert and --grpc-tls-key, or neither")
	}
	if c.Auth.ClientCA != "" && c.GRPCTLSCert == "" {
		bad("grpc-client-ca", "client certificates need TLS: set --grpc-tls-cert and --grpc-tls-key too")
	}
	if c.Auth.JWKS != "" {
		if c.Auth.JWTIssuer == "" {
			bad("grpc-jwt-issuer", "required with --grpc-jwks: the issuer (iss) tokens must name")
		}
		if c.Auth.JWTAudience == "" {
			bad("grpc-jwt-audience", "required with --grpc-jwks: the audience (aud) tokens must name")
		}
	}
	switch {
	case c.Auth.On() && c.Auth.InsecureNoAuth:
		bad("insecure-no-auth", "contradicts --grpc-client-ca / --grpc-jwks: choose one")
	case c.RequireAuth && !c.Auth.On() && !c.Auth.InsecureNoAuth:
		bad("grpc-jwks", "herald serve needs authentication: set --grpc-jwks (bearer JWTs) and/or --grpc-client-ca "+
			"(client certificates), or --insecure-no-auth to accept every caller (see docs/security.md)")
	}
	switch {
	case c.Bus == BusKafka:
	case c.Embedded:
		bad("bus", "%q: herald dev runs on its embedded Kafka only; use herald serve for %s", c.Bus, c.Bus)
	case c.Bus == BusNATS:
		if u, err := url.Parse(c.NATSURL); c.NATSURL == "" || err != nil || (u.Scheme != "nats" && u.Scheme != "tls") {
			bad("nats-url", "required with --bus=nats: nats://host:port (got %q)", c.NATSURL)
		}
	case c.Bus == BusRabbitMQ:
		if u, err := url.Parse(c.RabbitMQURL); c.RabbitMQURL == "" || err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") {
			bad("rabbitmq-url", "required with --bus=rabbitmq: amqp://user:pass@host:port/ (got %q)", c.RabbitMQURL)
		}
	default:
		bad("bus", "%q: want kafka, nats or rabbitmq", c.Bus)
	}
	for _, m := range c.selected() {
		if c.Bus != BusKafka && m.NeedsBusTransactions() {
			bad("services", "%s needs --bus=kafka: it publishes in consumer transactions, which %s does not have", m.Name, c.Bus)
		}
	}
	if !c.Embedded {
		if c.Bus == BusKafka && len(c.Kafka.Brokers) == 0 {
			bad("kafka-brokers", "required: the Kafka bootstrap servers, host:port[,host:port...]")
		}
		for _, b := range c.Kafka.Brokers {
			if err := checkHostPort(b, true); err != nil {
				bad("kafka-brokers", "%v", err)
			}
		}
		if c.Registry.URL == "" {
			bad("schema-registry-url", "required: the Confluent-API schema registry URL")
		} else if u, err := url.Parse(c.Registry.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("schema-registry-url", "%q is not an http(s) URL", c.Registry.URL)
		}
		switch u, err := url.Parse(c.DatabaseURL); {
		case c.DatabaseURL == "" && !c.needsDatabase():
		case c.DatabaseURL == "":
			bad("database-url", "required: postgres://user:pass@host:port/db or sqlite:DIR")
		case err != nil:
			bad("database-url", "%v", err)
		case u.Scheme != "postgres" && u.Scheme != "postgresql" && u.Scheme != "sqlite":
			bad("database-url", "unsupported scheme %q (want postgres:// or sqlite:DIR)", u.Scheme)
		}
	}
	switch c.Kafka.SASLMechanism {
	case "":
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if c.Kafka.SASLUser == "" || c.Kafka.SASLPassword == "" {
			bad("kafka-sasl-user", "%s needs --kafka-sasl-user and --kafka-sasl-password", c.Kafka.SASLMechanism)
		}
	default:
		bad("kafka-sasl-mechanism", "%q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.Kafka.SASLMechanism)
	}
	if c.Kafka.TLSCAFile != "" {
		if _, err := os.Stat(c.Kafka.TLSCAFile); err != nil {
			bad("kafka-tls-ca", "%v", err)
		}
	}
	if c.Namespace != "" && !namespaceRE.MatchString(c.Namespace) {
		bad("namespace", "%q: want a lower-case letter then up to 30 of [a-z0-9_]", c.Namespace)
	}
	if !instanceIDRE.MatchString(c.InstanceID) {
		bad("instance-id", "%q: want 1 to 64 of [A-Za-z0-9._-]", c.InstanceID)
	}
	for _, m := range c.modules() {
		for key := range c.ModuleSettings[m.Name] {
			if !slices.ContainsFunc(m.Settings, func(s module.Setting) bool { return s.Key == key }) {
				bad(m.Name+"-"+key, "%s has no setting %q", m.Name, key)
			}
		}
	}
	seen := map[string]bool{}
	known := namesOf(c.modules())
	for _, s := range c.RequireCloudEvents {
		if s != "all" && !slices.Contains(known, s) {
			bad("require-cloudevents", "unknown service %q (known: all, %s)", s, strings.Join(known, ", "))
		}
	}
	for _, s := range c.Services {
		if !slices.Contains(known, s) {
			bad("services", "unknown service %q (known: %s)", s, strings.Join(known, ", "))
		}
		if seen[s] {
			bad("services", "%q listed twice", s)
		}
		seen[s] = true
	}
	if c.Partitions < 1 {
		bad("partitions", "%d: must be at least 1", c.Partitions)
	}
	if c.StartupTimeout < 0 {
		bad("startup-timeout", "%s: must be 0 (no waiting) or more", c.StartupTimeout)
	}
	if _, err := schema.ParseStrategy(string(c.SubjectStrategy)); err != nil {
		bad("subject-strategy", "%v", err)
	}
	return errors.Join(errs...)
}

// checkHostPort checks a "host:port" address: a numeric port up to 65535.
// A listen address may leave the host empty (every interface) and use port
// 0 (any free port); a remote address (dial) must name both.
func checkHostPort(addr string, dial bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	n, err := strconv.Atoi(port)
	switch {
	case err != nil || n < 0 || n > 65535:
		return fmt.Errorf("%q: port %q is not a number up to 65535", addr, port)
	case dial && n == 0:
		return fmt.Errorf("%q: port 0 cannot be dialled", addr)
	case dial && host == "":
		return fmt.Errorf("%q: the host is missing", addr)
	}
	return nil
}

// ConfigError is a setting that cannot work as given, found when [Start]
// first reaches a dependency (a URL that answers, but not as the expected
// API). Waiting does not help; herald exits with code 2, as for a setting
// [Config.Validate] refuses.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *ConfigError) Unwrap() error { return e.Err }

// needsDatabase reports whether a selected service keeps state.
func (c *Config) needsDatabase() bool {
	return slices.ContainsFunc(c.selected(), func(m module.Module) bool { return m.Database })
}

// ClientOptions turns the SASL and TLS settings into franz-go options.
func (k KafkaConfig) ClientOptions() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	switch k.SASLMechanism {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: k.SASLUser, Pass: k.SASLPassword}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: k.SASLUser, Pass: k.SASLPassword}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: k.SASLUser, Pass: k.SASLPassword}.AsSha512Mechanism()))
	}
	if k.TLS || k.TLSCAFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if k.TLSCAFile != "" {
			pem, err := os.ReadFile(k.TLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", Setting("kafka-tls-ca"), err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%s: no PEM certificates in %s", Setting("kafka-tls-ca"), k.TLSCAFile)
			}
			tc.RootCAs = pool
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	return opts, nil
}
