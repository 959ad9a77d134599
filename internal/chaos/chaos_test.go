package chaos_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	"github.com/herald-events/herald/internal/heraldtest"
	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/event"
)

// profile sizes a chaos run.
type profile struct {
	orders      int           // orders herald bench places
	rate        int           // orders per second
	concurrency int           // bench workers
	minFaults   int           // faults the run must reach while bench runs
	inventories int           // inventory processes (one consumer group)
	follow      time.Duration // bench's wait for final states after the last accept
	settle      time.Duration // wait for outboxes and lag to drain afterwards
}

// profileFor returns a named profile. Every profile first injects each
// kind of fault once, so even the shortest run sees them all.
func profileFor(name string) (profile, bool) {
	switch name {
	case "short": // CI: about 4 minutes when the platform recovers
		return profile{orders: 3600, rate: 40, concurrency: 8, minFaults: len(faultKinds), inventories: 1,
			follow: 2 * time.Minute, settle: time.Minute}, true
	case "pair": // short, with two inventory instances sharing the consumer group
		return profile{orders: 3600, rate: 40, concurrency: 8, minFaults: len(faultKinds), inventories: 2,
			follow: 2 * time.Minute, settle: time.Minute}, true
	case "long": // make chaos
		return profile{orders: 20000, rate: 40, concurrency: 16, minFaults: 30, inventories: 2,
			follow: 5 * time.Minute, settle: 5 * time.Minute}, true
	}
	return profile{}, false
}

// The SKUs of a run and their stock at the start: two plentiful, one that
// runs out during the run, one never in stock.
func initialStock() map[string]int64 {
	return map[string]int64{"APPLE": 1_000_000, "PEAR": 1_000_000, "FIG": 400, "DURIAN": 0}
}

const skuMix = "APPLE=6,PEAR=3,FIG=2,DURIAN=1"

func TestChaos(t *testing.T) {
	name := os.Getenv("HERALD_CHAOS")
	if name == "" {
		t.Skip("chaos suite off: set HERALD_CHAOS=short|long with the real stack running (make chaos)")
	}
	prof, ok := profileFor(name)
	if !ok {
		t.Fatalf("HERALD_CHAOS=%q: want short, pair or long", name)
	}
	env := realEnv(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HERALD_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("HERALD_CHAOS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("chaos profile %s, seed %d (replay the schedule with HERALD_CHAOS_SEED=%d)", name, seed, seed)

	ns := fmt.Sprintf("chaos%x", time.Now().UnixNano()&0xffffffffff)
	regs, err := server.RegisterSchemas(server.RegistryConfig{URL: env.registry}, "", ns)
	if err != nil {
		t.Fatalf("register schemas: %v", err)
	}
	c := &cluster{t: t, bin: heraldtest.Build(t), ns: ns, env: env, svcs: map[string]*svc{}, registered: regs}
	// A failed run says where Kafka stands: a partition whose last stable
	// offset lags its end is held by an open transaction.
	defer func() {
		if t.Failed() {
			c.logOpenTransactions()
		}
	}()
	c.instanceIDs = supportsFlag(t, c.bin, "instance-id")
	t.Logf("herald serve --instance-id: supported %v", c.instanceIDs)
	c.add("orders", "orders")
	for i := range prof.inventories {
		name := "inventory"
		if prof.inventories > 1 {
			name = fmt.Sprintf("inventory-%d", i+1)
		}
		c.add(name, "inventory")
	}
	c.add("subscribers", "notification,points")
	for _, s := range c.order() {
		c.start(s)
	}

	stock := initialStock()
	c.setStock(stock)
	healed := sync.OnceValue(c.healHanging())
	defer healed()

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	bench := c.startBench(ctx, prof, seed)

	rng := rand.New(rand.NewPCG(seed, 0x6865726c64))
	// Faults happen while bench places orders; the follow phase after it
	// lets the last one heal.
	tr := c.newTracker()
	c.warnAsyncCommit(tr)
	issuing := time.Duration(prof.orders/prof.rate) * time.Second
	faults := c.chaos(rng, tr, bench.done, issuing, prof.minFaults)
	sum := bench.wait(t)
	t.Logf("bench: %d accepted, %d completed %v, %d not completed; %.1f accepted/s; %d retries %v; accept→final p50 %.0fms p99 %.0fms max %.0fms",
		sum.Accepted, sum.Completed, sum.ByStatus, sum.NotCompleted, sum.AcceptedPerSec, sum.Retries, sum.Errors,
		sum.Final.P50, sum.Final.P99, sum.Final.Max)
	if faults < prof.minFaults {
		t.Errorf("only %d faults happened while bench ran; the profile wants at least %d", faults, prof.minFaults)
	}
	if missing := missingKinds(tr.kindsSeen()); len(missing) > 0 {
		t.Errorf("the run injected no fault of kind %s", strings.Join(missing, ", "))
	}
	c.checkAlive()

	// Afterwards: outboxes drain and consumers catch up, then every
	// invariant holds.
	inv := c.settle(prof.settle)
	if n := healed(); n > 0 {
		t.Logf("healed %d hanging transaction(s) during the run: their markers were lost at a broker restart (docs/reliability.md, \"Broker restart\")", n)
	}
	stuck := tr.close()
	t.Logf("time to recover per fault kind (for docs/reliability.md):\n\n%s", tr.report(name, seed, prof.inventories))
	if c.reregistered > 0 {
		t.Logf("the registry came back empty %d times and the suite registered the schemas again (%d times with different ids)", c.reregistered, c.drifted)
	}
	c.checkInvariants(inv, sum, stock, prof)
	// Every fault of a chaos run is a dependency's fault or a process kill:
	// none may send a message to a dead-letter topic.
	c.checkNoDeadLetters()
	tr.checkFinalAfterLast(stuck)
	if n := c.unexpectedExits(); n > 0 {
		t.Errorf("%d process exits that were not kills (see the log above)", n)
	}
}

// supportsFlag tells whether `herald serve` has --name (so the suite runs
// before and after a flag is added).
func supportsFlag(t *testing.T, bin, name string) bool {
	t.Helper()
	out, _ := exec.Command(bin, "serve", "-h").CombinedOutput() // -h exits non-zero
	return strings.Contains(string(out), "-"+name+" ") || strings.Contains(string(out), "-"+name+"\n")
}

// stackEnv is the real infrastructure from the environment, and the
// scripts that run it (scripts/infra, with the caller's HERALD_INFRA_*
// variables, so the faults hit the stack the suite runs on).
type stackEnv struct {
	brokers    []string
	registry   string
	database   string
	kafkaSh    string
	postgresSh string
	apicurioSh string
}

func realEnv(t *testing.T) stackEnv {
	t.Helper()
	e := stackEnv{
		registry: os.Getenv("HERALD_SCHEMA_REGISTRY_URL"),
		database: os.Getenv("HERALD_DATABASE_URL"),
	}
	if b := os.Getenv("HERALD_KAFKA_BROKERS"); b != "" {
		e.brokers = strings.Split(b, ",")
	}
	if len(e.brokers) == 0 || e.registry == "" || !strings.HasPrefix(e.database, "postgres") {
		t.Fatal("the chaos suite needs the real stack: eval \"$(scripts/infra/up.sh)\" (HERALD_KAFKA_BROKERS, HERALD_SCHEMA_REGISTRY_URL, HERALD_DATABASE_URL=postgres://...)")
	}
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "infra")
	e.kafkaSh, e.postgresSh, e.apicurioSh = filepath.Join(dir, "kafka.sh"), filepath.Join(dir, "postgres.sh"), filepath.Join(dir, "apicurio.sh")
	for _, p := range []string{e.kafkaSh, e.postgresSh, e.apicurioSh} {
		if _, err := os.Stat(p); err != nil {
			t.Fatal(err)
		}
	}
	// The scripts find the stack by their defaults or HERALD_INFRA_*; make
	// sure that is the stack of HERALD_KAFKA_BROKERS etc.
	out, err := exec.Command("bash", e.kafkaSh, "env").Output()
	if err != nil {
		t.Fatalf("kafka.sh env: %v", err)
	}
	if want := "HERALD_KAFKA_BROKERS=" + strings.Join(e.brokers, ","); !strings.Contains(string(out), want) {
		t.Fatalf("kafka.sh acts on another broker than HERALD_KAFKA_BROKERS (%s): set the same HERALD_INFRA_* variables as when the stack was started\n%s", want, out)
	}
	return e
}

// svc is one supervised `herald serve` process.
type svc struct {
	name     string
	services string
	grpcAddr string
	httpAddr string
	proc     *heraldtest.Proc
	conn     *grpc.ClientConn
}

// cluster runs and kills the processes of a chaos run.
type cluster struct {
	t    *testing.T
	bin  string
	ns   string
	env  stackEnv
	mu   sync.Mutex
	svcs map[string]*svc
	// unexpected counts processes that ended without being killed.
	unexpected int
	// instanceIDs: herald serve takes --instance-id; each process gets
	// its name, kept across restarts.
	instanceIDs bool
	// asyncCommit: PostgreSQL acknowledges commits before their WAL is
	// written (synchronous_commit=off), so a SIGKILL can lose them.
	asyncCommit bool
	// registered is the run's schemas as first registered; reregistered
	// and drifted count the registry restarts that lost them, and those
	// after which they came back with other ids.
	registered            []server.Registration
	reregistered, drifted int
	names                 []string // processes in start order
}

func (c *cluster) add(name, services string) {
	c.svcs[name] = &svc{name: name, services: services, grpcAddr: freeAddr(c.t), httpAddr: freeAddr(c.t)}
	c.names = append(c.names, name)
}

// order lists the processes in start order.
func (c *cluster) order() []*svc {
	out := make([]*svc, 0, len(c.names))
	for _, n := range c.names {
		out = append(out, c.svcs[n])
	}
	return out
}

// inventories lists the inventory processes.
func (c *cluster) inventories() []*svc {
	var out []*svc
	for _, s := range c.order() {
		if s.services == "inventory" {
			out = append(out, s)
		}
	}
	return out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start launches s, retrying while the process cannot start (for example
// because the broker is down: a process pings Kafka before it serves), as a
// supervisor would.
func (c *cluster) start(s *svc) {
	t := c.t
	t.Helper()
	args := []string{"serve", "--services=" + s.services, "--grpc-addr=" + s.grpcAddr, "--http-addr=" + s.httpAddr,
		"--shutdown-grace=2s"}
	if c.instanceIDs {
		args = append(args, "--instance-id="+s.name)
	}
	env := []string{
		"HERALD_INSECURE_NO_AUTH=true", // the chaos suite calls without credentials on 127.0.0.1
		"HERALD_KAFKA_BROKERS=" + strings.Join(c.env.brokers, ","),
		"HERALD_SCHEMA_REGISTRY_URL=" + c.env.registry,
		"HERALD_DATABASE_URL=" + c.env.database,
		"HERALD_NAMESPACE=" + c.ns,
	}
	var lastErr error
	for attempt := range 30 {
		p, err := heraldtest.Launch(t, c.bin, args, env...)
		if err == nil {
			c.mu.Lock()
			s.proc = p
			c.mu.Unlock()
			if s.conn == nil {
				if s.conn, err = grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.conn.Close() })
			}
			return
		}
		lastErr = err
		t.Logf("start %s (attempt %d) failed: %s", s.name, attempt+1, firstLine(err.Error()))
		time.Sleep(time.Second)
	}
	t.Fatalf("%s did not start: %v", s.name, lastErr)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// checkAlive restarts any process that ended without being killed, and
// counts it: a supervisor would restart it, but herald should not need one
// to survive a broker or peer crash.
func (c *cluster) checkAlive() {
	for _, s := range c.order() {
		select {
		case <-s.proc.Exited():
			out := s.proc.Output()
			lines := strings.Split(out, "\n")
			c.t.Errorf("%s exited on its own (%v); last lines:\n%s", s.name, s.proc.ExitErr(),
				strings.Join(lines[max(0, len(lines)-15):], "\n"))
			c.mu.Lock()
			c.unexpected++
			c.mu.Unlock()
			c.start(s)
		default:
		}
	}
}

func (c *cluster) unexpectedExits() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unexpected
}

func (c *cluster) setStock(stock map[string]int64) {
	cl := inventoryv1.NewInventoryServiceClient(c.inventories()[0].conn)
	for sku, q := range stock {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := cl.SetStock(ctx, &inventoryv1.SetStockRequest{Sku: sku, Quantity: q})
		cancel()
		if err != nil {
			c.t.Fatalf("SetStock %s: %v", sku, err)
		}
	}
}

// chaos injects faults in a seeded random order and rhythm for the given
// time and at least minFaults of them (or until bench ends), and returns
// how many happened. The first
// round hits each kind once, in random order; after it the kinds are drawn
// by weight (see faultKinds).
func (c *cluster) chaos(rng *rand.Rand, tr *tracker, benchDone <-chan struct{}, limit time.Duration, minFaults int) int {
	t := c.t
	first := make([]faultKind, len(faultKinds))
	for i, k := range faultKinds {
		first[i] = k.kind
	}
	rng.Shuffle(len(first), func(i, j int) { first[i], first[j] = first[j], first[i] })
	began := time.Now()
	n := 0
	defer func() {
		seen := tr.kindsSeen()
		var per []string
		for _, k := range faultKinds {
			per = append(per, fmt.Sprintf("%s %d", k.kind, seen[k.kind]))
		}
		t.Logf("%d faults in %.0fs: %s", n, time.Since(began).Seconds(), strings.Join(per, ", "))
	}()
	for {
		pause := time.Duration(500+rng.IntN(2500)) * time.Millisecond
		u := rng.Float64()
		kind := pickKind(rng)
		if n < len(first) {
			kind = first[n]
		}
		select {
		case <-benchDone:
			return n
		case <-time.After(pause):
		}
		// The time is up once bench has placed its orders, but not before
		// the profile's faults (each kind at least once) have happened: a
		// slow restart of the broker or the registry can take a minute on a
		// busy machine.
		if time.Since(began) > limit && n >= minFaults {
			return n
		}
		c.checkAlive()
		n++
		f := &fault{n: n, kind: kind, down: downtime(kind, u)}
		tr.begin(f)
		t.Logf("fault %d at +%.1fs: %s (down %s)", n, time.Since(began).Seconds(), kind, f.down.Round(time.Millisecond))
		c.inject(f, rng)
		tr.end(f)
		t.Logf("fault %d: %s back at +%.1fs", n, f.target, time.Since(began).Seconds())
	}
}

// benchRun is a running `herald bench`.
type benchRun struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	done   chan struct{}
	err    error
}

// benchRetryFor is how long the bench retries one order.
const benchRetryFor = 3 * time.Minute

func (c *cluster) startBench(ctx context.Context, prof profile, seed uint64) *benchRun {
	t := c.t
	b := &benchRun{done: make(chan struct{})}
	b.cmd = exec.CommandContext(ctx, c.bin, "bench",
		"--target="+c.svcs["orders"].grpcAddr,
		"--orders="+strconv.Itoa(prof.orders),
		"--rate="+strconv.Itoa(prof.rate),
		"--concurrency="+strconv.Itoa(prof.concurrency),
		"--skus="+skuMix,
		"--out-of-stock=DURIAN",
		"--no-stock-setup",                    // the suite sets the stock it checks against
		"--retry-for="+benchRetryFor.String(), // a restart waits for the broker when it is down too
		// Placing ends at the latest this long after the start: a saga
		// that stalls for good fills the orders door (its pending limit),
		// every later order would be retried for benchRetryFor, and the
		// run would outlast the test's timeout instead of failing with
		// its report.
		"--duration="+(time.Duration(prof.orders/prof.rate)*time.Second+benchRetryFor).String(),
		"--follow-timeout="+prof.follow.String(),
		"--log-level=warn",
		"--seed="+strconv.FormatUint(seed, 10),
		"--json")
	b.cmd.Stdout = &b.stdout
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for n := 0; sc.Scan(); n++ {
			if n%5 == 0 { // a progress line every few seconds is enough
				t.Log("bench: " + sc.Text())
			}
		}
		b.err = b.cmd.Wait()
		close(b.done)
	}()
	return b
}

// benchSummary is the part of `herald bench --json` the suite reads.
type benchSummary struct {
	Accepted       int            `json:"accepted"`
	NotAccepted    int            `json:"not_accepted"`
	Completed      int            `json:"completed"`
	NotCompleted   int            `json:"not_completed"`
	ByStatus       map[string]int `json:"by_status"`
	AcceptedPerSec float64        `json:"accepted_per_s"`
	Retries        int            `json:"retries"`
	Errors         map[string]int `json:"errors"`
	Final          struct {
		P50 float64 `json:"p50_ms"`
		P99 float64 `json:"p99_ms"`
		Max float64 `json:"max_ms"`
	} `json:"final_latency"`
}

func (b *benchRun) wait(t *testing.T) benchSummary {
	t.Helper()
	<-b.done
	var sum benchSummary
	if err := json.Unmarshal(b.stdout.Bytes(), &sum); err != nil {
		t.Fatalf("bench output is not its JSON summary (%v, exit %v):\n%s", err, b.err, b.stdout.String())
	}
	if b.err != nil {
		t.Errorf("herald bench: %v", b.err)
	}
	return sum
}

func topic(ns, name string) string { return event.Namespaced(ns, name) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
