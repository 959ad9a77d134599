package chaos_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/sqldb"
	orderdomain "github.com/herald-events/herald/services/orders/domain"
)

// pollEvery is how often the tracker reads the pending orders: the
// resolution of every time to recover the suite reports.
const pollEvery = 250 * time.Millisecond

// finalWithin is how soon after the last fault every order accepted before
// it must be final (issue #11).
const finalWithin = 15 * time.Second

// tracker polls the orders database during a run, to measure per fault the
// time from its end until every order accepted before that end is final.
// Orders are told apart by their sequence number (orders.seq), which grows
// with every order accepted.
type tracker struct {
	t    *testing.T
	db   *sqldb.DB
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	polls    []time.Time // when each successful poll began
	watching []*watch
	faults   []*fault
}

// watch follows the orders accepted before a fault ended.
type watch struct {
	f         *fault
	firstPoll int           // the first poll after the fault's end was read
	lastSeen  map[int64]int // seq ≤ f.endSeq → last poll that saw it pending (firstPoll-1: seen at the end)
}

func (c *cluster) newTracker() *tracker {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tr := &tracker{t: c.t, db: c.db(ctx, "orders"), stop: make(chan struct{}), done: make(chan struct{})}
	go tr.run()
	return tr
}

func (tr *tracker) run() {
	defer close(tr.done)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		select {
		case <-tr.stop:
			return
		case <-tick.C:
		}
		began := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		seqs, err := tr.pending(ctx)
		cancel()
		if err != nil {
			continue // the database is down: a fault, no result
		}
		tr.record(began, seqs)
	}
}

func (tr *tracker) record(at time.Time, pending []int64) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	idx := len(tr.polls)
	tr.polls = append(tr.polls, at)
	for _, w := range tr.watching {
		for _, seq := range pending {
			if seq > w.f.endSeq {
				break
			}
			w.lastSeen[seq] = idx
		}
	}
}

// pending returns the sequence numbers of the orders not final, ascending.
func (tr *tracker) pending(ctx context.Context) ([]int64, error) {
	rows, err := tr.db.QueryContext(ctx, `SELECT seq FROM orders WHERE status = ? ORDER BY seq`, int(orderdomain.StatusPending))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			return nil, err
		}
		out = append(out, seq)
	}
	return out, rows.Err()
}

// snapshot reads the highest order seq and the pending orders, retrying
// for a while (the database may just have come back).
func (tr *tracker) snapshot() (int64, []int64) {
	t := tr.t
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var top int64
		err := tr.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM orders`).Scan(&top)
		var pending []int64
		if err == nil {
			pending, err = tr.pending(ctx)
		}
		cancel()
		if err == nil {
			return top, pending
		}
		if time.Now().After(deadline) {
			t.Fatalf("read the orders in flight: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// begin records the orders in flight as f starts.
func (tr *tracker) begin(f *fault) {
	f.startSeq, f.pendingAtStart = tr.snapshot()
	f.start = time.Now()
}

// end records the end of f and starts following the orders accepted
// before it.
func (tr *tracker) end(f *fault) {
	f.end = time.Now()
	var pending []int64
	f.endSeq, pending = tr.snapshot()
	w := &watch{f: f, lastSeen: map[int64]int{}}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	w.firstPoll = len(tr.polls)
	for _, seq := range pending {
		if seq <= f.endSeq {
			w.lastSeen[seq] = w.firstPoll - 1
		}
	}
	tr.watching = append(tr.watching, w)
	tr.faults = append(tr.faults, f)
}

// close stops polling and works out, per fault, the orders it affected,
// those still pending at the end of the run (stuck) and when the others
// were all final. It returns the orders still pending.
func (tr *tracker) close() []int64 {
	t := tr.t
	t.Helper()
	close(tr.stop)
	<-tr.done
	defer tr.db.Close()
	_, final := tr.snapshot()
	tr.record(time.Now(), final)
	stuck := map[int64]bool{}
	for _, seq := range final {
		stuck[seq] = true
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, w := range tr.watching {
		f := w.f
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var during int
		err := tr.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM orders WHERE seq > ? AND seq <= ?`, f.startSeq, f.endSeq).Scan(&during)
		cancel()
		if err != nil {
			t.Errorf("count the orders accepted during fault %d: %v", f.n, err)
		}
		f.affected = len(f.pendingAtStart) + during
		f.stuck = map[int64]bool{}
		for _, seq := range f.pendingAtStart {
			if stuck[seq] {
				f.stuck[seq] = true
			}
		}
		for seq := range stuck {
			if seq > f.startSeq && seq <= f.endSeq {
				f.stuck[seq] = true
			}
		}
		if at := recoveryPoll(w.firstPoll, w.lastSeen, stuck); at < len(tr.polls) {
			f.recovered = tr.polls[at]
		}
	}
	return final
}

// recoveryPoll returns the index of the poll at which a fault's orders were
// all seen final: the first poll after the last one that saw one of them
// pending, leaving out those still pending at the end of the run (stuck),
// and no earlier than firstPoll, the first poll after the fault ended.
func recoveryPoll(firstPoll int, lastSeen map[int64]int, stuck map[int64]bool) int {
	at := firstPoll
	for seq, idx := range lastSeen {
		if !stuck[seq] && idx+1 > at {
			at = idx + 1
		}
	}
	return at
}

// report logs one line per fault and returns the per-kind table, in
// Markdown for docs/reliability.md.
func (tr *tracker) report(profile string, seed uint64, inventories int) string {
	t := tr.t
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for i, f := range tr.faults {
		rec := "never (within the run)"
		if d, ok := f.recovery(); ok {
			rec = d.Round(10 * time.Millisecond).String()
			if i+1 < len(tr.faults) && f.recovered.After(tr.faults[i+1].start) {
				rec += " (after the next fault began)"
			}
		}
		line := fmt.Sprintf("fault %d %s (%s, down %s, %.1fs to serve again): %d orders in flight, all final %s after its end",
			f.n, f.kind, f.target, f.down.Round(10*time.Millisecond), f.end.Sub(f.start).Seconds(), f.affected, rec)
		if len(f.stuck) > 0 {
			line += fmt.Sprintf(", %d never final", len(f.stuck))
		}
		if f.note != "" {
			line += "; " + f.note
		}
		t.Log(line)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Chaos profile %s, seed %d, %d inventory instance(s), %d faults. Time to recover: from the end of the fault (the target serves again) to the first moment every order accepted before that end is final (polled every %s; orders that never became final are left out and counted apart, once per kind). Lasted: from the fault's start until its target serves again. Orders affected: orders in flight during the fault (pending at its start, or accepted before its end).\n\n",
		profile, seed, inventories, len(tr.faults), pollEvery)
	b.WriteString("| Fault | Count | Lasted, mean | Time to recover, mean | max | Orders affected, mean | max | Never final |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, k := range faultKinds {
		var n, recovered, affected, maxAffected int
		never := map[int64]bool{} // an order in flight during several faults counts once
		var sum, longest, lasted time.Duration
		for _, f := range tr.faults {
			if f.kind != k.kind {
				continue
			}
			n++
			lasted += f.end.Sub(f.start)
			affected += f.affected
			maxAffected = max(maxAffected, f.affected)
			maps.Copy(never, f.stuck)
			if d, ok := f.recovery(); ok {
				recovered++
				sum += d
				longest = max(longest, d)
			}
		}
		if n == 0 {
			fmt.Fprintf(&b, "| %s | 0 | – | – | – | – | – | – |\n", k.kind)
			continue
		}
		mean := "–"
		if recovered > 0 {
			mean = seconds(sum / time.Duration(recovered))
		}
		maxRec := seconds(longest)
		if recovered < n {
			maxRec = fmt.Sprintf("not recovered in %d of %d", n-recovered, n)
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %d | %d | %d |\n", k.kind, n, seconds(lasted/time.Duration(n)), mean, maxRec, affected/n, maxAffected, len(never))
	}
	return b.String()
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// last returns the last fault, or nil.
func (tr *tracker) last() *fault {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.faults) == 0 {
		return nil
	}
	return tr.faults[len(tr.faults)-1]
}

// checkFinalAfterLast checks that every order accepted before the last fault
// ended was final within finalWithin of that end.
func (tr *tracker) checkFinalAfterLast(stuck []int64) {
	t := tr.t
	t.Helper()
	f := tr.last()
	if f == nil {
		t.Error("no fault happened")
		return
	}
	never := 0
	for _, seq := range stuck {
		if seq <= f.endSeq {
			never++
		}
	}
	d, ok := f.recovery()
	switch {
	case never > 0:
		t.Errorf("final within %s of the last fault (%d, %s): %d orders accepted before it ended are still pending", finalWithin, f.n, f.kind, never)
	case !ok:
		t.Errorf("final within %s of the last fault (%d, %s): not all final by the end of the run", finalWithin, f.n, f.kind)
	case d > finalWithin:
		t.Errorf("final within %s of the last fault (%d, %s): every order accepted before it was final only %s after it ended", finalWithin, f.n, f.kind, d.Round(10*time.Millisecond))
	default:
		t.Logf("every order accepted before the last fault (%d, %s) ended was final %s after it ✓", f.n, f.kind, d.Round(10*time.Millisecond))
	}
}

// kindsSeen counts the faults per kind.
func (tr *tracker) kindsSeen() map[faultKind]int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := map[faultKind]int{}
	for _, f := range tr.faults {
		out[f.kind]++
	}
	return out
}

// missingKinds lists the kinds a run did not inject.
func missingKinds(seen map[faultKind]int) []string {
	var out []string
	for _, k := range faultKinds {
		if seen[k.kind] == 0 {
			out = append(out, string(k.kind))
		}
	}
	slices.Sort(out)
	return out
}
