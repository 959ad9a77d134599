package kafkabus_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/kafkabus"
	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/registry"
	"github.com/herald-events/herald/platform/schema"
)

// The benchmarks of this file compare the platform's Kafka paths with the
// same work written directly against franz-go, side by side on one broker:
// the real one named by HERALD_KAFKA_BROKERS, else an in-process kfake.
//
//	go test -run '^$' -bench 'Publish|EOS' -benchtime 3x -count 3 ./platform/bus/kafkabus/
//
// Each reports msgs/s (BenchmarkPublish) or records/s (BenchmarkEOS); the
// ratio herald/raw of those is what matters, not the absolute numbers.

func benchLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// benchBrokers returns the real brokers or a fresh kfake cluster.
func benchBrokers(b *testing.B) []string {
	b.Helper()
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

// benchName returns a name unique to this run, so runs can share a cluster.
func benchName(prefix string) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return prefix + "-" + hex.EncodeToString(r[:])
}

func benchTopics(b *testing.B, seeds []string, partitions int32, topics ...string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkabus.EnsureTopics(ctx, partitions, -1, topics, kafkabus.Seeds(seeds...), kafkabus.Logger(benchLogger())); err != nil {
		b.Fatal(err)
	}
}

// benchCodec returns a codec on the embedded registry (no network) with
// OrderCreated registered for topic.
func benchCodec(b *testing.B, topic string) *schema.Codec {
	b.Helper()
	reg, err := registry.New(registry.Config{Logger: benchLogger()})
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

// benchOrder is a realistic OrderCreated: three lines, a total, a time.
func benchOrder(i int) *ordersv1.OrderCreated {
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

// ceHeaders are the CloudEvents headers the outbox relay sets.
func ceHeaders(i int, key string) []bus.Header {
	return []bus.Header{
		{Key: event.HeaderID, Value: fmt.Appendf(nil, "0197a3c2-7000-7000-8000-%012d", i)},
		{Key: event.HeaderType, Value: []byte("herald.orders.v1.OrderCreated")},
		{Key: event.HeaderSource, Value: []byte("herald/orders")},
		{Key: event.HeaderTime, Value: []byte("2026-03-01T12:00:00.123456789Z")},
		{Key: event.HeaderSpecVersion, Value: []byte(event.SpecVersion)},
		{Key: event.HeaderSubject, Value: []byte(key)},
		{Key: event.HeaderContentType, Value: []byte(event.ContentType)},
		{Key: event.HeaderTraceParent, Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")},
	}
}

// BenchmarkPublish compares the platform publish path (schema encode of an
// OrderCreated, CloudEvents headers, transactional Publisher.Publish of the
// batch) with raw franz-go transactional produce of the same bytes, one
// transaction per op, for batches of 1 and 100.
func BenchmarkPublish(b *testing.B) {
	seeds := benchBrokers(b)
	topic := benchName("bench-publish")
	benchTopics(b, seeds, 3, topic)
	codec := benchCodec(b, topic)
	ctx := context.Background()

	for _, batch := range []int{1, 100} {
		events := make([]*ordersv1.OrderCreated, batch)
		headers := make([][]bus.Header, batch)
		values := make([][]byte, batch)
		attrs := make([][5]string, batch) // id, type, source, time, traceparent
		for i := range batch {
			events[i] = benchOrder(i)
			headers[i] = ceHeaders(i, events[i].OrderId)
			for _, h := range headers[i] {
				switch h.Key {
				case event.HeaderID:
					attrs[i][0] = string(h.Value)
				case event.HeaderType:
					attrs[i][1] = string(h.Value)
				case event.HeaderSource:
					attrs[i][2] = string(h.Value)
				case event.HeaderTime:
					attrs[i][3] = string(h.Value)
				case event.HeaderTraceParent:
					attrs[i][4] = string(h.Value)
				}
			}
			v, err := codec.Encode(topic, events[i])
			if err != nil {
				b.Fatal(err)
			}
			values[i] = v
		}

		// What the outbox relay publishes from: the rows' payloads, marshalled
		// when the business transaction added them.
		payloads := make([][]byte, batch)
		for i, ev := range events {
			p, err := proto.Marshal(ev)
			if err != nil {
				b.Fatal(err)
			}
			payloads[i] = p
		}

		// herald's two publish paths, each building its messages as it
		// does from the attributes it holds as strings: the relay's
		// (stored payloads framed, the batch's bytes in one buffer and its
		// headers in one slice) and a unit's (events encoded, headers per
		// message).
		name := events[0].ProtoReflect().Descriptor().FullName()
		paths := []struct {
			name     string
			messages func() ([]*bus.Message, error)
		}{
			{"relay", func() ([]*bus.Message, error) {
				size := 0
				for i, ev := range events {
					size += len(payloads[i]) + len(ev.OrderId) + 64 +
						event.HeadersLen(attrs[i][0], attrs[i][1], attrs[i][2], attrs[i][3], ev.OrderId, attrs[i][4])
				}
				buf := make([]byte, 0, size)
				hs := make([]bus.Header, 0, event.HeaderCount*batch)
				ms := make([]bus.Message, batch)
				msgs := make([]*bus.Message, batch)
				for i, ev := range events {
					start := len(buf)
					var ok bool
					var err error
					if buf, ok, err = codec.AppendFrame(buf, topic, name, payloads[i]); err != nil || !ok {
						return nil, fmt.Errorf("frame: kept %v, %w", ok, err)
					}
					value := buf[start:len(buf):len(buf)]
					start = len(buf)
					buf = append(buf, ev.OrderId...)
					m := &ms[i]
					*m = bus.Message{ID: attrs[i][0], Topic: topic, Key: buf[start:len(buf):len(buf)], Value: value}
					hs, m.Headers, buf = event.AppendHeaders(hs, buf, attrs[i][0], attrs[i][1], attrs[i][2], attrs[i][3], ev.OrderId, attrs[i][4])
					msgs[i] = m
				}
				return msgs, nil
			}},
			{"herald", func() ([]*bus.Message, error) {
				msgs := make([]*bus.Message, batch)
				for i, ev := range events {
					value, err := codec.Encode(topic, ev)
					if err != nil {
						return nil, err
					}
					msgs[i] = &bus.Message{ID: attrs[i][0], Topic: topic, Key: []byte(ev.OrderId), Value: value,
						Headers: event.Headers(attrs[i][0], attrs[i][1], attrs[i][2], attrs[i][3], ev.OrderId, attrs[i][4])}
				}
				return msgs, nil
			}},
		}
		for _, path := range paths {
			b.Run(fmt.Sprintf("batch=%d/%s", batch, path.name), func(b *testing.B) {
				pub, err := kafkabus.NewPublisher(kafkabus.Seeds(seeds...), kafkabus.Logger(benchLogger()),
					kafkabus.TransactionalID(benchName("bench-"+path.name+"-txn")))
				if err != nil {
					b.Fatal(err)
				}
				defer pub.Close()
				publish := func() {
					msgs, err := path.messages()
					if err != nil {
						b.Fatal(err)
					}
					if err := pub.Publish(ctx, msgs...); err != nil {
						b.Fatal(err)
					}
				}
				publish() // producer id, partitions added to the transaction
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					publish()
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msgs/s")
			})
		}

		b.Run(fmt.Sprintf("batch=%d/raw", batch), func(b *testing.B) {
			// The same producer settings as kafkabus.NewPublisher.
			cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...),
				kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0),
				kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
				kgo.TransactionalID(benchName("bench-raw-txn")), kgo.TransactionTimeout(40*time.Second))
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			publish := func() {
				recs := make([]*kgo.Record, batch)
				for i, ev := range events {
					r := &kgo.Record{Topic: topic, Key: []byte(ev.OrderId), Value: values[i],
						Headers: make([]kgo.RecordHeader, len(headers[i]))}
					for j, h := range headers[i] {
						r.Headers[j] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
					}
					recs[i] = r
				}
				if err := cl.BeginTransaction(); err != nil {
					b.Fatal(err)
				}
				// Produce and Flush, as a hand-written transactional
				// producer would (ProduceSync measured about half as fast
				// at batch 100 here).
				var failed atomic.Pointer[error]
				for _, r := range recs {
					cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
						if err != nil {
							failed.CompareAndSwap(nil, &err)
						}
					})
				}
				if err := cl.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				if err := failed.Load(); err != nil {
					b.Fatal(*err)
				}
				if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
					b.Fatal(err)
				}
			}
			publish()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				publish()
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// eosChunk is how many input records one op of BenchmarkEOS stands for.
const eosChunk = 1000

// BenchmarkEOS compares the transactional kafkabus.Subscriber, whose
// handler publishes through bus.DeliveryPublisher, with a hand-written
// GroupTransactSession loop doing the same work (copy the record to the
// output topic with one more header), one transaction per poll of up to 500
// records, on the same client settings. One op is eosChunk input records.
// The records are produced before the timer starts, in a transaction left
// open so that the consumer (at read_committed) cannot see them yet; the
// timer starts when that transaction commits and stops when a
// read_committed reader of the output topic has seen every output. Group
// join and producer-id setup are excluded by a warm-up batch.
func BenchmarkEOS(b *testing.B) {
	seeds := benchBrokers(b)
	const partitions = 3
	value := make([]byte, 200)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	hdr := kgo.RecordHeader{Key: "transformed-by", Value: []byte("bench")}

	// run measures one implementation: start launches it on (group, in,
	// out, txnID) and returns a channel that reports why it stopped.
	run := func(b *testing.B, start func(ctx context.Context, group, in, out, txnID string) <-chan error) {
		in, out := benchName("bench-eos")+".in", benchName("bench-eos")+".out"
		benchTopics(b, seeds, partitions, in, out)
		const warm = 3 * 100
		total := b.N * eosChunk
		produce := func(cl *kgo.Client, from, n int) {
			recs := make([]*kgo.Record, n)
			for i := range n {
				recs[i] = &kgo.Record{Topic: in, Key: fmt.Appendf(nil, "k%d", from+i), Value: value,
					Headers: []kgo.RecordHeader{{Key: event.HeaderID, Value: fmt.Appendf(nil, "id-%d", from+i)}}}
			}
			if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				b.Fatal(err)
			}
		}
		plain, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
		if err != nil {
			b.Fatal(err)
		}
		defer plain.Close()
		produce(plain, 0, warm)
		// The measured records, held back by an open transaction.
		held, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.TransactionalID(benchName("bench-eos-held")),
			kgo.TransactionTimeout(5*time.Minute))
		if err != nil {
			b.Fatal(err)
		}
		defer held.Close()
		if err := held.BeginTransaction(); err != nil {
			b.Fatal(err)
		}
		produce(held, warm, total)

		// Outputs count as committed when a read_committed reader sees
		// them: the one signal both implementations give alike.
		reader, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(out),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			b.Fatal(err)
		}
		defer reader.Close()
		var committed atomic.Int64
		warmed, finished := make(chan struct{}), make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			var warmOnce, finOnce sync.Once
			for ctx.Err() == nil {
				c := committed.Add(int64(reader.PollFetches(ctx).NumRecords()))
				if c >= warm {
					warmOnce.Do(func() { close(warmed) })
				}
				if c >= int64(warm+total) {
					finOnce.Do(func() { close(finished) })
				}
			}
		}()
		errc := start(ctx, benchName("bench-eos-group"), in, out, benchName("bench-eos-txn"))
		wait := func(ch <-chan struct{}, what string) {
			select {
			case <-ch:
			case err := <-errc:
				b.Fatalf("%s: stopped: %v", what, err)
			case <-time.After(3 * time.Minute):
				b.Fatalf("%s: timed out with %d outputs committed", what, committed.Load())
			}
		}
		wait(warmed, "warm-up")
		b.ResetTimer()
		if err := held.EndTransaction(context.Background(), kgo.TryCommit); err != nil {
			b.Fatal(err)
		}
		wait(finished, "run")
		b.StopTimer()
		b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "records/s")
		cancel()
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		if c := committed.Load(); c != int64(warm+total) {
			b.Fatalf("%d outputs committed, want %d", c, warm+total)
		}
	}

	b.Run("herald", func(b *testing.B) {
		run(b, func(ctx context.Context, group, in, out, txnID string) <-chan error {
			sub, err := kafkabus.NewSubscriber(kafkabus.Seeds(seeds...), kafkabus.Logger(benchLogger()),
				kafkabus.GroupTransactions(txnID))
			if err != nil {
				b.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() {
				errc <- sub.Run(ctx, group, []string{in}, func(ctx context.Context, m *bus.Message) error {
					pub, ok := bus.DeliveryPublisher(ctx)
					if !ok {
						return errors.New("no delivery publisher")
					}
					return pub.Publish(ctx, &bus.Message{Topic: out, Key: m.Key, Value: m.Value,
						Headers: append(m.Headers[:len(m.Headers):len(m.Headers)], bus.Header{Key: hdr.Key, Value: hdr.Value})})
				})
			}()
			return errc
		})
	})

	b.Run("raw", func(b *testing.B) {
		run(b, func(ctx context.Context, group, in, out, txnID string) <-chan error {
			// The same client settings as the Subscriber's session.
			sess, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(seeds...),
				kgo.ConsumerGroup(group), kgo.ConsumeTopics(in),
				kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.DisableAutoCommit(),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.KeepControlRecords(),
				kgo.TransactionalID(txnID+group), kgo.TransactionTimeout(kafkabus.DefaultTransactionTimeout),
				kgo.RequiredAcks(kgo.AllISRAcks()))
			if err != nil {
				b.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() {
				defer sess.Close()
				errc <- func() error {
					for {
						fetches := sess.PollRecords(ctx, 500)
						if fetches.IsClientClosed() || ctx.Err() != nil {
							return nil
						}
						if fetches.NumRecords() == 0 {
							continue
						}
						if err := sess.Begin(); err != nil {
							return err
						}
						var produced kgo.FirstErrPromise
						fetches.EachRecord(func(r *kgo.Record) {
							if r.Attrs.IsControl() {
								return
							}
							o := &kgo.Record{Topic: out, Key: r.Key, Value: r.Value,
								Headers: append(r.Headers[:len(r.Headers):len(r.Headers)], hdr)}
							sess.Produce(ctx, o, produced.Promise())
						})
						try := kgo.TryCommit
						if produced.Err() != nil {
							try = kgo.TryAbort
						}
						if _, err := sess.End(context.WithoutCancel(ctx), try); err != nil {
							return err
						}
					}
				}()
			}()
			return errc
		})
	})
}
