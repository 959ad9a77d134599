// Package kafkatest makes, on a real Kafka broker, the hanging transactions
// that kafkabus.FindHanging finds and kafkabus.Resolve closes, for tests.
package kafkatest

import (
	"context"
	"fmt"
	"hash/crc32"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// Broker is a real Kafka broker prepared for Hang.
type Broker struct {
	Seeds string      // HERALD_KAFKA_BROKERS
	Cl    *kgo.Client // limited to Kafka 3.7's protocol, for Hang
	Adm   *kadm.Client
}

// Start returns the broker HERALD_KAFKA_BROKERS names, with its
// transaction partition verification turned off until the test ends, and
// a new topic of partitions partitions whose name starts with prefix,
// deleted at the end. Without a broker it skips the test: kfake loses no
// markers (CI runs the suite a second time on the real stack, with one).
func Start(ctx context.Context, t testing.TB, prefix string, partitions int32) (*Broker, string) {
	t.Helper()
	seeds := os.Getenv("HERALD_KAFKA_BROKERS")
	if seeds == "" {
		t.Skip("HERALD_KAFKA_BROKERS is not set: needs a real Kafka")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(seeds, ",")...), kgo.MaxVersions(kversion.V3_7_0()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	off := "false"
	if _, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Name: verification, Value: &off}}); err != nil {
		t.Fatalf("turn %s off: %v", verification, err)
	}
	t.Cleanup(func() {
		_, _ = adm.AlterBrokerConfigs(context.Background(), []kadm.AlterConfig{{Op: kadm.DeleteConfig, Name: verification}})
	})
	topic := fmt.Sprintf("%s%d", prefix, time.Now().UnixNano())
	if _, err := adm.CreateTopic(ctx, partitions, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = adm.DeleteTopic(context.Background(), topic) })
	return &Broker{Seeds: seeds, Cl: cl, Adm: adm}, topic
}

const verification = "transaction.partition.verification.enable"

// Hang runs a transaction of txnID that writes value to partition of
// topic without adding the partition to the transaction, then ends it with
// commit (nil: leaves it open). The coordinator sends no marker to the
// partition, which keeps the transaction open there: the state a broker's
// restart race leaves behind (see kafkabus.Hanging).
//
// It needs a real broker whose partition verification is off
// (transaction.partition.verification.enable=false) and a client limited
// to Kafka 3.7's protocol, under which a produce does not add its
// partition to the transaction by itself (KIP-890): [Start]'s. The
// transaction also takes the topic's partition last, so that the
// coordinator has one to end it on; keep partition below it.
//
// ender ends the transaction: nil for cl, or a client that speaks the
// newest protocol, under which the end bumps the producer's epoch
// (KIP-890), so the coordinator's epoch is one past the partition's.
func Hang(ctx context.Context, cl, ender *kgo.Client, txnID, topic string, partition, last int32, value string, commit *bool) error {
	init := kmsg.NewPtrInitProducerIDRequest()
	init.TransactionalID = &txnID
	init.TransactionTimeoutMillis = 60_000 // longer than the test: the broker must not abort the open one
	ir, err := init.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(ir.ErrorCode)
	}
	if err != nil {
		return fmt.Errorf("init producer id %s: %w", txnID, err)
	}
	// A transaction needs a partition the coordinator knows of to end
	// with markers: the last partition, where nothing is written.
	add := kmsg.NewPtrAddPartitionsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch = txnID, ir.ProducerID, ir.ProducerEpoch
	at := kmsg.NewAddPartitionsToTxnRequestTopic()
	at.Topic, at.Partitions = topic, []int32{last}
	add.Topics = append(add.Topics, at)
	if err := retry(func() error {
		ar, err := add.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		for _, t := range ar.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("add partitions %s: %w", txnID, err)
	}
	prod := kmsg.NewPtrProduceRequest()
	prod.TransactionID, prod.Acks, prod.TimeoutMillis = &txnID, -1, 10_000
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = topic
	pp := kmsg.NewProduceRequestTopicPartition()
	pp.Partition, pp.Records = partition, transactionalBatch(ir.ProducerID, ir.ProducerEpoch, []byte(value))
	pt.Partitions = append(pt.Partitions, pp)
	prod.Topics = append(prod.Topics, pt)
	if err := retry(func() error {
		pr, err := prod.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		return kerr.ErrorForCode(pr.Topics[0].Partitions[0].ErrorCode)
	}); err != nil {
		return fmt.Errorf("produce %s: %w", txnID, err)
	}
	if commit == nil {
		return nil
	}
	end := kmsg.NewPtrEndTxnRequest()
	end.TransactionalID, end.ProducerID, end.ProducerEpoch, end.Commit = txnID, ir.ProducerID, ir.ProducerEpoch, *commit
	if ender == nil {
		ender = cl
	}
	er, err := end.RequestWith(ctx, ender)
	if err == nil {
		err = kerr.ErrorForCode(er.ErrorCode)
	}
	if err != nil {
		return fmt.Errorf("end %s: %w", txnID, err)
	}
	// The coordinator ends the transaction once its markers are out:
	// wait for that, as the state after a broker's restart race is.
	adm := kadm.NewClient(cl)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		d, err := adm.DescribeTransactions(ctx, txnID)
		if err == nil {
			if st := d[txnID].State; st == "CompleteCommit" || st == "CompleteAbort" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("end %s: the coordinator did not complete it (%v)", txnID, err)
		}
	}
}

// transactionalBatch encodes one record as a transactional record batch
// (magic 2) of the producer.
func transactionalBatch(pid int64, epoch int16, value []byte) []byte {
	rec := kmsg.Record{Value: value}
	rec.Length = int32(len(rec.AppendTo(nil)) - 1) // the zero length took one byte
	now := time.Now().UnixMilli()
	b := kmsg.RecordBatch{
		Magic: 2, Attributes: 0x10, // transactional
		FirstTimestamp: now, MaxTimestamp: now,
		ProducerID: pid, ProducerEpoch: epoch, NumRecords: 1, Records: rec.AppendTo(nil),
	}
	b.Length = int32(len(b.AppendTo(nil)) - 12) // all after FirstOffset and Length
	raw := b.AppendTo(nil)
	b.CRC = int32(crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli))) // from Attributes on
	return b.AppendTo(nil)
}

// retry runs fn until it succeeds, fails with an error the broker does not
// call retriable, or 10 s have passed: a topic just created may not have
// its leader yet.
func retry(fn func() error) error {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		err := fn()
		if err == nil || !kerr.IsRetriable(err) || time.Now().After(deadline) {
			return err
		}
	}
}
