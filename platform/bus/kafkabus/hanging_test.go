package kafkabus_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-events/herald/platform/bus/kafkabus"
	"github.com/herald-events/herald/platform/bus/kafkabus/kafkatest"
)

// TestResolveHanging leaves transactions open on a real broker as its
// restart race does (the coordinator ends the transaction, the partition
// never gets the marker), then finds them and writes the coordinator's
// decision: the committed transactions' records become readable (one
// ended by a client whose end bumps the producer's epoch, KIP-890), the
// aborted one's stays hidden, and a transaction still running is found but
// left alone.
//
// The hang is made the way the broker could before KIP-890: a producer
// that speaks Kafka 3.7's protocol writes to a partition it did not add
// to its transaction, with the broker's partition verification turned off
// for the test, so the coordinator's end sends no marker there.
func TestResolveHanging(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, topic := kafkatest.Start(ctx, t, "herald-test-hanging-", 5)
	cl, adm, brokers := b.Cl, b.Adm, b.Seeds
	newest, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer newest.Close()
	commit, abort := true, false
	for p, h := range []struct {
		value  string
		commit *bool
		ender  *kgo.Client
	}{{"committed", &commit, nil}, {"aborted", &abort, nil}, {"open", nil, nil}, {"committed, epoch bumped", &commit, newest}} {
		if err := kafkatest.Hang(ctx, cl, h.ender, fmt.Sprintf("%s-%d", topic, p), topic, int32(p), 4, h.value, h.commit); err != nil {
			t.Fatal(err)
		}
	}

	found, err := kafkabus.FindHanging(ctx, adm, 0, topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 4 {
		t.Fatalf("found %d hanging transactions, want 4: %+v", len(found), found)
	}
	want := []struct {
		decided, commit bool
		state           string
		markerEpoch     int16
	}{{true, true, "CompleteCommit", 0}, {true, false, "CompleteAbort", 0}, {false, false, "Ongoing", 0}, {true, true, "CompleteCommit", 1}}
	for i, h := range found {
		if h.Partition != int32(i) || h.Decided != want[i].decided || h.Commit != want[i].commit || h.State != want[i].state || h.MarkerEpoch != want[i].markerEpoch {
			t.Errorf("partition %d: %+v, want decided %v, commit %v, state %s, marker epoch %d", i, h, want[i].decided, want[i].commit, want[i].state, want[i].markerEpoch)
		}
	}
	if found[2].Why == "" {
		t.Error("an undecided transaction must say why")
	}
	closed, err := kafkabus.Resolve(ctx, adm, found)
	if err != nil {
		t.Fatal(err)
	}
	if len(closed) != 3 {
		t.Fatalf("closed %d, want the 3 decided ones", len(closed))
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	stable, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	for p, held := range map[int32]bool{0: false, 1: false, 2: true, 3: false} {
		e, _ := ends.Lookup(topic, p)
		s, _ := stable.Lookup(topic, p)
		if (s.Offset < e.Offset) != held {
			t.Errorf("partition %d: last stable offset %d, end %d; want held %v", p, s.Offset, e.Offset, held)
		}
	}
	if again, err := kafkabus.FindHanging(ctx, adm, 0, topic); err != nil || len(again) != 1 || again[0].Partition != 2 {
		t.Fatalf("after resolving: %+v, %v; want only partition 2's", again, err)
	}

	// A read_committed reader sees the committed records and not the
	// aborted one.
	rd, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {0: kgo.NewOffset().AtStart(), 1: kgo.NewOffset().AtStart(), 3: kgo.NewOffset().AtStart()},
	}), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	seen := map[string]int32{}
	pollCtx, stop := context.WithTimeout(ctx, 5*time.Second)
	defer stop()
	for pollCtx.Err() == nil && len(seen) < 2 {
		rd.PollFetches(pollCtx).EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = r.Partition })
	}
	stop()
	if p, ok := seen["committed"]; !ok || p != 0 || seen["committed, epoch bumped"] != 3 || len(seen) != 2 {
		t.Fatalf("read_committed read %v, want only the committed records, on partitions 0 and 3", seen)
	}
}

// TestTopicsWithPrefix: only the topics of the prefix, sorted; every
// topic for an empty prefix.
func TestTopicsWithPrefix(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopics(ctx, 1, 1, nil, "ns.b", "ns.a", "other.a"); err != nil {
		t.Fatal(err)
	}
	for prefix, want := range map[string][]string{"ns.": {"ns.a", "ns.b"}, "": {"ns.a", "ns.b", "other.a"}, "none.": nil} {
		got, err := kafkabus.TopicsWithPrefix(ctx, adm, prefix, false)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("TopicsWithPrefix(%q) = %v, %v; want %v", prefix, got, err, want)
		}
	}
}
