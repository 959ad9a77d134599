package adapters_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
	"github.com/herald-events/herald/services/notification/adapters"
	"github.com/herald-events/herald/services/notification/app"
	"github.com/herald-events/herald/services/notification/domain"
)

// open migrates db, as the platform does for the module, and returns the
// store.
func open(t *testing.T, db *sqldb.DB) *adapters.Store {
	t.Helper()
	if err := db.Migrate(context.Background(), "notification", adapters.Migrations(db.Dialect())); err != nil {
		t.Fatal(err)
	}
	return adapters.New(db)
}

// inUnit runs fn in a transaction that fn's context carries, as the
// platform runs an event's handler.
func inUnit(ctx context.Context, db *sqldb.DB, fn func(ctx context.Context) error) error {
	return db.InTxContext(ctx, fn)
}

// TestStoreContract is run against every database.
func TestStoreContract(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := open(t, db)
		t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		insert := func(n *domain.Notification) bool {
			t.Helper()
			ok, err := s.Insert(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		for i, c := range []struct {
			order, customer string
			kind            domain.Kind
		}{{"o-1", "alice", domain.KindConfirmed}, {"o-1", "alice", domain.KindCancelled}, {"o-2", "bob", domain.KindRejected}} {
			if !insert(domain.New(fmt.Sprintf("n-%d", i+1), c.order, c.customer, c.kind, "text", t0.Add(time.Duration(i)*time.Second))) {
				t.Fatalf("insert %d refused", i+1)
			}
		}
		if insert(domain.New("n-dup", "o-1", "alice", domain.KindConfirmed, "again", t0)) {
			t.Fatal("a second CONFIRMED notification for o-1 was stored")
		}

		// List: newest first, filters, paging.
		all, _, err := s.List(ctx, app.Filter{}, 0, 10)
		if err != nil || len(all) != 3 || all[0].ID != "n-3" || all[2].ID != "n-1" {
			t.Fatalf("List all = %v, %v; want n-3, n-2, n-1", ids(all), err)
		}
		if got := all[2]; got.OrderID != "o-1" || got.CustomerID != "alice" || got.Kind != domain.KindConfirmed ||
			got.Text != "text" || !got.Created.Equal(t0) || got.Status != domain.StatusPending || !got.Delivered.IsZero() {
			t.Fatalf("stored notification = %+v", got)
		}
		alice, _, _ := s.List(ctx, app.Filter{CustomerID: "alice"}, 0, 10)
		o2, _, _ := s.List(ctx, app.Filter{OrderID: "o-2"}, 0, 10)
		both, _, _ := s.List(ctx, app.Filter{CustomerID: "alice", OrderID: "o-2"}, 0, 10)
		if len(alice) != 2 || len(o2) != 1 || o2[0].ID != "n-3" || len(both) != 0 {
			t.Fatalf("filters: alice %v, o-2 %v, alice+o-2 %v", ids(alice), ids(o2), ids(both))
		}
		page1, cursor, _ := s.List(ctx, app.Filter{}, 0, 2)
		page2, _, _ := s.List(ctx, app.Filter{}, cursor, 2)
		if len(page1) != 2 || len(page2) != 1 || page2[0].ID != "n-1" {
			t.Fatalf("pages: %v then %v", ids(page1), ids(page2))
		}

		// Claim takes due rows oldest first and holds them for the lease.
		now := t0.Add(time.Minute)
		claimed, err := s.Claim(ctx, now, time.Minute, 2)
		if err != nil || len(claimed) != 2 || claimed[0].ID != "n-1" || claimed[1].ID != "n-2" {
			t.Fatalf("Claim = %v, %v; want n-1, n-2", ids(claimed), err)
		}
		if again, _ := s.Claim(ctx, now, time.Minute, 10); len(again) != 1 || again[0].ID != "n-3" {
			t.Fatalf("second Claim = %v, want only n-3 (the others are leased)", ids(again))
		}
		if expired, _ := s.Claim(ctx, now.Add(time.Minute), time.Minute, 10); len(expired) != 3 {
			t.Fatalf("Claim after the lease = %v, want all three back", ids(expired))
		}

		// Save stores the outcome; delivered rows are never claimed again.
		n := claimed[0]
		n.MarkDelivered(now)
		if err := s.Save(ctx, n); err != nil {
			t.Fatal(err)
		}
		got, _, _ := s.List(ctx, app.Filter{OrderID: "o-1"}, 0, 10)
		var saved *domain.Notification
		for _, g := range got {
			if g.ID == n.ID {
				saved = g
			}
		}
		if saved == nil || saved.Status != domain.StatusDelivered || saved.Attempts != 1 || !saved.Delivered.Equal(now) {
			t.Fatalf("after Save: %+v", saved)
		}
		if later, _ := s.Claim(ctx, now.Add(time.Hour), time.Minute, 10); len(later) != 2 {
			t.Fatalf("Claim after one delivery = %v, want the two others", ids(later))
		}
	})
}

func ids(ns []*domain.Notification) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.ID
	}
	return out
}

// fakeChannel answers with a scripted error per notification id.
type fakeChannel struct {
	mu        sync.Mutex
	fail      map[string]error
	delivered []string
}

func (f *fakeChannel) Deliver(_ context.Context, n domain.Notification) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[n.ID]; err != nil {
		return err
	}
	f.delivered = append(f.delivered, n.ID)
	return nil
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestDispatcher drives the dispatcher over the SQL store: delivered
// notifications are marked, transient failures come back after the
// backoff, refusals fail at once, and a crash between delivery and saving
// the outcome delivers again after the lease (at least once).
func TestDispatcher(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := open(t, db)
		// The dispatcher runs a little ahead of the wall clock that stamps new
		// notifications, so they are due at once.
		clk := &clock{now: time.Now().UTC().Add(time.Second)}
		ch := &fakeChannel{fail: map[string]error{}}
		policy := domain.Policy{MaxRounds: 3, Backoff: time.Minute, MaxBackoff: time.Hour}
		d, err := app.NewDispatcher(app.DispatcherConfig{Store: s, Channel: ch, Policy: policy, Lease: 10 * time.Minute, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		woken := 0
		a := app.New(s, func() { woken++ })
		record := func(order string, kind domain.Kind) string {
			t.Helper()
			if err := inUnit(ctx, db, func(ctx context.Context) error { return a.Record(ctx, order, "alice", kind, "text") }); err != nil {
				t.Fatal(err)
			}
			ns, _, err := s.List(ctx, app.Filter{OrderID: order}, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range ns {
				if n.Kind == kind {
					return n.ID
				}
			}
			t.Fatalf("no %s notification for %s", kind, order)
			return ""
		}
		status := func(id string) *domain.Notification {
			t.Helper()
			ns, _, _ := s.List(ctx, app.Filter{}, 0, 100)
			for _, n := range ns {
				if n.ID == id {
					return n
				}
			}
			t.Fatalf("notification %s not found", id)
			return nil
		}

		ok := record("o-ok", domain.KindConfirmed)
		flaky := record("o-flaky", domain.KindConfirmed)
		refused := record("o-refused", domain.KindRejected)
		if woken != 3 {
			t.Fatalf("dispatcher woken %d times, want once per committed notification", woken)
		}
		// A rolled-back transaction stores nothing and wakes nobody.
		_ = inUnit(ctx, db, func(ctx context.Context) error {
			if err := a.Record(ctx, "o-rolled-back", "alice", domain.KindConfirmed, "text"); err != nil {
				return err
			}
			return errors.New("abort")
		})
		if ns, _, _ := s.List(ctx, app.Filter{OrderID: "o-rolled-back"}, 0, 10); len(ns) != 0 || woken != 3 {
			t.Fatalf("rolled-back Record left %d rows and woke %d times", len(ns), woken)
		}

		ch.fail[flaky] = errors.New("503 Service Unavailable")
		ch.fail[refused] = fmt.Errorf("400 Bad Request: %w", app.ErrRefused)
		if n, err := d.DispatchOnce(ctx); err != nil || n != 3 {
			t.Fatalf("DispatchOnce = %d, %v; want 3 claimed", n, err)
		}
		if n := status(ok); n.Status != domain.StatusDelivered || n.Attempts != 1 {
			t.Fatalf("ok: %+v, want DELIVERED after 1 attempt", n)
		}
		if n := status(refused); n.Status != domain.StatusFailed || n.Attempts != 1 || n.LastError == "" {
			t.Fatalf("refused: %+v, want FAILED at once with the error", n)
		}
		if n := status(flaky); n.Status != domain.StatusPending || n.Attempts != 1 || n.LastError != "503 Service Unavailable" {
			t.Fatalf("flaky: %+v, want PENDING after 1 failed round", n)
		}
		// Not due again before the backoff has passed.
		if n, _ := d.DispatchOnce(ctx); n != 0 {
			t.Fatalf("DispatchOnce right after a failure claimed %d, want 0", n)
		}
		clk.Add(time.Minute)
		delete(ch.fail, flaky)
		if n, _ := d.DispatchOnce(ctx); n != 1 {
			t.Fatalf("DispatchOnce after the backoff claimed %d, want 1", n)
		}
		if n := status(flaky); n.Status != domain.StatusDelivered || n.Attempts != 2 {
			t.Fatalf("flaky: %+v, want DELIVERED after 2 attempts", n)
		}

		// A crash after claiming (and maybe delivering) and before saving:
		// nothing is lost, the notification is due again after the lease.
		lost := record("o-crash", domain.KindCancelled)
		if claimed, err := s.Claim(ctx, clk.Now(), 10*time.Minute, 10); err != nil || len(claimed) != 1 {
			t.Fatalf("Claim = %d, %v", len(claimed), err)
		}
		if n, _ := d.DispatchOnce(ctx); n != 0 {
			t.Fatalf("DispatchOnce during another's lease claimed %d, want 0", n)
		}
		clk.Add(10 * time.Minute)
		if n, _ := d.DispatchOnce(ctx); n != 1 {
			t.Fatalf("DispatchOnce after the lease claimed %d, want 1", n)
		}
		if n := status(lost); n.Status != domain.StatusDelivered {
			t.Fatalf("crashed delivery: %+v, want DELIVERED", n)
		}

		// A round cut short by shutdown does not count, and its
		// notification is due again at once.
		stopping := record("o-stop", domain.KindConfirmed)
		cctx, cancel := context.WithCancel(ctx)
		ch.fail[stopping] = context.Canceled
		cancel()
		if _, err := d.DispatchOnce(cctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("DispatchOnce with a cancelled context = %v", err)
		}
		if n := status(stopping); n.Status != domain.StatusPending || n.Attempts != 0 || n.NextAttempt.After(clk.Now()) {
			t.Fatalf("after shutdown: %+v, want PENDING, no attempt, due now", n)
		}

		want := []string{ok, flaky, lost}
		if fmt.Sprint(ch.delivered) != fmt.Sprint(want) {
			t.Fatalf("delivered %v, want %v", ch.delivered, want)
		}
	})
}

// TestDispatcherRun checks the loop: a committed notification is delivered
// promptly (woken by the commit, well before the poll interval).
func TestDispatcherRun(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s := open(t, db)
		ch := &fakeChannel{fail: map[string]error{}}
		d, err := app.NewDispatcher(app.DispatcherConfig{Store: s, Channel: ch, PollInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		a := app.New(s, d.Notify)
		time.Sleep(50 * time.Millisecond) // let Run reach its wait
		if err := inUnit(ctx, db, func(ctx context.Context) error { return a.Record(ctx, "o-1", "alice", domain.KindConfirmed, "hi") }); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			ch.mu.Lock()
			n := len(ch.delivered)
			ch.mu.Unlock()
			if n == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("notification not delivered within 5s of its commit")
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v, want nil on cancellation", err)
		}
	})
}
