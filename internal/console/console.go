// Package console is herald's web console: server-rendered pages to watch an
// order's saga across topics, read records decoded through the schema
// registry, replay dead letters, review schemas and see the process's rates.
//
// A [Console] is an [http.Handler] mounted at /console/ on the admin
// listener. It has no database of its own: it reads Kafka (bounded windows
// only, never whole topics), the registry, the process's metrics registry
// and, when the orders service runs in the same process, its gRPC API in
// process. Pages are html/template with embedded CSS and one small script;
// nothing is fetched from elsewhere at run time.
//
// Access: with [Config.Verify] set, every page needs an operator's bearer
// token (an Authorization header, or the cookie that the login form sets);
// without it the console is open, as herald dev's gRPC is. Replaying dead
// letters is the only write: a POST with a confirmation step and a CSRF
// token.
package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/auth"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/schema"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is the path the console is served under.
const Prefix = "/console/"

// DefaultWindow is the default of [Config.Window].
const DefaultWindow = 2000

// Orders is the part of the orders service's gRPC API the console uses; the
// service's implementation satisfies it and is called in process.
type Orders interface {
	GetOrder(context.Context, *ordersv1.GetOrderRequest) (*ordersv1.GetOrderResponse, error)
	ListOrders(context.Context, *ordersv1.ListOrdersRequest) (*ordersv1.ListOrdersResponse, error)
}

// Consumer is a consumer group, the topics it reads and the event types it
// handles (full names).
type Consumer struct {
	Group  string
	Topics []string
	Types  []string
}

// Config is what a [Console] reads and how it is guarded.
type Config struct {
	// Brokers and KafkaOptions reach Kafka.
	Brokers      []string
	KafkaOptions []kgo.Opt
	// Codec decodes record values (Confluent framing) through the registry.
	Codec *schema.Codec
	// Registry is the schema registry's client, for the schemas page.
	Registry schemaregistry.Client
	// Strategy and Namespace name subjects and topics as the process does.
	Strategy  schema.Strategy
	Namespace string
	// Topics are the event topics (namespaced), without their dead-letter
	// topics.
	Topics []string
	// Consumers are the consumer groups of every known service.
	Consumers []Consumer
	// Orders, when the orders service runs in this process, answers
	// searches by customer and gives an order's status. Nil: search by
	// order id only, from Kafka.
	Orders Orders
	// Replay publishes replayed dead letters (the process's dead-letter
	// publisher does).
	Replay bus.Publisher
	// Gatherer is the process's metrics registry, for the services page.
	Gatherer prometheus.Gatherer
	// Verify checks a bearer token; nil leaves the console open (auth off).
	Verify func(ctx context.Context, token string) (auth.Principal, error)
	// Window bounds every Kafka read: records per partition. Default
	// [DefaultWindow].
	Window int
	// SampleEvery is how often the services page samples the metrics;
	// SampleKeep how many samples it keeps. Defaults 5s and 120 (10 min).
	SampleEvery time.Duration
	SampleKeep  int
	// Logger defaults to [slog.Default].
	Logger *slog.Logger
}

// Console serves the console's pages.
type Console struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	pages   map[string]*template.Template
	csrfKey []byte
	admin   *kgo.Client
	adm     *kadm.Client
	samples *sampler

	closeOnce sync.Once
}

// New returns a console for cfg. Close it when done.
func New(cfg Config) (*Console, error) {
	if len(cfg.Brokers) == 0 || cfg.Codec == nil || cfg.Registry == nil {
		return nil, errors.New("console: brokers, codec and registry are required")
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = 5 * time.Second
	}
	if cfg.SampleKeep <= 0 {
		cfg.SampleKeep = 120
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Strategy == "" {
		cfg.Strategy = schema.TopicName
	}
	c := &Console{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), pages: map[string]*template.Template{}}
	c.csrfKey = make([]byte, 32)
	if _, err := rand.Read(c.csrfKey); err != nil {
		return nil, fmt.Errorf("console: csrf key: %w", err)
	}
	var err error
	c.admin, err = kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.KafkaOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("console: kafka client: %w", err)
	}
	c.adm = kadm.NewClient(c.admin)
	if err := c.parse(); err != nil {
		c.admin.Close()
		return nil, err
	}
	c.samples = newSampler(cfg.Gatherer, cfg.SampleKeep)
	c.routes()
	return c, nil
}

// Run samples the metrics for the services page until ctx ends.
func (c *Console) Run(ctx context.Context) {
	if c.cfg.Gatherer == nil {
		return
	}
	t := time.NewTicker(c.cfg.SampleEvery)
	defer t.Stop()
	c.samples.sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.samples.sample(now)
		}
	}
}

// Close releases the console's Kafka client.
func (c *Console) Close() error {
	c.closeOnce.Do(func() { c.admin.Close() })
	return nil
}

var funcs = template.FuncMap{
	"since": func(t time.Time) string { return t.UTC().Format("15:04:05.000") },
	"date":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"dur":   fmtDuration,
	"short": func(s string, n int) string {
		if len(s) <= n {
			return s
		}
		return s[:n] + "…"
	},
	"money": money,
}

// money shows an amount as units and cents with its currency (nanos below
// a cent are rounded off).
func money(m *moneyv1.Money) string {
	if m == nil {
		return ""
	}
	cents := int64(m.GetNanos()) / 10_000_000
	sign := ""
	if m.GetUnits() < 0 || cents < 0 {
		sign = "-"
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, abs(m.GetUnits()), abs(cents), m.GetCurrencyCode())
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

func (c *Console) parse() error {
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return fmt.Errorf("console: templates: %w", err)
	}
	pages, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, p)
		if err != nil {
			return fmt.Errorf("console: template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	return nil
}

func (c *Console) routes() {
	static, _ := fs.Sub(staticFS, "static")
	c.mux.Handle("GET "+Prefix+"static/", http.StripPrefix(Prefix+"static/", cacheStatic(http.FileServerFS(static))))
	c.mux.HandleFunc("POST "+Prefix+"login", c.login)
	c.mux.HandleFunc("POST "+Prefix+"logout", c.logout)
	c.mux.Handle("GET "+Prefix+"{$}", c.guard(c.home))
	c.mux.Handle("GET "+Prefix+"orders", c.guard(c.orders))
	c.mux.Handle("GET "+Prefix+"orders/{id}", c.guard(c.order))
	c.mux.Handle("GET "+Prefix+"orders/{id}/timeline", c.guard(c.timelineFragment))
	c.mux.Handle("GET "+Prefix+"dlq", c.guard(c.deadLetters))
	c.mux.Handle("POST "+Prefix+"dlq/replay", c.guard(c.replay))
	c.mux.Handle("GET "+Prefix+"topics", c.guard(c.topics))
	c.mux.Handle("GET "+Prefix+"topics/{topic}", c.guard(c.topic))
	c.mux.Handle("GET "+Prefix+"schemas", c.guard(c.schemas))
	c.mux.Handle("GET "+Prefix+"schemas/check", c.guard(c.schemaCheck))
	c.mux.Handle("GET "+Prefix+"schemas/{subject}", c.guard(c.subject))
	c.mux.Handle("GET "+Prefix+"services", c.guard(c.services))
	c.mux.Handle("GET "+Prefix+"services/charts", c.guard(c.charts))
}

func cacheStatic(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}

// ServeHTTP serves the console under [Prefix].
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Pages need nothing from elsewhere: say so to the browser.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if c.cfg.Verify == nil && !localHost(r.Host) {
		// Open console: only a host that names an address, so a web page
		// cannot reach it through a DNS name rebound to 127.0.0.1.
		http.Error(w, "the console without authentication answers only to an IP address or localhost as Host", http.StatusMisdirectedRequest)
		return
	}
	c.mux.ServeHTTP(w, r)
}

func localHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	return host == "localhost" || net.ParseIP(host) != nil
}

const cookieName = "herald_console_token"

// session is who a request is, and its CSRF token.
type session struct {
	Principal auth.Principal
	Open      bool // authentication is off
	CSRF      string
}

type sessionKey struct{}

// guard authenticates a page: an operator's bearer token or the login
// cookie, unless the console is open.
func (c *Console) guard(h func(http.ResponseWriter, *http.Request, *session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.cfg.Verify == nil {
			h(w, r, &session{Open: true, CSRF: c.csrf("open")})
			return
		}
		token := ""
		if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
			token = strings.TrimPrefix(a, "Bearer ")
		} else if ck, err := r.Cookie(cookieName); err == nil {
			token = ck.Value
		}
		if token == "" {
			w.WriteHeader(http.StatusUnauthorized)
			c.render(w, r, "login", &session{}, map[string]any{"Title": "Sign in"})
			return
		}
		p, err := c.cfg.Verify(r.Context(), token)
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			c.render(w, r, "login", &session{}, map[string]any{"Title": "Sign in", "Error": "the token does not verify: " + err.Error()})
			return
		}
		if !p.Has(auth.RoleOperator) {
			http.Error(w, "the console is for operators: this token has no operator role", http.StatusForbidden)
			return
		}
		h(w, r, &session{Principal: p, CSRF: c.csrf(token)})
	})
}

// csrf is the form token of a session: an HMAC of its credential under a
// key of this process, which a page of another origin cannot read.
func (c *Console) csrf(credential string) string {
	m := hmac.New(sha256.New, c.csrfKey)
	m.Write([]byte(credential))
	return hex.EncodeToString(m.Sum(nil))
}

// sameOrigin refuses a write whose browser says it comes from another site.
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		o = strings.TrimPrefix(strings.TrimPrefix(o, "http://"), "https://")
		return o == r.Host
	}
	return true
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Verify == nil {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	if !sameOrigin(r) {
		http.Error(w, "cross-site request refused", http.StatusForbidden)
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	p, err := c.cfg.Verify(r.Context(), token)
	if err != nil || !p.Has(auth.RoleOperator) {
		msg := "this token has no operator role"
		if err != nil {
			msg = "the token does not verify: " + err.Error()
		}
		w.WriteHeader(http.StatusUnauthorized)
		c.render(w, r, "login", &session{}, map[string]any{"Title": "Sign in", "Error": msg})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: token, Path: Prefix, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-site request refused", http.StatusForbidden)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: Prefix, MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

// render executes a page (or, with a "fragment" template, only that).
func (c *Console) render(w http.ResponseWriter, r *http.Request, page string, s *session, data map[string]any) {
	t := c.pages[page]
	if t == nil {
		http.Error(w, "no page "+page, http.StatusInternalServerError)
		return
	}
	data["Session"] = s
	data["Page"] = page
	data["Prefix"] = Prefix
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	name := "layout.html"
	if f, _ := data["Fragment"].(string); f != "" {
		name = f
	}
	if err := t.ExecuteTemplate(w, name, data); err != nil {
		c.log.Warn("console: render", "page", page, "err", err)
	}
}

func (c *Console) home(w http.ResponseWriter, r *http.Request, s *session) {
	http.Redirect(w, r, Prefix+"orders", http.StatusSeeOther)
}

// operatorContext is the context of an in-process call to a service: the
// console acts as an operator (it checked the caller is one, or auth is off).
func operatorContext(ctx context.Context, s *session) context.Context {
	p := s.Principal
	if s.Open {
		p = auth.Principal{Subject: "console", Roles: []auth.Role{auth.RoleOperator}}
	}
	return auth.NewContext(ctx, p)
}

func fmtDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + fmtDuration(-d)
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

// protoName is the full name of a message, or "".
func protoName(m proto.Message) string {
	if m == nil {
		return ""
	}
	return string(m.ProtoReflect().Descriptor().FullName())
}
