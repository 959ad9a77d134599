// Package loadgen places orders on a herald OrderService at a chosen
// concurrency and rate, follows every accepted order to its final state and
// summarises throughput, latencies and errors. It is the engine of
// `herald bench` and is used as a library by the chaos suite.
//
// An order is one line: a SKU drawn by weight from the configured mix, 1–3
// units at EUR 1.50, with the idempotency key "<run id>-<n>". Before the run
// the generator sets the stock of every SKU through
// InventoryService.SetStock: SKUs marked out of stock get 0 (their orders
// are REJECTED), the others get [PlentyStock].
package loadgen

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Method is what each request of the run calls.
type Method string

// Methods.
const (
	// MethodOrder calls OrderService.CreateOrder and follows the order.
	MethodOrder Method = "order"
	// MethodHealth calls grpc.health.v1.Health/Check: a trivial method that
	// measures the ceiling of the tool and gRPC on the machine.
	MethodHealth Method = "health"
)

// FollowMode is how accepted orders are followed to their final state.
type FollowMode string

// Follow modes.
const (
	// FollowList pages through ListOrders of the run's customer, newest
	// first, so that one call sees many pending orders; orders it does not
	// reach fall back to GetOrder at a slower pace.
	FollowList FollowMode = "list"
	// FollowGet calls GetOrder for every pending order each poll.
	FollowGet FollowMode = "get"
)

// PlentyStock is the stock set for SKUs that are not out of stock.
const PlentyStock int64 = 1 << 40

// SKU is one product of the mix.
type SKU struct {
	// Name is the stock keeping unit.
	Name string
	// Weight is the relative share of orders for this SKU; at least 1.
	Weight int
	// OutOfStock sets the SKU's stock to 0 instead of [PlentyStock], so
	// that its orders are REJECTED.
	OutOfStock bool
}

// DefaultSKUs is the mix used when Config.SKUs is empty: APPLE=5, PEAR=3
// and OUTOFSTOCK=1, the last out of stock.
func DefaultSKUs() []SKU {
	return []SKU{{Name: "APPLE", Weight: 5}, {Name: "PEAR", Weight: 3}, {Name: "OUTOFSTOCK", Weight: 1, OutOfStock: true}}
}

// ParseSKUs reads a mix written "NAME=WEIGHT,NAME=WEIGHT"; a weight may be
// left out (1). The SKUs named in outOfStock are marked out of stock; each
// must be in the mix.
func ParseSKUs(mix string, outOfStock []string) ([]SKU, error) {
	var skus []SKU
	seen := map[string]bool{}
	for _, part := range strings.Split(mix, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, weight, hasWeight := strings.Cut(part, "=")
		name = strings.TrimSpace(name)
		w := 1
		if hasWeight {
			n, err := strconv.Atoi(strings.TrimSpace(weight))
			if err != nil || n < 1 {
				return nil, fmt.Errorf("sku %q: weight %q must be a whole number of at least 1", name, weight)
			}
			w = n
		}
		if name == "" {
			return nil, fmt.Errorf("sku entry %q: empty name", part)
		}
		if seen[name] {
			return nil, fmt.Errorf("sku %q: listed twice", name)
		}
		seen[name] = true
		skus = append(skus, SKU{Name: name, Weight: w})
	}
	if len(skus) == 0 {
		return nil, errors.New("no SKUs given")
	}
	for _, name := range outOfStock {
		found := false
		for i := range skus {
			if skus[i].Name == name {
				skus[i].OutOfStock, found = true, true
			}
		}
		if !found {
			return nil, fmt.Errorf("out-of-stock sku %q is not in the mix", name)
		}
	}
	return skus, nil
}

// Config configures a run. The zero value of every field but Target has a
// default, given on the field.
type Config struct {
	// Target is the gRPC address of OrderService (and of Health).
	Target string
	// InventoryTarget is the gRPC address of InventoryService, for the
	// stock set-up. Default: Target.
	InventoryTarget string
	// TLS, when not nil, connects over TLS with this configuration;
	// otherwise the connection is plaintext.
	TLS *tls.Config
	// Token, when not empty, is sent as "authorization: Bearer <Token>" on
	// every call, the health checks included. The run sets the stock with
	// InventoryService.SetStock, an operator's call, so against a herald
	// that checks tokens it must be an operator's. With TLS the token is
	// only sent over TLS; without TLS it is sent in the clear, which is
	// meant for loopback and tests.
	Token string

	// Method is MethodOrder (default) or MethodHealth.
	Method Method
	// Concurrency is how many requests are outstanding at most. Default 8.
	Concurrency int
	// Rate is requests started per second; 0 is open-ended (as fast as
	// Concurrency allows). When the workers fall behind the schedule they
	// catch up without waiting.
	Rate float64
	// Duration stops starting requests after this long; Count stops after
	// this many. Either, both (whichever comes first) or neither (until
	// ctx is done) may be set.
	Duration time.Duration
	Count    int

	// SKUs is the product mix. Default [DefaultSKUs].
	SKUs []SKU
	// SkipStockSetup leaves the stock as it is instead of setting it before
	// the run.
	SkipStockSetup bool
	// Seed makes the SKU and quantity of order n reproducible; 0 picks one
	// (reported in the Summary).
	Seed uint64
	// RunID prefixes the request ids and names the customer
	// ("bench-<run id>"). Default: random. Request ids must not repeat
	// across runs against one database.
	RunID string

	// FollowTimeout is how long to wait, after the last accept, for every
	// accepted order to reach a final state. Default 30s.
	FollowTimeout time.Duration
	// Follow is FollowList (default) or FollowGet.
	Follow FollowMode
	// PollInterval is the pause between polls of the pending orders.
	// Default 10ms.
	PollInterval time.Duration

	// CallTimeout bounds one gRPC call. Default 5s.
	CallTimeout time.Duration
	// RetryFor bounds how long a CreateOrder is retried, with the same
	// request id and exponential backoff, after Unavailable,
	// DeadlineExceeded, Aborted or ResourceExhausted. Default 15s.
	RetryFor time.Duration
	// ProgressEvery is the interval of the progress callback. Default 1s.
	ProgressEvery time.Duration
	// Logger receives debug lines about retries; nil discards them.
	Logger *slog.Logger
}

// Validate reports the first setting that is out of range.
func (c Config) Validate() error {
	var errs []error
	if c.Target == "" {
		errs = append(errs, errors.New("target: required"))
	}
	switch c.Method {
	case "", MethodOrder, MethodHealth:
	default:
		errs = append(errs, fmt.Errorf("method %q: want %q or %q", c.Method, MethodOrder, MethodHealth))
	}
	switch c.Follow {
	case "", FollowList, FollowGet:
	default:
		errs = append(errs, fmt.Errorf("follow %q: want %q or %q", c.Follow, FollowList, FollowGet))
	}
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("concurrency %d: must be at least 1 (0: default)", c.Concurrency))
	}
	if c.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate %g: must be 0 (open-ended) or more", c.Rate))
	}
	if c.Duration < 0 {
		errs = append(errs, fmt.Errorf("duration %s: must not be negative", c.Duration))
	}
	if c.Count < 0 {
		errs = append(errs, fmt.Errorf("count %d: must not be negative", c.Count))
	}
	for name, d := range map[string]time.Duration{
		"follow timeout": c.FollowTimeout, "poll interval": c.PollInterval, "call timeout": c.CallTimeout,
		"retry-for": c.RetryFor, "progress interval": c.ProgressEvery,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %s: must not be negative", name, d))
		}
	}
	seen := map[string]bool{}
	for _, s := range c.SKUs {
		switch {
		case s.Name == "":
			errs = append(errs, errors.New("sku: empty name"))
		case len(s.Name) > 128:
			errs = append(errs, fmt.Errorf("sku %q: at most 128 characters", s.Name))
		case seen[s.Name]:
			errs = append(errs, fmt.Errorf("sku %q: listed twice", s.Name))
		}
		seen[s.Name] = true
		if s.Weight < 1 {
			errs = append(errs, fmt.Errorf("sku %q: weight %d must be at least 1", s.Name, s.Weight))
		}
	}
	if strings.ContainsAny(c.Token, " \t\r\n") {
		errs = append(errs, errors.New("token: must not contain spaces or line breaks"))
	}
	if len(c.RunID) > 100 {
		errs = append(errs, fmt.Errorf("run id %q: at most 100 characters", c.RunID))
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	if c.InventoryTarget == "" {
		c.InventoryTarget = c.Target
	}
	if c.Method == "" {
		c.Method = MethodOrder
	}
	if c.Follow == "" {
		c.Follow = FollowList
	}
	if c.Concurrency == 0 {
		c.Concurrency = 8
	}
	if len(c.SKUs) == 0 {
		c.SKUs = DefaultSKUs()
	}
	if c.FollowTimeout == 0 {
		c.FollowTimeout = 30 * time.Second
	}
	if c.PollInterval == 0 {
		c.PollInterval = 10 * time.Millisecond
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = 5 * time.Second
	}
	if c.RetryFor == 0 {
		c.RetryFor = 15 * time.Second
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
