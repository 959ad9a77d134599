package outbox

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/herald-events/herald/platform/fault"
	"github.com/herald-events/herald/platform/sqldb"
)

// Several instances of a service share its PostgreSQL outbox. One relay
// publishes at a time: the one holding a session-level advisory lock,
// keyed by the schema, on a dedicated connection. The others stand by and
// take over when that session ends (the process stops or dies, or its
// connection breaks), retrying the lock every [standbyRetry]. The leader
// also LISTENs on the outbox's channel, and the other instances' Add
// NOTIFYs it in their business transaction, so a row written by any
// instance is published as soon as it commits, not at the next poll.
//
// SQLite is one process per file: its relay always leads, and nobody
// notifies.

const (
	// standbyRetry is how often a standing-by relay asks for the lock.
	standbyRetry = time.Second
	// leaderCheck is how often the leader checks its session.
	leaderCheck = 10 * time.Second
)

// leadership is a relay's share of the PostgreSQL lock; nil on SQLite.
type leadership struct {
	// key is the advisory lock's key, channel the LISTEN/NOTIFY channel;
	// both derive from the schema, as advisory locks and channels are
	// per database, not per schema.
	key     int64
	channel string
}

func newLeadership(db *sqldb.DB) *leadership {
	if db.Dialect() != sqldb.Postgres {
		return nil
	}
	h := fnv.New64a()
	h.Write([]byte("herald_outbox:" + db.Schema()))
	sum := h.Sum(nil)
	var key int64
	for _, b := range sum {
		key = key<<8 | int64(b)
	}
	return &leadership{key: key, channel: "herald_outbox_" + hex.EncodeToString(sum)}
}

// Leading reports whether this outbox's relay publishes now: always on
// SQLite; on PostgreSQL while its Run holds the outbox's lock.
func (o *Outbox) Leading() bool {
	return o.lead == nil || o.leading.Load()
}

// notifyLeader, inside a business transaction of an instance that does
// not lead, wakes the leading relay when the transaction commits.
func (o *Outbox) notifyLeader(ctx context.Context, tx *sqldb.Tx) error {
	if o.lead == nil || o.leading.Load() {
		return nil // this process's relay is woken by the commit itself
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_notify(?, '')`, o.lead.channel); err != nil {
		return fmt.Errorf("notify outbox relay: %w", err)
	}
	return nil
}

// holdLead keeps trying to lead until ctx is done, and while it leads,
// turns notifications into wake-ups of the relay. Like the relay, it logs
// one line when its session starts failing and one when it leads again.
func (o *Outbox) holdLead(ctx context.Context, log *slog.Logger) {
	standing := false
	var f fault.Streak
	for ctx.Err() == nil {
		err := o.leadOnce(ctx, func() {
			if !f.Recovered(log, "outbox relay leading again") && standing {
				log.Info("outbox relay taking over")
			}
			standing = false
		}, func() {
			if !standing {
				log.Info("outbox relay standing by: another instance publishes this outbox")
				standing = true
			}
		})
		o.leading.Store(false)
		if ctx.Err() != nil {
			return
		}
		f.Fail(ctx, log, "outbox relay lost its lock session; retrying until it recovers", "outbox relay lock session still failing", err)
		if !sleep(ctx, standbyRetry) {
			return
		}
	}
}

// leadOnce opens a session, waits for the lock, then listens until the
// session fails or ctx is done. Closing the session releases the lock.
func (o *Outbox) leadOnce(ctx context.Context, acquired, standby func()) error {
	// Server-side keepalives make PostgreSQL notice within about 20 s a
	// leader whose network vanished without closing its connection, so
	// that the session, and with it the lock, does not outlive it.
	conn, err := o.cfg.DB.Dedicated(ctx, map[string]string{
		"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "2",
	})
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, o.lead.key).Scan(&ok); err != nil {
			return fmt.Errorf("outbox lock: %w", err)
		}
		if ok {
			break
		}
		standby()
		if !sleep(ctx, standbyRetry) {
			return ctx.Err()
		}
	}
	if _, err := conn.Exec(ctx, `LISTEN `+o.lead.channel); err != nil {
		return fmt.Errorf("outbox listen: %w", err)
	}
	o.leading.Store(true)
	acquired()
	o.Notify() // rows may have waited while nobody led
	for {
		// Wake up now and then to check that the session is alive: a
		// leader whose session is gone no longer holds the lock.
		wctx, cancel := context.WithTimeout(ctx, leaderCheck)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			o.Notify()
		case errors.Is(err, context.DeadlineExceeded):
			pctx, cancel := context.WithTimeout(ctx, leaderCheck)
			err = conn.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				return fault.Transient(sqldb.Dependency, fmt.Errorf("outbox lock session: %w", err))
			}
		default:
			return fault.Transient(sqldb.Dependency, fmt.Errorf("outbox listen: %w", err))
		}
	}
}
