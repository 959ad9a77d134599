// Package sqldb wraps database/sql with what herald's stores need: a dialect
// that rewrites "?" placeholders, transactions with after-commit hooks, and
// ordered migrations.
//
// Errors meaning that the database cannot be reached now (a refused or lost
// connection, PostgreSQL's connection exceptions and shutdown codes,
// serialization failures and deadlocks, SQLite's busy and locked results)
// are marked with [fault.Transient] under the name [Dependency], so that
// consumers wait for the database and gRPC answers UNAVAILABLE.
//
// Services write their business rows, their outbox rows and their inbox
// rows through one [Tx], which is what makes the outbox and inbox exact.
// [OpenSQLite] opens the embedded default.
package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Dialect names the SQL flavour of a database.
type Dialect string

// Supported dialects.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DB is a database handle that knows its dialect.
type DB struct {
	sql     *sql.DB
	dialect Dialect
	// writer, for SQLite, admits one transaction of this process at a
	// time. SQLite has one writer per file anyway; queueing here, in
	// arrival order, replaces its busy handler, which sleeps and polls
	// (up to 100 ms a turn) and so wastes the write lock's idle time
	// when many goroutines want it.
	writer chan struct{}
	// stmts, for SQLite, keeps prepared statements by query text: the
	// pure-Go SQLite spends a good part of each query compiling it.
	stmts *stmtCache
	// group, for SQLite, shares transactions between concurrent callers
	// of InTxShared.
	group *committer
	// schema and pgConfig, for PostgreSQL, open dedicated connections.
	schema   string
	pgConfig *pgx.ConnConfig
	// sent counts the statements sent, its transactions' included.
	sent atomic.Int64
}

func newDB(db *sql.DB, d Dialect) *DB {
	out := &DB{sql: db, dialect: d}
	if d == SQLite {
		out.writer = make(chan struct{}, 1)
		out.stmts = &stmtCache{db: db, m: make(map[string]*sql.Stmt)}
		out.group = &committer{db: out, parallel: 1}
	}
	return out
}

// stmtCacheSize bounds the statements kept. Queries with a variable
// number of placeholders (IN lists) have one text per length; once the
// cache is full, new texts run unprepared.
const stmtCacheSize = 128

type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// get returns the prepared statement for q, or nil when q is not cached
// and cannot be (the cache is full, or preparing failed: the caller then
// runs q directly and sees the error there).
func (c *stmtCache) get(ctx context.Context, q string) *sql.Stmt {
	if c == nil || !cacheable(q) {
		return nil
	}
	c.mu.Lock()
	st, ok := c.m[q]
	full := len(c.m) >= stmtCacheSize
	c.mu.Unlock()
	if ok {
		return st
	}
	if full {
		return nil
	}
	// Prepared without the lock: preparing takes a connection of the
	// pool, which a caller holding the lock must never wait for.
	st, err := c.db.PrepareContext(ctx, q)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if other, ok := c.m[q]; ok {
		_ = st.Close()
		return other
	}
	if len(c.m) >= stmtCacheSize {
		_ = st.Close()
		return nil
	}
	c.m[q] = st
	return st
}

// cacheable keeps schema changes (migrations, run once) out of the cache.
func cacheable(q string) bool {
	q = strings.TrimSpace(q)
	for _, verb := range []string{"SELECT", "INSERT", "UPDATE", "DELETE"} {
		if len(q) >= len(verb) && strings.EqualFold(q[:len(verb)], verb) {
			return true
		}
	}
	return false
}

func (c *stmtCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.m {
		_ = st.Close()
		delete(c.m, q)
	}
}

// SQLiteOption changes how [OpenSQLite] opens a database.
type SQLiteOption func(*sqliteConfig)

type sqliteConfig struct{ synchronous string }

// NoSync never waits for the disk (synchronous=OFF): a committed
// transaction survives the process's crash, since the WAL is in the
// operating system's hands, but not an operating-system crash or a power
// loss, which may also leave the file damaged. For stacks that do not
// survive those anyway, such as herald dev's, whose embedded broker does
// not sync its log either. The default (synchronous=NORMAL) survives them
// with at most the last transactions lost.
func NoSync() SQLiteOption { return func(c *sqliteConfig) { c.synchronous = "OFF" } }

// OpenSQLite opens (creating if needed) a SQLite database file in WAL mode
// with a busy timeout, so that concurrent writers in one process wait for
// each other instead of failing. Transactions take the write lock up front.
func OpenSQLite(path string, opts ...SQLiteOption) (*DB, error) {
	cfg := sqliteConfig{synchronous: "NORMAL"}
	for _, o := range opts {
		o(&cfg)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(" + cfg.synchronous + ")&_pragma=foreign_keys(1)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	return newDB(db, SQLite), nil
}

// Dialect returns the database's dialect.
func (db *DB) Dialect() Dialect { return db.dialect }

// Close closes the database.
func (db *DB) Close() error {
	db.stmts.close()
	return db.sql.Close()
}

// Rebind rewrites "?" placeholders for the dialect ("$1", "$2", ... for
// PostgreSQL). Queries must not contain a literal "?".
func (db *DB) Rebind(q string) string { return rebind(db.dialect, q) }

func rebind(d Dialect, q string) string {
	if d != Postgres || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Statements counts the statements run on db since it was opened: each
// SQL statement, BEGIN and COMMIT (or ROLLBACK) of a transaction and a
// savepoint's SAVEPOINT included, one count for statements sent together.
// On PostgreSQL each is a round trip to the server.
func (db *DB) Statements() int64 { return db.sent.Load() }

// ExecContext runs a statement outside a transaction.
func (db *DB) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	db.sent.Add(1)
	if st := db.stmts.get(ctx, q); st != nil {
		res, err := st.ExecContext(ctx, args...)
		return res, classify(err)
	}
	res, err := db.sql.ExecContext(ctx, db.Rebind(q), args...)
	return res, classify(err)
}

// QueryContext runs a query outside a transaction.
func (db *DB) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	db.sent.Add(1)
	if st := db.stmts.get(ctx, q); st != nil {
		rows, err := st.QueryContext(ctx, args...)
		return rows, classify(err)
	}
	rows, err := db.sql.QueryContext(ctx, db.Rebind(q), args...)
	return rows, classify(err)
}

// QueryRowContext runs a single-row query outside a transaction. The
// error of its Scan is not classified (see [DB.InTx], which is); a reader
// that must tell an outage apart runs its query in a transaction.
func (db *DB) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	db.sent.Add(1)
	if st := db.stmts.get(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return db.sql.QueryRowContext(ctx, db.Rebind(q), args...)
}

// Tx is a transaction with after-commit hooks.
type Tx struct {
	tx       *sql.Tx
	dialect  Dialect
	stmts    *stmtCache
	sent     *atomic.Int64
	onCommit []func()
	deferred []deferred
}

// Deferred is work a transaction holds back until just before it commits,
// such as rows gathered from several calls to be written in one statement
// (see [Tx.Defer]).
type Deferred interface {
	Flush(ctx context.Context, tx *Tx) error
}

type deferred struct {
	key any
	d   Deferred
}

// stmt returns the cached statement for q bound to the transaction, or nil.
func (t *Tx) stmt(ctx context.Context, q string) *sql.Stmt {
	if st := t.stmts.get(ctx, q); st != nil {
		return t.tx.StmtContext(ctx, st)
	}
	return nil
}

// ExecContext runs a statement in the transaction.
func (t *Tx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	t.sent.Add(1)
	if st := t.stmt(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, rebind(t.dialect, q), args...)
}

// QueryContext runs a query in the transaction.
func (t *Tx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	t.sent.Add(1)
	if st := t.stmt(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, rebind(t.dialect, q), args...)
}

// QueryRowContext runs a single-row query in the transaction.
func (t *Tx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	t.sent.Add(1)
	if st := t.stmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, rebind(t.dialect, q), args...)
}

// Dialect returns the dialect of the transaction's database.
func (t *Tx) Dialect() Dialect { return t.dialect }

// OnCommit registers fn to run after the transaction commits; it does not
// run on rollback.
func (t *Tx) OnCommit(fn func()) { t.onCommit = append(t.onCommit, fn) }

// Defer returns the work queued under key in t, queueing mk() the first
// time. Its Flush runs in the transaction just before the commit, in the
// order the keys were first queued, and its error rolls the transaction
// back. Work queued by a call of [DB.InTxShared] that fails is dropped
// with the call's other writes; in a shared transaction run with
// savepoints, each call's work is flushed when the call ends, so that a
// flush that fails is that call's failure alone.
func (t *Tx) Defer(key any, mk func() Deferred) Deferred {
	for _, d := range t.deferred {
		if d.key == key {
			return d.d
		}
	}
	d := mk()
	t.deferred = append(t.deferred, deferred{key, d})
	return d
}

// flush runs the queued work and clears it; work queued while flushing
// runs too.
func (t *Tx) flush(ctx context.Context) error {
	for len(t.deferred) > 0 {
		d := t.deferred[0]
		t.deferred = t.deferred[1:]
		if err := d.d.Flush(ctx, t); err != nil {
			t.deferred = nil
			return err
		}
	}
	t.deferred = nil
	return nil
}

// txKey keys the transaction of one DB in a context.
type txKey struct{ db *DB }

// WithTx returns ctx carrying tx, a transaction of db: [DB.InTx] and
// [DB.Conn] called with the returned context (or one derived from it) use
// tx instead of beginning another. The platform's unit of work opens the
// transaction of an event or a request this way, and the stores it calls
// join it.
func (db *DB) WithTx(ctx context.Context, tx *Tx) context.Context {
	return context.WithValue(ctx, txKey{db}, tx)
}

// TxFrom returns the transaction of db that ctx carries, if any.
func (db *DB) TxFrom(ctx context.Context) (*Tx, bool) {
	tx, ok := ctx.Value(txKey{db}).(*Tx)
	return tx, ok
}

// Querier runs statements: a [DB] or a [Tx].
type Querier interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// Conn returns the transaction ctx carries (see [DB.WithTx]) or, outside
// one, the database itself.
func (db *DB) Conn(ctx context.Context) Querier {
	if tx, ok := db.TxFrom(ctx); ok {
		return tx
	}
	return db
}

// InTxContext is [DB.InTx] for code that reaches the database through its
// context: fn gets ctx carrying the transaction ([DB.WithTx]), so the store
// methods it calls join it.
func (db *DB) InTxContext(ctx context.Context, fn func(ctx context.Context) error) error {
	return db.InTx(ctx, func(tx *Tx) error { return fn(db.WithTx(ctx, tx)) })
}

// InTx runs fn in a transaction, committing when it returns nil and rolling
// back otherwise, then runs the after-commit hooks. Work fn queued with
// [Tx.Defer] runs before the commit. Errors that mean the
// database cannot be reached now (from begin, fn or commit) are marked
// transient (see [fault.IsTransient], [Dependency]).
//
// When ctx already carries a transaction of db ([DB.WithTx]), fn joins it:
// it runs in that transaction, and its error (or success) is the outer
// caller's to act on, so a store's method that opens a transaction of its
// own runs inside the event's or request's unit of work. Otherwise, on
// SQLite, transactions of one DB run one at a time, so fn must not start
// another on the same DB with a context that does not carry this one.
func (db *DB) InTx(ctx context.Context, fn func(*Tx) error) error {
	if tx, ok := db.TxFrom(ctx); ok {
		return fn(tx)
	}
	if db.writer != nil {
		select {
		case db.writer <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("begin: %w", ctx.Err())
		}
		defer func() { <-db.writer }()
	}
	db.sent.Add(2) // BEGIN, and COMMIT or ROLLBACK
	stx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", classify(err))
	}
	tx := &Tx{tx: stx, dialect: db.dialect, stmts: db.stmts, sent: &db.sent}
	err = fn(tx)
	if err == nil {
		err = tx.flush(ctx)
	}
	if err != nil {
		err = classify(err)
		if rbErr := stx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) && !errors.Is(rbErr, driver.ErrBadConn) {
			return errors.Join(err, fmt.Errorf("rollback: %w", rbErr))
		}
		return err
	}
	if err := stx.Commit(); err != nil {
		// After a lost connection the outcome is unknown; retrying is
		// safe for herald's writers, whose effects are idempotent.
		return fmt.Errorf("commit: %w", classify(err))
	}
	for _, f := range tx.onCommit {
		f()
	}
	return nil
}

// Ping checks that the database answers, for readiness checks. A failure
// is marked transient.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.sql.PingContext(ctx); err != nil {
		return fmt.Errorf("ping database: %w", classify(err))
	}
	return nil
}

// Migration is one named schema step.
type Migration struct {
	// ID orders and identifies the step, e.g. "0001_orders".
	ID string
	// SQL is run as one statement per entry, in one transaction.
	SQL []string
}

// migrationLock is the PostgreSQL advisory lock that migrations take.
const migrationLock = 0x6865_7261_6c64_6d69 // "heraldmi"

// lockMigrations makes the migrations of every process on the database
// run one at a time, until tx ends. Instances of a service that start
// together would otherwise create the same tables at once, and all but one
// fail ("duplicate key value violates unique constraint
// pg_type_typname_nsp_index"). SQLite's write transactions already run
// one at a time.
func (db *DB) lockMigrations(ctx context.Context, tx *Tx) error {
	if db.dialect != Postgres {
		return nil
	}
	return lockKeys(ctx, tx, []int64{migrationLock})
}

// Migrate applies, in order, the migrations of component not yet recorded
// in the herald_migrations table. Processes migrating one database at the
// same time take turns: each migration is applied once.
func (db *DB) Migrate(ctx context.Context, component string, ms []Migration) error {
	if err := db.InTx(ctx, func(tx *Tx) error {
		if err := db.lockMigrations(ctx, tx); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS herald_migrations (
		component TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (component, id))`)
		return err
	}); err != nil {
		return fmt.Errorf("migrate %s: %w", component, classify(err))
	}
	for _, m := range ms {
		err := db.InTx(ctx, func(tx *Tx) error {
			if err := db.lockMigrations(ctx, tx); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM herald_migrations WHERE component = ? AND id = ?`,
				component, m.ID).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, stmt := range m.SQL {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return err
				}
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO herald_migrations (component, id) VALUES (?, ?)`, component, m.ID)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s %s: %w", component, m.ID, classify(err))
		}
	}
	return nil
}
