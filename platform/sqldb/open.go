package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// postgresPoolSize is how many connections to PostgreSQL one DB opens at
// most, and keeps open when idle. database/sql keeps only 2 idle by
// default and closes the others as they come back, so under load the pool
// kept opening connections: a server process each, and pgx's cache of
// prepared statements starting empty on each. 4, 16 and 32 with all kept
// idle were within the noise of each other (docs/performance.md, "PostgreSQL
// pool").
const postgresPoolSize = 16

// postgresSharedTxns is how many shared transactions of InTxShared run at
// once on PostgreSQL by default (see [DB.SetSharedTransactions] and
// docs/performance.md, "PostgreSQL: shared transactions side by side").
const postgresSharedTxns = 4

// postgresIdleTime closes a connection unused this long, so that a burst
// does not hold its connections for the life of the process.
const postgresIdleTime = time.Minute

// OpenPostgres connects to PostgreSQL through pgx, creating schema and
// setting it as the search_path of every connection.
func OpenPostgres(ctx context.Context, rawURL, schema string) (*DB, error) {
	if !schemaName.MatchString(schema) {
		return nil, fmt.Errorf("postgres schema %q: want a lower-case identifier", schema)
	}
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("database url %q: %w", Redact(rawURL), err)
	}
	// Create the schema on a plain connection first.
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", Redact(rawURL), classify(err))
	}
	_, err = conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize())
	conn.Close(ctx)
	if isUniqueViolation(err) {
		// Another process created it at the same moment: "IF NOT
		// EXISTS" does not cover a creation that is still committing.
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("create schema %s: %w", schema, classify(err))
	}
	cfg.RuntimeParams["search_path"] = schema
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(postgresPoolSize)
	db.SetMaxIdleConns(postgresPoolSize)
	db.SetConnMaxIdleTime(postgresIdleTime)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect %s: %w", Redact(rawURL), classify(err))
	}
	out := &DB{sql: db, dialect: Postgres, schema: schema, pgConfig: cfg}
	out.group = &committer{db: out, parallel: postgresSharedTxns}
	return out, nil
}

// Schema returns the PostgreSQL schema the database works in, or "" for
// SQLite.
func (db *DB) Schema() string { return db.schema }

// Dedicated opens a PostgreSQL connection outside the pool, with the
// database's settings (its schema as search_path), for work that keeps a
// session: LISTEN, session-level advisory locks. settings are run-time
// parameters of the session, set as it starts. The caller closes it.
func (db *DB) Dedicated(ctx context.Context, settings map[string]string) (*pgx.Conn, error) {
	if db.pgConfig == nil {
		return nil, fmt.Errorf("dedicated connection: %s has no sessions to keep", db.dialect)
	}
	cfg := db.pgConfig.Copy()
	for k, v := range settings {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("dedicated connection: %w", classify(err))
	}
	return conn, nil
}

// Redact hides the password of a database URL for messages and logs.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return rawURL
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return strings.Replace(u.String(), "xxxxx", "***", 1)
}

// SQL returns the underlying handle, for tools and tests.
func (db *DB) SQL() *sql.DB { return db.sql }
