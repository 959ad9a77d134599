package outbox_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/kafkabus"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/outbox"
	"github.com/herald-events/herald/platform/registry"
	"github.com/herald-events/herald/platform/schema"
	"github.com/herald-events/herald/platform/sqldb"
	"github.com/herald-events/herald/platform/sqldb/sqldbtest"
)

// BenchmarkRelay measures how fast the relay drains a filled outbox into
// Kafka: b.N OrderCreated rows are added with outbox.Add (untimed), then the
// timer runs from starting Run until every row is published and marked
// sent. One op is one row; rows/s is reported. Kafka is the broker named by
// HERALD_KAFKA_BROKERS, else an in-process kfake, through a kafkabus
// Publisher, transactional (one transaction per relay batch; default batch
// size and 1000) or idempotent only (the relay publishes such a bus one
// message at a time), and the schema codec on the embedded registry. The database is SQLite, and PostgreSQL when
// HERALD_DATABASE_URL is set.
//
//	go test -run '^$' -bench Relay -benchtime 5000x -count 3 ./platform/outbox/
func BenchmarkRelay(b *testing.B) {
	seeds := relayBrokers(b)
	dbs := []struct {
		name string
		open func(b *testing.B) *sqldb.DB
	}{{"sqlite", openSQLite}}
	if url := os.Getenv(sqldbtest.EnvURL); strings.HasPrefix(url, "postgres") {
		dbs = append(dbs, struct {
			name string
			open func(b *testing.B) *sqldb.DB
		}{"postgres", func(b *testing.B) *sqldb.DB { return openPostgres(b, url) }})
	}
	for _, d := range dbs {
		for _, c := range []struct {
			name  string
			txn   bool
			batch int
		}{{"txn/batch=default", true, 0}, {"txn/batch=1000", true, 1000}, {"idempotent/batch=default", false, 0}} {
			b.Run(d.name+"/"+c.name, func(b *testing.B) { benchRelay(b, d.open(b), seeds, c.txn, c.batch) })
		}
	}
}

func benchRelay(b *testing.B, db *sqldb.DB, seeds []string, txn bool, batch int) {
	ctx := context.Background()
	if err := db.Migrate(ctx, "bench", outbox.Migrations(db.Dialect())); err != nil {
		b.Fatal(err)
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	ns := "bench-relay-" + hex.EncodeToString(r[:])
	topic := event.Namespaced(ns, "herald.orders.v1")
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := kafkabus.EnsureTopics(tctx, 3, -1, []string{topic}, kafkabus.Seeds(seeds...), kafkabus.Logger(quietLogger())); err != nil {
		b.Fatal(err)
	}
	codec := relayCodec(b, topic)
	popts := []kafkabus.Option{kafkabus.Seeds(seeds...), kafkabus.Logger(quietLogger())}
	if txn {
		popts = append(popts, kafkabus.TransactionalID(ns+"-relay"))
	}
	kp, err := kafkabus.NewPublisher(popts...)
	if err != nil {
		b.Fatal(err)
	}
	defer kp.Close()
	// Warm the producer up: producer id, partitions in the transaction.
	if err := kp.Publish(ctx, &bus.Message{Topic: topic, Key: []byte("warm"), Value: []byte{0}}); err != nil {
		b.Fatal(err)
	}
	pub := &countingPublisher{Publisher: kp, total: int64(b.N), done: make(chan struct{})}
	ob, err := outbox.New(outbox.Config{DB: db, Service: "orders", Source: "herald/orders", Publisher: pub, Encoder: codec,
		Namespace: ns, BatchSize: batch, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	const perTx = 500
	for from := 0; from < b.N; from += perTx {
		if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			for i := from; i < min(from+perTx, b.N); i++ {
				if _, err := ob.Add(ctx, tx, relayOrder(i)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}

	rctx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	b.ResetTimer()
	go func() { errc <- ob.Run(rctx) }()
	select {
	case <-pub.done:
	case err := <-errc:
		b.Fatalf("relay stopped: %v", err)
	case <-time.After(3 * time.Minute):
		b.Fatalf("timed out: %d of %d rows published", pub.n.Load(), b.N)
	}
	// The last batch is published; wait for it to be marked.
	for {
		n, err := ob.Pending(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	stop()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	if n := pub.n.Load(); n != int64(b.N) {
		b.Fatalf("%d rows published, want %d", n, b.N)
	}
}

// countingPublisher closes done once total messages were published.
type countingPublisher struct {
	bus.Publisher
	total int64
	n     atomic.Int64
	done  chan struct{}
}

func (c *countingPublisher) Publish(ctx context.Context, msgs ...*bus.Message) error {
	if err := c.Publisher.Publish(ctx, msgs...); err != nil {
		return err
	}
	if c.n.Add(int64(len(msgs))) == c.total {
		close(c.done)
	}
	return nil
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func relayBrokers(b *testing.B) []string {
	if s := os.Getenv("HERALD_KAFKA_BROKERS"); s != "" {
		return strings.Split(s, ",")
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c.ListenAddrs()
}

func relayCodec(b testing.TB, topic string) *schema.Codec {
	reg, err := registry.New(registry.Config{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	b.Cleanup(srv.Close)
	client, err := schema.NewClient(srv.URL, "", "")
	if err != nil {
		b.Fatal(err)
	}
	codec, err := schema.NewCodec(client)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := codec.Register(topic, (&ordersv1.OrderCreated{}).ProtoReflect().Descriptor()); err != nil {
		b.Fatal(err)
	}
	return codec
}

func relayOrder(i int) *ordersv1.OrderCreated {
	return &ordersv1.OrderCreated{
		OrderId:    fmt.Sprintf("0197a3c2-6f1e-7d4a-9b1c-%012d", i),
		CustomerId: fmt.Sprintf("customer-%d", i%97),
		Lines: []*ordersv1.OrderLine{
			{Sku: "SKU-RED-SHIRT-M", Quantity: 2},
			{Sku: "SKU-BLUE-JEANS-32", Quantity: 1},
			{Sku: "SKU-SOCKS-3PK", Quantity: 3},
		},
		Total: &moneyv1.Money{CurrencyCode: "EUR", Units: 129, Nanos: 950_000_000},
	}
}

func openSQLite(b *testing.B) *sqldb.DB {
	db, err := sqldb.OpenSQLite(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

func openPostgres(b *testing.B, url string) *sqldb.DB {
	var r [6]byte
	_, _ = rand.Read(r[:])
	schemaName := "bench_" + hex.EncodeToString(r[:])
	db, err := sqldb.OpenPostgres(context.Background(), url, schemaName)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_, _ = db.ExecContext(context.Background(), `DROP SCHEMA `+schemaName+` CASCADE`)
		db.Close()
	})
	return db
}
