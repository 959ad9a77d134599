package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herald-events/herald/internal/loadgen"
)

// defaultBenchDuration applies when neither --duration nor --orders is set.
const defaultBenchDuration = 10 * time.Second

// runBench is `herald bench`: place orders on a running herald, follow them
// to their final state and print throughput and latencies.
func runBench(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("herald bench", stderr)
	var (
		cfg                 loadgen.Config
		method, follow, mix string
		outOfStock          []string
		level, caFile       string
		tokenFile           string
		useTLS, asJSON      bool
	)
	fs := f.fs
	fs.StringVar(&cfg.Target, "target", "127.0.0.1:8080", "gRPC address of OrderService (herald dev's --grpc-addr)")
	fs.StringVar(&cfg.InventoryTarget, "inventory-target", "", "gRPC address of InventoryService for the stock set-up (default: --target)")
	fs.StringVar(&method, "method", string(loadgen.MethodOrder), "order: CreateOrder and follow each order; health: grpc.health.v1.Health/Check, the tool's and gRPC's ceiling")
	fs.IntVar(&cfg.Concurrency, "concurrency", 8, "requests outstanding at most")
	fs.Float64Var(&cfg.Rate, "rate", 0, "requests started per second (0: as fast as --concurrency allows)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "stop starting requests after this long (default 10s when --orders is not set either)")
	fs.IntVar(&cfg.Count, "orders", 0, "stop after this many requests")
	fs.StringVar(&mix, "skus", "APPLE=5,PEAR=3,OUTOFSTOCK=1", "SKU mix, NAME=WEIGHT,...")
	fs.Var(listFlag{&outOfStock}, "out-of-stock", "SKUs of the mix whose stock is set to 0, so their orders are REJECTED (default: OUTOFSTOCK if in the mix; none: no SKU)")
	fs.BoolVar(&cfg.SkipStockSetup, "no-stock-setup", false, "leave the stock as it is (by default every SKU gets plenty, the out-of-stock ones 0)")
	fs.DurationVar(&cfg.FollowTimeout, "follow-timeout", 30*time.Second, "how long to wait for final states after the last accept")
	fs.StringVar(&follow, "follow", string(loadgen.FollowList), "how to poll pending orders: list (ListOrders of the run's customer) or get (GetOrder each)")
	fs.DurationVar(&cfg.PollInterval, "poll-interval", 10*time.Millisecond, "pause between polls of the pending orders")
	fs.DurationVar(&cfg.CallTimeout, "call-timeout", 5*time.Second, "timeout of one gRPC call")
	fs.DurationVar(&cfg.RetryFor, "retry-for", 15*time.Second, "how long an order is retried, same request id, after Unavailable and the like")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of the SKU and quantity choices (0: random, printed)")
	fs.StringVar(&cfg.RunID, "run-id", "", "prefix of the request ids (default: random; must not repeat against one database)")
	fs.BoolVar(&asJSON, "json", false, "print the summary as JSON")
	fs.BoolVar(&useTLS, "tls", false, "connect over TLS")
	fs.StringVar(&caFile, "tls-ca", "", "PEM CA bundle to trust (implies --tls)")
	fs.StringVar(&cfg.Token, "token", "", "bearer token sent as \"authorization: Bearer <token>\" on every call, for a herald started with --grpc-jwks; "+
		"the stock set-up calls SetStock, an operator's call, so an operator's token (herald token --role operator). "+
		"Sent only over TLS when --tls is on, in the clear otherwise (loopback, tests). Prefer --token-file or the environment to keep it out of ps")
	fs.StringVar(&tokenFile, "token-file", "", "file holding the bearer token of --token (surrounding blank space ignored)")
	fs.StringVar(&level, "log-level", "warn", "debug (shows retries), info, warn or error")
	if err := f.parse(args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &usageError{err}
	}
	cfg.Method, cfg.Follow = loadgen.Method(method), loadgen.FollowMode(follow)
	if cfg.Duration == 0 && cfg.Count == 0 {
		cfg.Duration = defaultBenchDuration
	}
	if cfg.Concurrency < 1 {
		return &usageError{fmt.Errorf("--concurrency %d: must be at least 1", cfg.Concurrency)}
	}
	for name, d := range map[string]time.Duration{"follow-timeout": cfg.FollowTimeout, "poll-interval": cfg.PollInterval, "call-timeout": cfg.CallTimeout, "retry-for": cfg.RetryFor} {
		if d <= 0 {
			return &usageError{fmt.Errorf("--%s %s: must be positive", name, d)}
		}
	}
	skus, err := benchSKUs(mix, outOfStock)
	if err != nil {
		return &usageError{fmt.Errorf("--skus/--out-of-stock: %w", err)}
	}
	cfg.SKUs = skus
	if cfg.Logger, err = newLogger(stderr, level); err != nil {
		return &usageError{err}
	}
	if useTLS || caFile != "" {
		if cfg.TLS, err = benchTLS(caFile); err != nil {
			return &usageError{err}
		}
	}
	if tokenFile != "" {
		if cfg.Token != "" {
			return &usageError{errors.New("--token (HERALD_TOKEN) and --token-file (HERALD_TOKEN_FILE): give one, not both")}
		}
		if cfg.Token, err = readToken(tokenFile); err != nil {
			return &usageError{err}
		}
	}
	if err := cfg.Validate(); err != nil {
		return &usageError{err}
	}

	s, runErr := loadgen.Run(ctx, cfg, func(p loadgen.Snapshot) { printProgress(stderr, cfg.Method, p) })
	if runErr != nil && s.Sent == 0 {
		return fmt.Errorf("bench: %w", runErr)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s); err != nil {
			return fmt.Errorf("bench: write summary: %w", err)
		}
	} else {
		printSummary(stdout, cfg, s)
	}
	switch {
	case runErr != nil:
		return fmt.Errorf("bench: %w", runErr)
	case s.NotCompleted > 0:
		return fmt.Errorf("bench: %d accepted orders did not reach a final state within %s, e.g. %s",
			s.NotCompleted, cfg.FollowTimeout, strings.Join(s.NotCompletedIDs, ", "))
	case s.Sent > 0 && s.Accepted == 0:
		return fmt.Errorf("bench: none of %d requests was accepted (errors %v)", s.Sent, s.Errors)
	}
	return nil
}

// benchSKUs parses the mix; without --out-of-stock, OUTOFSTOCK is out of
// stock when it is in the mix.
func benchSKUs(mix string, outOfStock []string) ([]loadgen.SKU, error) {
	switch {
	case len(outOfStock) == 1 && outOfStock[0] == "none":
		outOfStock = nil
	case len(outOfStock) == 0:
		skus, err := loadgen.ParseSKUs(mix, nil)
		if err != nil {
			return nil, err
		}
		for i := range skus {
			skus[i].OutOfStock = skus[i].Name == "OUTOFSTOCK"
		}
		return skus, nil
	}
	return loadgen.ParseSKUs(mix, outOfStock)
}

// readToken reads a bearer token from a file, without the blank space
// around it.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("--token-file %s: empty", path)
	}
	return tok, nil
}

// benchTLS returns the client TLS configuration, trusting caFile if given.
func benchTLS(caFile string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return c, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-ca: %w", err)
	}
	c.RootCAs = x509.NewCertPool()
	if !c.RootCAs.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", caFile)
	}
	return c, nil
}

func printProgress(w io.Writer, m loadgen.Method, p loadgen.Snapshot) {
	if m == loadgen.MethodHealth {
		fmt.Fprintf(w, "bench %4.0fs: checks %d (%.0f/s), in flight %d, failed %d, shed %d\n",
			p.Elapsed.Seconds(), p.Accepted, p.AcceptRate, p.InFlight, p.NotAccepted, p.Shed)
		return
	}
	fmt.Fprintf(w, "bench %4.0fs: accepted %d (%.0f/s), completed %d (%.0f/s), in flight %d, pending %d, not accepted %d, errors %d, shed %d, retries %d\n",
		p.Elapsed.Seconds(), p.Accepted, p.AcceptRate, p.Completed, p.CompleteRate, p.InFlight, p.Pending, p.NotAccepted, p.Errors, p.Shed, p.Retries)
}

func printSummary(w io.Writer, cfg loadgen.Config, s loadgen.Summary) {
	rate := "open-ended"
	if cfg.Rate > 0 {
		rate = fmt.Sprintf("%g/s", cfg.Rate)
	}
	limit := []string{}
	if cfg.Duration > 0 {
		limit = append(limit, "duration "+cfg.Duration.String())
	}
	if cfg.Count > 0 {
		limit = append(limit, fmt.Sprintf("%d requests", cfg.Count))
	}
	fmt.Fprintf(w, "herald bench: %s on %s, concurrency %d, rate %s, %s, run %s, seed %d\n\n",
		s.Method, s.Target, cfg.Concurrency, rate, strings.Join(limit, " or "), s.RunID, s.Seed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	noun := "orders"
	if s.Method == loadgen.MethodHealth {
		noun = "checks"
	}
	fmt.Fprintf(tw, "%s\tsent %d\taccepted %d\tnot accepted %d\tretries %d\n", noun, s.Sent, s.Accepted, s.NotAccepted, s.Retries)
	if s.Method == loadgen.MethodOrder {
		fmt.Fprintf(tw, "final\tcompleted %d\t%s\tnot completed %d\t\n", s.Completed, counts(s.ByStatus), s.NotCompleted)
	}
	fmt.Fprintf(tw, "throughput\taccepted %.1f/s over %.2fs", s.AcceptedPerSec, s.Issuing.Seconds())
	if s.Method == loadgen.MethodOrder {
		fmt.Fprintf(tw, "\tcompleted %.1f/s over %.2fs", s.CompletedPerSec, s.Following.Seconds())
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "errors\t%s\n", counts(s.Errors))
	fmt.Fprintf(tw, "shed\t%d\t(RESOURCE_EXHAUSTED: refused for load, not in errors)\n", s.Shed)
	if s.Method == loadgen.MethodOrder {
		fmt.Fprintf(tw, "polls\t%d\torders read %d, errors %s\n", s.Polls, s.FollowRows, counts(s.PollErrors))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "latency (ms)\tcount\tmin\tmean\tp50\tp95\tp99\tmax\t")
	row := func(name string, l loadgen.Latency) {
		ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/1e6) }
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, l.Count, ms(l.Min), ms(l.Mean), ms(l.P50), ms(l.P95), ms(l.P99), ms(l.Max))
	}
	row("accept", s.Accept)
	if s.Method == loadgen.MethodOrder {
		row("accept→final", s.Final)
		row("saga (server)", s.Saga)
	}
	tw.Flush()
	if len(s.NotAcceptedIDs) > 0 {
		fmt.Fprintf(w, "\nnot accepted, e.g. request ids: %s\n", strings.Join(s.NotAcceptedIDs, ", "))
	}
	if len(s.NotCompletedIDs) > 0 {
		fmt.Fprintf(w, "\nnot completed, e.g. order ids: %s\n", strings.Join(s.NotCompletedIDs, ", "))
	}
}

// counts writes a map of counts as "A 1, B 2" in key order, or "none".
func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
