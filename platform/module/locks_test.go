package module_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/module"
	"github.com/herald-events/herald/platform/module/moduletest"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
)

// TestOnLocking: a handler made with OnLocking runs holding the locks its
// namer gave for its event, and those of the other events of its shared
// transaction; a namer that fails keeps the event from being handled, as
// a handler's failure would. On SQLite no lock is asked for. A module
// without a database may not name locks.
func TestOnLocking(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		codec := moduletest.Codec(t)
		p, _, dead := platform(t, codec)
		p.DB = func(string) (*sqldb.DB, error) { return db, nil }
		var (
			mu     sync.Mutex
			named  int
			failed []string
		)
		skus := func(msg *ordersv1.OrderCreated) []string {
			var out []string
			for _, l := range msg.GetLines() {
				out = append(out, l.GetSku())
			}
			return out
		}
		m := module.Module{
			Name: "locker", Consumes: []proto.Message{&ordersv1.OrderCreated{}}, Database: true,
			Build: func(_ context.Context, d module.Deps) (*module.Parts, error) {
				on := func(ctx context.Context, _ *consumer.Event, msg *ordersv1.OrderCreated) ([]proto.Message, error) {
					if d.DB.Dialect() != sqldb.Postgres {
						return nil, nil
					}
					want := slices.Compact(slices.Sorted(slices.Values(skus(msg))))
					names := make([]string, len(want))
					for i, sku := range want {
						names[i] = "locker/" + sku // the platform puts the service's name in front
					}
					held, err := sqldbtest.HeldLocks(ctx, d.DB.Conn(ctx), names...)
					if err != nil {
						return nil, err
					}
					if !slices.Equal(held, names) {
						mu.Lock()
						failed = append(failed, fmt.Sprintf("%s held %v of %v", msg.GetOrderId(), held, names))
						mu.Unlock()
					}
					return nil, nil
				}
				namer := func(_ context.Context, msg *ordersv1.OrderCreated) ([]string, error) {
					mu.Lock()
					named++
					mu.Unlock()
					if msg.GetCustomerId() == "unnamed" {
						return nil, consumer.Permanent(errors.New("no stock rows known"))
					}
					return skus(msg), nil
				}
				return &module.Parts{Handlers: []module.Handler{module.OnLocking(on, namer)}}, nil
			},
		}
		in, err := m.Start(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		f := moduletest.Run(t, in)
		var poll []*bus.Message
		for i := range 20 {
			id := fmt.Sprintf("o-%d", i)
			lines := []*ordersv1.OrderLine{{Sku: fmt.Sprintf("sku-%d", i%3)}, {Sku: fmt.Sprintf("sku-%d", i%5)}, {Sku: fmt.Sprintf("sku-%d", i%3)}}
			poll = append(poll, frame(t, codec, "e-"+id, &ordersv1.OrderCreated{OrderId: id, CustomerId: "alice", Lines: lines}))
		}
		poll = append(poll, frame(t, codec, "e-unnamed", &ordersv1.OrderCreated{OrderId: "o-unnamed", CustomerId: "unnamed"}))
		f.DeliverPoll(t, poll...)
		mu.Lock()
		defer mu.Unlock()
		if len(failed) > 0 {
			t.Fatalf("handlers ran without their locks: %s", strings.Join(failed, "; "))
		}
		if db.Dialect() != sqldb.Postgres {
			// No namer runs: every event is applied.
			if n := count(t, db, `SELECT COUNT(*) FROM herald_inbox`); n != 21 || named != 0 || len(dead.Messages()) != 0 {
				t.Fatalf("%d events applied, %d named, %d dead letters; want 21, 0, 0", n, named, len(dead.Messages()))
			}
			return
		}
		if n := count(t, db, `SELECT COUNT(*) FROM herald_inbox`); n != 20 || named != 21 {
			t.Fatalf("%d events applied, %d named; want the 20 named, 21", n, named)
		}
		if got := dead.Messages(); len(got) != 1 || string(got[0].Key) != "o-unnamed" {
			t.Fatalf("dead letters %v, want the event whose locks could not be named", got)
		}
	})
	t.Run("without a database", func(t *testing.T) {
		p, _, _ := platform(t, moduletest.Codec(t))
		m := module.Module{
			Name: "nodb", Consumes: []proto.Message{&ordersv1.OrderCreated{}},
			Build: func(context.Context, module.Deps) (*module.Parts, error) {
				return &module.Parts{Handlers: []module.Handler{module.OnLocking(
					func(context.Context, *consumer.Event, *ordersv1.OrderCreated) ([]proto.Message, error) {
						return nil, nil
					},
					func(context.Context, *ordersv1.OrderCreated) ([]string, error) { return nil, nil })}}, nil
			},
		}
		if _, err := m.Start(context.Background(), p); err == nil || !strings.Contains(err.Error(), "only a module with a Database") {
			t.Fatalf("Start: %v, want the locks refused", err)
		}
	})
}

// TestDoLocking: a use case run with Work.DoLocking holds its locks (with
// the service's name in front) when it runs, alone, sharing a transaction
// with concurrent calls, and joined to a caller's unit of work; on SQLite
// it runs as Do.
func TestDoLocking(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		p, _, _ := platform(t, moduletest.Codec(t))
		p.DB = func(string) (*sqldb.DB, error) { return db, nil }
		var work *module.Work
		m := module.Module{
			Name: "locker", Database: true,
			Build: func(_ context.Context, d module.Deps) (*module.Parts, error) {
				work = d.Work
				return &module.Parts{}, nil
			},
		}
		if _, err := m.Start(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		// check is a use case that reports which of its names' locks it
		// runs without.
		check := func(names ...string) func(ctx context.Context) ([]proto.Message, error) {
			return func(ctx context.Context) ([]proto.Message, error) {
				if db.Dialect() != sqldb.Postgres {
					if _, ok := db.TxFrom(ctx); !ok {
						return nil, errors.New("ran outside a transaction")
					}
					return nil, nil
				}
				want := make([]string, len(names))
				for i, n := range names {
					want[i] = "locker/" + n
				}
				held, err := sqldbtest.HeldLocks(ctx, db.Conn(ctx), want...)
				if err != nil {
					return nil, err
				}
				if !slices.Equal(held, want) {
					return nil, fmt.Errorf("held %v of %v", held, want)
				}
				return nil, nil
			}
		}
		ctx := context.Background()
		if err := work.DoLocking(ctx, []string{"b", "a", "b"}, check("a", "b")); err != nil {
			t.Fatalf("alone: %v", err)
		}
		var calls sync.WaitGroup
		errs := make([]error, 16)
		for i := range errs {
			calls.Go(func() {
				errs[i] = work.DoLocking(ctx, []string{fmt.Sprintf("row-%d", i)}, check(fmt.Sprintf("row-%d", i)))
			})
		}
		calls.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("side by side: %v", err)
		}
		err := work.Do(ctx, func(ctx context.Context) ([]proto.Message, error) {
			return nil, work.DoLocking(ctx, []string{"joined"}, check("joined"))
		})
		if err != nil {
			t.Fatalf("joined: %v", err)
		}
	})
}
