package sqldb

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"
)

// maxGroup bounds the calls one shared transaction takes.
const maxGroup = 256

// InTxShared runs fn in a transaction like [DB.InTx], but lets concurrent
// callers share one transaction: while a shared transaction runs, the calls
// that arrive wait, and the next transaction takes all of them at once,
// each rolled back alone if it fails. A call whose fn fails gets its own
// error; the others commit. A commit that fails fails every call of the
// transaction. Nothing waits for a timer: alone, a call starts a
// transaction at once, exactly as InTx would.
//
// The calls of a shared transaction run without savepoints until one
// fails; then the transaction is rolled back and the others run again in
// one where each has a savepoint. So fn may run twice (never again after
// it failed) and must act only through tx and its after-commit hooks, as
// any fn that a retry may run again.
//
// fn gets the shared transaction; after-commit hooks it registers run once
// the transaction commits, and are dropped when its work is rolled back.
// Work it queues with [Tx.Defer] is flushed once for all the calls, before
// the commit; when that flush fails, the calls run again with savepoints,
// each flushing its own work, so that the failure is one call's.
// Inside a transaction that ctx carries, fn joins it as with InTx.
//
// Both dialects share: SQLite has a single writer, and on PostgreSQL each
// commit waits for its WAL flush, so a transaction per call bounded
// throughput. One shared transaction runs at a time per SQLite file; on
// PostgreSQL up to four run side by side (see [DB.SetSharedTransactions]).
func (db *DB) InTxShared(ctx context.Context, fn func(*Tx) error) error {
	if _, ok := db.TxFrom(ctx); ok || db.group == nil {
		return db.InTx(ctx, fn)
	}
	return db.group.do(ctx, fn)
}

// Prelude is work that a call of [DB.InTxSharedAfter] declares up front,
// so that a shared transaction can do the preludes of all its calls with
// one Run before it runs the first call: the inbox's claims of a group's
// events in one statement, where each call claimed its own.
type Prelude struct {
	// Key groups preludes: one Run does the items of all the calls whose
	// preludes have the same Key (comparable), in the order the calls
	// joined the transaction, with the Run of the first of them.
	Key any
	// Item is the call's part of the work.
	Item any
	// Run does the items' work in tx and returns one result per item, in
	// their order. It may get one item, that of a call run alone or in a
	// savepoint of its own. An error of a Run of several items is no one
	// call's: the calls run again with savepoints, each its own prelude.
	// Nil for a prelude of Locks only: the call's result is nil.
	Run func(ctx context.Context, tx *Tx, items []any) ([]any, error)
	// Locks name what the call will change that concurrent transactions,
	// of this process or another one, change too (inventory's stock rows
	// by SKU). A transaction takes the locks of all its calls before any
	// prelude runs, each once and all in one order, and holds them until
	// it ends: two transactions that change the same things then wait for
	// each other in turn, never in a cycle (a deadlock), whatever order
	// their calls come in. On PostgreSQL a lock is a transaction-scoped
	// advisory lock on a 64-bit hash of the name (names of one hash only
	// wait for each other more); SQLite, one writer per file, takes none.
	// The names are database-wide: prefix them with the service.
	Locks []string
}

// one does the prelude of one call in tx and returns its result.
func (p *Prelude) one(ctx context.Context, tx *Tx) (any, error) {
	if p.Run == nil {
		return nil, nil
	}
	res, err := p.Run(ctx, tx, []any{p.Item})
	if err != nil {
		return nil, err
	}
	if len(res) != 1 {
		return nil, fmt.Errorf("prelude: %d results for 1 item", len(res))
	}
	return res[0], nil
}

// InTxSharedAfter is [DB.InTxShared] for a call that starts with pre: fn
// runs after pre's work is done in the same transaction, with its result.
// In a shared transaction run without savepoints, the preludes of all the
// calls are done first, together; with savepoints, each call's prelude is
// done inside its savepoint. Either way a call's prelude commits or rolls
// back with the call.
func (db *DB) InTxSharedAfter(ctx context.Context, pre Prelude, fn func(tx *Tx, result any) error) error {
	if _, ok := db.TxFrom(ctx); ok || db.group == nil {
		return db.InTx(ctx, func(tx *Tx) error {
			if err := lock(ctx, tx, pre.Locks); err != nil {
				return err
			}
			res, err := pre.one(ctx, tx)
			if err != nil {
				return err
			}
			return fn(tx, res)
		})
	}
	call := &groupCall{ctx: ctx, pre: &pre, done: make(chan error, 1)}
	call.fn = func(tx *Tx) error { return fn(tx, call.res) }
	return db.group.submit(call)
}

type groupCall struct {
	ctx context.Context
	fn  func(*Tx) error
	// pre is the call's prelude, if any, and res its result once done.
	pre  *Prelude
	res  any
	done chan error
	// panicked holds what fn panicked with, if it did: the call fails on
	// the committer, and the panic is raised again in the caller's
	// goroutine, where its recover (the consumer's) expects it.
	panicked any
}

// panicError stands for a panic of fn on the committer.
type panicError struct{ v any }

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.v) }

// safeAlone does the call's prelude, if any, by itself, then runs fn as
// safe does: for a call run alone or in a savepoint of its own. It takes
// the prelude's locks unless the transaction holds them already (locked).
func (c *groupCall) safeAlone(ctx context.Context, tx *Tx, locked bool) error {
	if c.pre != nil {
		if !locked {
			if err := lock(ctx, tx, c.pre.Locks); err != nil {
				return err
			}
		}
		res, err := c.pre.one(ctx, tx)
		if err != nil {
			return err
		}
		c.res = res
	}
	return c.safe(tx)
}

// safe runs the call's fn, turning a panic into an error.
func (c *groupCall) safe(tx *Tx) (err error) {
	defer func() {
		if v := recover(); v != nil {
			c.panicked = v
			err = &panicError{v}
		}
	}()
	return c.fn(tx)
}

// committer batches the transactions of InTxShared. A batch closes when
// the previous one has committed, never on a timer.
type committer struct {
	db *DB
	// parallel is how many shared transactions may run at once: 1 for
	// SQLite's single writer, more for PostgreSQL, where each statement
	// is a round trip and one transaction at a time left the server idle.
	parallel int
	mu       sync.Mutex
	queue    []*groupCall
	running  int
	shared   atomic.Int64 // transactions of more than one call, for tests
	// savepointed counts the shared transactions run again with a
	// savepoint per call after a call failed the optimistic one.
	savepointed atomic.Int64
	// txns and calls count the transactions begun and the calls they ran.
	txns, calls atomic.Int64
}

// GroupStats counts the work of [DB.InTxShared] since the database was
// opened: Calls made, and the Transactions that ran them. Calls divided by
// Transactions is the mean group size. Rerun counts the shared
// transactions run a second time, with a savepoint per call, because a
// call failed the first (not counted in Transactions).
type GroupStats struct {
	Transactions, Calls, Rerun int64
}

// SetSharedTransactions sets how many shared transactions of
// [DB.InTxShared] may run at once on PostgreSQL (at least 1; the default
// is 4). Calls that arrive while that many run wait for the next free one
// and share it. A service whose units lock rows that other units lock too
// (inventory's stock rows) sets 1: a shared transaction holds the rows of
// all its units until it commits, so two side by side take them in orders
// no unit controls and wait on each other until PostgreSQL breaks the
// deadlock. SQLite always runs one.
func (db *DB) SetSharedTransactions(n int) {
	if db.group == nil || db.dialect != Postgres {
		return
	}
	db.group.mu.Lock()
	db.group.parallel = max(1, n)
	db.group.mu.Unlock()
}

// GroupStats returns the counts of InTxShared; zero when it never ran.
func (db *DB) GroupStats() GroupStats {
	if db.group == nil {
		return GroupStats{}
	}
	return GroupStats{Transactions: db.group.txns.Load(), Calls: db.group.calls.Load(), Rerun: db.group.savepointed.Load()}
}

func (c *committer) do(ctx context.Context, fn func(*Tx) error) error {
	return c.submit(&groupCall{ctx: ctx, fn: fn, done: make(chan error, 1)})
}

// submit queues call for the next shared transaction and waits for its
// answer.
func (c *committer) submit(call *groupCall) error {
	c.mu.Lock()
	c.queue = append(c.queue, call)
	if c.running < c.parallel {
		c.running++
		go c.loop()
	}
	c.mu.Unlock()
	// Always wait for the answer: once a batch started running fn, its
	// statements (on the caller's ctx) end with the caller.
	err := <-call.done
	if call.panicked != nil {
		panic(call.panicked)
	}
	return err
}

func (c *committer) loop() {
	for {
		c.mu.Lock()
		n := min(len(c.queue), maxGroup)
		if n == 0 {
			c.running--
			c.mu.Unlock()
			return
		}
		batch := c.queue[:n:n]
		c.queue = c.queue[n:]
		c.mu.Unlock()
		c.run(batch)
	}
}

// run runs one batch in one transaction.
func (c *committer) run(batch []*groupCall) {
	var live []*groupCall
	for _, call := range batch {
		if err := call.ctx.Err(); err != nil {
			call.done <- fmt.Errorf("begin: %w", err)
			continue
		}
		live = append(live, call)
	}
	if len(live) == 0 {
		return
	}
	c.txns.Add(1)
	c.calls.Add(int64(len(live)))
	if len(live) == 1 {
		call := live[0]
		call.done <- c.db.InTx(call.ctx, func(tx *Tx) error { return call.safeAlone(call.ctx, tx, false) })
		return
	}
	c.shared.Add(1)
	// Optimistic first: the calls run one after the other without
	// savepoints, which cost a statement (a round trip on PostgreSQL) per
	// call, and commit together. A call that fails takes the transaction
	// down with it: it gets its own error, and the calls that ran before
	// it run again, with the rest, in a transaction where each has a
	// savepoint. So a call runs at most twice, never after it failed.
	failed := -1
	var ferr, flushErr error
	gone := make([]error, len(live)) // calls whose caller left before they ran
	err := c.db.InTx(context.Background(), func(tx *Tx) error {
		// The calls' preludes first, together: like the deferred work,
		// a failure there is no one call's.
		if flushErr = c.preludes(tx, live, gone); flushErr != nil {
			return flushErr
		}
		for i, call := range live {
			if gone[i] != nil {
				continue // left before the preludes: not done
			}
			if e := call.ctx.Err(); e != nil {
				gone[i] = fmt.Errorf("begin: %w", e)
				if call.pre != nil {
					// Its prelude is done: committed without the call,
					// it would claim work that never ran.
					flushErr = errLeftAfterPrelude
					return flushErr
				}
				continue
			}
			if e := call.safe(tx); e != nil {
				failed, ferr = i, e
				return e
			}
		}
		// The calls' deferred work, flushed together: a failure there
		// is no one call's, so savepoints find whose it is.
		flushErr = tx.flush(context.Background())
		return flushErr
	})
	if failed < 0 && flushErr != nil {
		var rest []*groupCall
		for i, call := range live {
			if gone[i] != nil {
				call.done <- gone[i]
				continue
			}
			rest = append(rest, call)
		}
		if len(rest) > 0 {
			c.savepointed.Add(1)
			c.withSavepoints(rest)
		}
		return
	}
	if failed < 0 {
		for i, call := range live {
			call.done <- cmp.Or(gone[i], err)
		}
		return
	}
	rest := make([]*groupCall, 0, len(live)-1)
	for i, call := range live {
		switch {
		case gone[i] != nil:
			call.done <- gone[i]
		case i != failed:
			rest = append(rest, call)
		case abortedBefore(ferr):
			// The transaction was already failed when this call
			// started: the one to blame ran before it and swallowed its
			// error. Savepoints find it.
			rest = append(rest, call)
		default:
			call.done <- classify(ferr)
		}
	}
	if len(rest) > 0 {
		c.savepointed.Add(1)
		c.withSavepoints(rest)
	}
}

// errLeftAfterPrelude rolls back an optimistic shared transaction in which
// a caller left after its call's prelude was done.
var errLeftAfterPrelude = errors.New("a caller left after its prelude was done")

// preludes does the preludes of calls that are still wanted (not gone, and
// their callers still waiting), one Run per Key, and gives each call its
// result.
func (c *committer) preludes(tx *Tx, calls []*groupCall, gone []error) error {
	type group struct {
		pre   *Prelude
		calls []*groupCall
		items []any
	}
	var (
		groups []*group
		locks  []string
	)
	for i, call := range calls {
		if call.pre == nil {
			continue
		}
		if e := call.ctx.Err(); e != nil {
			gone[i] = fmt.Errorf("begin: %w", e)
			continue
		}
		locks = append(locks, call.pre.Locks...)
		if call.pre.Run == nil {
			continue
		}
		var g *group
		for _, have := range groups {
			if have.pre.Key == call.pre.Key {
				g = have
				break
			}
		}
		if g == nil {
			g = &group{pre: call.pre}
			groups = append(groups, g)
		}
		g.calls, g.items = append(g.calls, call), append(g.items, call.pre.Item)
	}
	// The locks of all the calls first, in one order: taken call by call
	// in the order the calls came, two transactions could take the same
	// ones in opposite orders.
	if err := lock(context.Background(), tx, locks); err != nil {
		return err
	}
	for _, g := range groups {
		res, err := g.pre.Run(context.Background(), tx, g.items)
		if err != nil {
			return fmt.Errorf("prelude of %d calls: %w", len(g.items), err)
		}
		if len(res) != len(g.items) {
			return fmt.Errorf("prelude: %d results for %d items", len(res), len(g.items))
		}
		for i, call := range g.calls {
			call.res = res[i]
		}
	}
	return nil
}

// abortedBefore reports whether err is PostgreSQL refusing a statement in
// a transaction that an earlier error has failed (SQLSTATE 25P02).
func abortedBefore(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "25P02"
}

// withSavepoints runs calls in one transaction, each inside a savepoint of
// its own, so that one failing rolls back alone.
func (c *committer) withSavepoints(live []*groupCall) {
	own := make([]error, len(live)) // each call's own failure, rolled back to its savepoint
	err := c.db.InTx(context.Background(), func(tx *Tx) error {
		// The calls' locks first, all together and outside the
		// savepoints, as in the optimistic transaction: taken in each
		// call's savepoint, they would be taken in the calls' order.
		var locks []string
		for _, call := range live {
			if call.pre != nil && call.ctx.Err() == nil {
				locks = append(locks, call.pre.Locks...)
			}
		}
		if err := lock(context.Background(), tx, locks); err != nil {
			return err
		}
		// Savepoints run on a context of their own: one caller giving up
		// must not fail the others' transaction. On PostgreSQL, where each
		// statement is a round trip, a savepoint's release goes with the
		// next one's start in one message (statements without arguments
		// travel in the simple protocol, which allows several).
		var release string // the previous savepoint, still to release
		for i, call := range live {
			if err := call.ctx.Err(); err != nil {
				own[i] = fmt.Errorf("begin: %w", err)
				continue
			}
			sp := fmt.Sprintf("herald_call_%d", i)
			open := "SAVEPOINT " + sp
			if release != "" {
				if c.db.dialect == Postgres {
					open = "RELEASE SAVEPOINT " + release + "; " + open
				} else if _, err := tx.ExecContext(context.Background(), "RELEASE SAVEPOINT "+release); err != nil {
					return fmt.Errorf("release savepoint: %w", err)
				}
			}
			if _, err := tx.ExecContext(context.Background(), open); err != nil {
				return fmt.Errorf("savepoint: %w", err)
			}
			release = sp
			hooks := len(tx.onCommit)
			ferr := call.safeAlone(context.Background(), tx, true)
			if ferr == nil {
				// The call's deferred work is flushed before the
				// next call starts, inside its savepoint.
				ferr = tx.flush(context.Background())
			}
			if ferr != nil {
				own[i] = classify(ferr)
				tx.onCommit = tx.onCommit[:hooks]
				tx.deferred = nil
				if _, err := tx.ExecContext(context.Background(), "ROLLBACK TO SAVEPOINT "+sp); err != nil {
					return fmt.Errorf("rollback to savepoint after %v: %w", ferr, err)
				}
			}
		}
		// The last savepoint ends with the commit.
		return nil
	})
	for i, call := range live {
		switch {
		case own[i] != nil:
			call.done <- own[i]
		default:
			call.done <- err
		}
	}
}

// lock takes the advisory locks of names in tx on PostgreSQL (see
// [Prelude].Locks): each once, in the order of their hashes, in one
// statement. SQLite takes none.
func lock(ctx context.Context, tx *Tx, names []string) error {
	if len(names) == 0 || tx.Dialect() != Postgres {
		return nil
	}
	keys := make([]int64, len(names))
	for i, n := range names {
		keys[i] = LockKey(n)
	}
	slices.Sort(keys)
	if err := lockKeys(ctx, tx, slices.Compact(keys)); err != nil {
		return fmt.Errorf("lock %d names: %w", len(names), err)
	}
	return nil
}

// lockKeys takes PostgreSQL's transaction-scoped advisory locks of keys in
// tx, in their order, in one statement.
func lockKeys(ctx context.Context, tx *Tx, keys []int64) error {
	// Rows of unnest come in the array's order, and ORDER BY n keeps
	// them so: PostgreSQL evaluates a volatile output expression after
	// the sort.
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(k) FROM unnest(?::bigint[]) WITH ORDINALITY AS u(k, n) ORDER BY n`, keys)
	return err
}

// LockKey is the advisory lock key that stands for a name of
// [Prelude].Locks on PostgreSQL (FNV-1a, 64 bits): in pg_locks, classid is
// its upper and objid its lower 32 bits, with objsubid 1.
func LockKey(name string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	return int64(h.Sum64())
}
