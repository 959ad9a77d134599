package outbox_test

import (
	"context"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	"github.com/herald-events/herald/platform/contract"
	"github.com/herald-events/herald/platform/outbox"
	"github.com/herald-events/herald/platform/sqldb"
)

// BenchmarkAddContract measures the producing door: one OrderCreated (three
// lines) added with outbox.Add in its own SQLite transaction, with the
// contract check off and on, in the same run. One op is one event.
//
//	go test -run '^$' -bench AddContract -benchmem -count 3 ./platform/outbox/
func BenchmarkAddContract(b *testing.B) {
	rules, err := contract.New()
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		rules *contract.Validator
	}{{"contract=off", nil}, {"contract=on", rules}} {
		b.Run(c.name, func(b *testing.B) {
			db := openSQLite(b)
			ctx := context.Background()
			if err := db.Migrate(ctx, "bench", outbox.Migrations(db.Dialect())); err != nil {
				b.Fatal(err)
			}
			ob, err := outbox.New(outbox.Config{DB: db, Service: "bench", Source: "bench", Contract: c.rules})
			if err != nil {
				b.Fatal(err)
			}
			ev := relayOrder(1)
			for _, l := range ev.Lines {
				l.UnitPrice = &moneyv1.Money{CurrencyCode: "EUR", Units: 10}
			}
			ev.CreateTime = timestamppb.Now()
			if err := rules.Validate(ev); err != nil {
				b.Fatalf("the benchmark's event must be valid: %v", err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
					_, err := ob.Add(ctx, tx, ev)
					return err
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
