package chaos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/herald-events/herald/internal/server"
)

// faultKind is one kind of fault the suite injects.
type faultKind string

const (
	killOrders      faultKind = "orders killed"
	killInventory   faultKind = "inventory killed"
	killKafka       faultKind = "Kafka killed"
	pauseKafka      faultKind = "Kafka paused"
	stopPostgres    faultKind = "PostgreSQL stopped"
	killPostgres    faultKind = "PostgreSQL killed"
	restartRegistry faultKind = "registry restarted"
)

// faultKinds lists every kind in the order of the report, with its weight
// in the random choice after the first round (which hits each kind once).
// Restarts of Kafka and of the registry cost the most wall time; process
// kills are cheap and stay the most frequent.
var faultKinds = []struct {
	kind   faultKind
	weight int
}{
	{killOrders, 3},
	{killInventory, 3},
	{killKafka, 1},
	{pauseKafka, 2},
	{stopPostgres, 2},
	{killPostgres, 1},
	{restartRegistry, 1},
}

// downtime is how long a fault of kind lasts before the suite ends it,
// from u in [0, 1).
func downtime(kind faultKind, u float64) time.Duration {
	span := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(u*float64(hi-lo)) }
	switch kind {
	case pauseKafka:
		return span(2*time.Second, 6*time.Second) // a network pause of a few seconds
	case stopPostgres:
		return span(2*time.Second, 8*time.Second) // a database down for a few seconds
	case restartRegistry:
		return span(0, 3*time.Second) // on top of the registry's own start time
	default:
		return span(0, 2*time.Second) // a crash and a supervisor's restart
	}
}

// isInfra tells a dependency's fault from a kill of a herald process.
func isInfra(kind faultKind) bool { return kind != killOrders && kind != killInventory }

// pickKind chooses a kind by weight.
func pickKind(rng *rand.Rand) faultKind {
	total := 0
	for _, k := range faultKinds {
		total += k.weight
	}
	n := rng.IntN(total)
	for _, k := range faultKinds {
		if n < k.weight {
			return k.kind
		}
		n -= k.weight
	}
	return faultKinds[len(faultKinds)-1].kind // not reached: n < total
}

// fault is one injected fault and what it did to the orders in flight.
type fault struct {
	n      int
	kind   faultKind
	target string // the process or program hit
	down   time.Duration
	start  time.Time // the fault began
	end    time.Time // the target serves again
	// Orders: the highest order sequence number when the fault began and
	// when it ended, and the orders pending when it began. The orders in
	// flight during the fault are those pending at its start plus those
	// accepted until its end.
	startSeq, endSeq int64
	pendingAtStart   []int64
	// recovered is when every order accepted before end was seen final,
	// leaving out the orders still pending when the run ended (stuck);
	// zero if never.
	recovered time.Time
	stuck     map[int64]bool // orders in flight during the fault still pending at the end of the run
	affected  int            // orders in flight during the fault
	note      string
}

func (f *fault) recovery() (time.Duration, bool) {
	if f.recovered.IsZero() {
		return 0, false
	}
	return max(0, f.recovered.Sub(f.end)), true
}

// inject runs one fault of kind, from its start to the moment its target
// serves again.
func (c *cluster) inject(f *fault, rng *rand.Rand) {
	t := c.t
	t.Helper()
	switch f.kind {
	case killOrders, killInventory:
		var s *svc
		if f.kind == killOrders {
			s = c.svcs["orders"]
		} else {
			invs := c.inventories()
			s = invs[rng.IntN(len(invs))]
		}
		f.target = s.name
		s.proc.Kill(t)
		time.Sleep(f.down)
		c.start(s)
	case killKafka:
		f.target = "kafka"
		c.script(c.env.kafkaSh, "kill")
		time.Sleep(f.down)
		c.restart(c.env.kafkaSh)
	case pauseKafka:
		f.target = "kafka"
		c.script(c.env.kafkaSh, "pause")
		time.Sleep(f.down)
		c.script(c.env.kafkaSh, "resume")
	case stopPostgres:
		f.target = "postgres"
		c.script(c.env.postgresSh, "stop") // pg_ctl stop -m fast
		time.Sleep(f.down)
		c.restart(c.env.postgresSh)
	case killPostgres:
		f.target = "postgres"
		c.script(c.env.postgresSh, "kill") // SIGKILL of the postmaster
		time.Sleep(f.down)
		c.restart(c.env.postgresSh) // crash recovery
		if c.asyncCommit {
			f.note = "synchronous_commit=off: commits acknowledged in the last few hundred ms may be lost"
		}
	case restartRegistry:
		f.target = "registry"
		c.script(c.env.apicurioSh, "stop")
		time.Sleep(f.down)
		c.restart(c.env.apicurioSh)
		f.note = c.afterRegistryRestart()
	default:
		t.Fatalf("unknown fault kind %q", f.kind)
	}
}

// afterRegistryRestart checks that the restarted registry still holds the
// run's schemas under the same ids. A registry with in-memory storage comes
// back empty: the suite then registers the schemas again, as an operator
// would (`herald schema register`), and says whether the ids came back the
// same.
func (c *cluster) afterRegistryRestart() string {
	t := c.t
	t.Helper()
	held, err := registrySubjects(c.env.registry)
	if err != nil {
		t.Fatalf("registry after restart: %v", err)
	}
	missing := 0
	for _, r := range c.registered {
		if !slices.Contains(held, r.Subject) {
			missing++
		}
	}
	if missing == 0 {
		return "registry kept its schemas"
	}
	// A registry that has just started may answer its first writes slowly;
	// an operator would try again.
	var regs []server.Registration
	for attempt := 1; ; attempt++ {
		if regs, err = server.RegisterSchemas(server.RegistryConfig{URL: c.env.registry}, "", c.ns); err == nil {
			break
		}
		if attempt == 20 {
			t.Fatalf("register schemas again after the registry restart (%d attempts): %v", attempt, err)
		}
		t.Logf("register schemas again after the registry restart (attempt %d): %v", attempt, err)
		time.Sleep(2 * time.Second)
	}
	c.reregistered++
	var drift []string
	for _, r := range regs {
		for _, was := range c.registered {
			if was.Event == r.Event && was.Subject == r.Subject && was.ID != r.ID {
				drift = append(drift, fmt.Sprintf("%s %d→%d", shortEvent(r.Event), was.ID, r.ID))
			}
		}
	}
	note := fmt.Sprintf("registry came back without %d of %d subjects (in-memory storage): registered again", missing, len(c.registered))
	if len(drift) > 0 {
		c.drifted++
		note += "; ids changed: " + strings.Join(drift, ", ")
	} else {
		note += "; same ids"
	}
	t.Log(note)
	return note
}

func shortEvent(full string) string {
	if i := strings.LastIndexByte(full, '.'); i >= 0 {
		return full[i+1:]
	}
	return full
}

// registrySubjects lists the subjects of a Confluent-API registry.
func registrySubjects(url string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(url, "/")+"/subjects", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("list subjects: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("list subjects: %s", resp.Status)
	}
	var subjects []string
	if err := json.NewDecoder(resp.Body).Decode(&subjects); err != nil {
		return nil, fmt.Errorf("list subjects: %w", err)
	}
	return subjects, nil
}

// restart starts a stopped part of the stack again, trying a few times as
// a supervisor would: its port, in the kernel's ephemeral range for a
// separate stack (39092, 38081, 35432), may for a moment be the local port
// of some client's outgoing connection ("could not bind … Address already
// in use").
func (c *cluster) restart(path string) {
	c.t.Helper()
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		if err = c.run(path, "start"); err == nil {
			return
		}
		c.t.Logf("%s start (attempt %d): %v", filepath.Base(path), attempt, firstLine(err.Error()))
		time.Sleep(2 * time.Second)
	}
	c.t.Fatal(err)
}

// script runs one verb of an infrastructure script (kafka.sh, postgres.sh,
// apicurio.sh) with the suite's environment, so it acts on the stack the
// suite runs on.
func (c *cluster) script(path, verb string) {
	c.t.Helper()
	if err := c.run(path, verb); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) run(path, verb string) error {
	cmd := exec.Command("bash", path, verb)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", path, verb, err, out.String())
	}
	return nil
}

// warnAsyncCommit says when the database runs with synchronous_commit=off:
// a commit is then acknowledged before its WAL is written, and a SIGKILL of
// the postmaster (a fault of the suite) loses the last few hundred
// milliseconds of acknowledged commits. An order CreateOrder accepted can
// then vanish while its OrderPlaced event, relayed in the meantime, is
// processed: the invariants report it as an order the database does not
// hold, stock reserved for an unknown order and a dead letter "order not
// found". That is the database's configuration, not herald's doing.
func (c *cluster) warnAsyncCommit(tr *tracker) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var v string
	if err := tr.db.QueryRowContext(ctx, `SHOW synchronous_commit`).Scan(&v); err != nil {
		c.t.Fatalf("read synchronous_commit: %v", err)
	}
	if c.asyncCommit = v == "off"; c.asyncCommit {
		c.t.Logf("WARNING: PostgreSQL runs with synchronous_commit=off: a kill of the postmaster may lose acknowledged commits, " +
			"which the invariants then report (an accepted order missing, stock reserved for an unknown order, a dead letter \"order not found\"); " +
			"set synchronous_commit=on for a run whose PostgreSQL kills must lose nothing")
	}
}
