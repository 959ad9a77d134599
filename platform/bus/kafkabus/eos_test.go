package kafkabus_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/bus/kafkabus"
)

// eosBrokers returns the Kafka to test transactional consumers on: the real one
// named by HERALD_KAFKA_BROKERS, or a fresh kfake cluster.
func eosBrokers(t *testing.T) []string {
	t.Helper()
	if b := os.Getenv("HERALD_KAFKA_BROKERS"); b != "" {
		return strings.Split(b, ",")
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// eosNames returns names unique to this run, so runs can share a real
// cluster: topics in and out, a group and a transactional id prefix.
type eosNames struct{ in, out, group, txnID string }

func newEOSNames(t *testing.T, seeds []string, partitions int32) eosNames {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	p := "kafkabus-eos-" + hex.EncodeToString(b[:])
	n := eosNames{in: p + ".in", out: p + ".out", group: p + "-group", txnID: p + "-txn-"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := kafkabus.EnsureTopics(ctx, partitions, -1, []string{n.in, n.out}, kafkabus.Seeds(seeds...), kafkabus.Logger(eosLogger(t))); err != nil {
		t.Fatal(err)
	}
	return n
}

func eosLogger(t *testing.T) *slog.Logger {
	if os.Getenv("HERALD_TEST_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// eosProduce writes values to topic, keyed by key(i), in one call.
func eosProduce(t *testing.T, seeds []string, topic string, values []string, key func(i int) string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(key(i)), Value: []byte(v)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// eosRead reads topic from the start, at read_committed isolation or not,
// until it has at least want records (or 30s passed) and then for another
// moment, so that extra records show up too.
func eosRead(t *testing.T, seeds []string, topic string, committed bool, want int) []*kgo.Record {
	t.Helper()
	recs, err := eosReadTopic(seeds, topic, committed, want)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// eosReadTopic is eosRead for goroutines other than the test's.
func eosReadTopic(seeds []string, topic string, committed bool, want int) ([]*kgo.Record, error) {
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(iso), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(30 * time.Second)
	var quietSince time.Time
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) { n++; out = append(out, r) })
		switch {
		case n > 0:
			quietSince = time.Time{}
		case len(out) >= want && quietSince.IsZero():
			quietSince = time.Now()
		}
		if len(out) >= want && !quietSince.IsZero() && time.Since(quietSince) > time.Second {
			return out, nil
		}
		if time.Now().After(deadline) {
			return out, nil
		}
	}
}

// eosValues returns the values of recs, in order.
func eosValues(recs []*kgo.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Value)
	}
	return out
}

// eosExactlyOnce fails unless got holds each of want exactly once.
func eosExactlyOnce(t *testing.T, what string, got, want []string) {
	t.Helper()
	count := map[string]int{}
	for _, g := range got {
		count[g]++
	}
	var bad []string
	for _, w := range want {
		if count[w] != 1 {
			bad = append(bad, fmt.Sprintf("%s×%d", w, count[w]))
		}
		delete(count, w)
	}
	for g, n := range count {
		bad = append(bad, fmt.Sprintf("unexpected %s×%d", g, n))
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		t.Fatalf("%s: %d records, want each of %d exactly once; off: %v", what, len(got), len(want), bad)
	}
}

// eosRunning runs sub in the background; stop cancels it and returns Run's error.
func eosRunning(t *testing.T, sub *kafkabus.Subscriber, group, topic string, h bus.Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx, group, []string{topic}, h) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(60 * time.Second):
				err = errors.New("Run did not return within 60s of cancellation")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// eosSubscriber is a transactional subscriber on seeds with opts added.
func eosSubscriber(t *testing.T, seeds []string, n eosNames, opts ...kafkabus.Option) *kafkabus.Subscriber {
	t.Helper()
	sub, err := kafkabus.NewSubscriber(append([]kafkabus.Option{kafkabus.Seeds(seeds...), kafkabus.Logger(eosLogger(t)),
		kafkabus.GroupTransactions(n.txnID)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

// eosTo returns a handler that publishes "T(value)" to topic under the
// same key through the delivery publisher, inside the consumer's
// transaction, and counts per input value the calls that published.
func eosTo(topic string, calls *sync.Map) bus.Handler {
	return func(ctx context.Context, in *bus.Message) error {
		pub, ok := bus.DeliveryPublisher(ctx)
		if !ok {
			return errors.New("no delivery publisher: the subscriber is not transactional")
		}
		if err := pub.Publish(ctx, &bus.Message{Topic: topic, Key: in.Key, Value: []byte("T(" + string(in.Value) + ")"),
			Headers: []bus.Header{{Key: "src", Value: []byte(in.String())}}}); err != nil {
			return err
		}
		if calls != nil {
			n, _ := calls.LoadOrStore(string(in.Value), new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
		}
		return nil
	}
}

func eosCallsOf(calls *sync.Map, v string) int32 {
	n, ok := calls.Load(v)
	if !ok {
		return 0
	}
	return n.(*atomic.Int32).Load()
}

func eosSeq(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, prefix+strconv.Itoa(i))
	}
	return out
}

func eosWrapped(vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = "T(" + v + ")"
	}
	return out
}

// eosOutputsInKeyOrder fails unless the outputs of each key, "T(v<i>)",
// come in increasing i.
func eosOutputsInKeyOrder(t *testing.T, outs []*kgo.Record) {
	t.Helper()
	last := map[string]int{}
	for _, r := range outs {
		v, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(string(r.Value), "T(v"), ")"))
		if err != nil {
			t.Fatalf("output %q: %v", r.Value, err)
		}
		if prev, ok := last[string(r.Key)]; ok && v < prev {
			t.Errorf("key %s: output of v%d after v%d", r.Key, v, prev)
		}
		last[string(r.Key)] = v
	}
}

// TestSubscriberTransactionsExactlyOnce: a transactional subscriber whose
// handler publishes through the delivery publisher yields every consumed
// message's output exactly once at read_committed, over several polls
// (a first batch of 60 at 25 per poll, then 30 one at a time), outputs of
// one key keep their order, and each message is handled once.
func TestSubscriberTransactionsExactlyOnce(t *testing.T) {
	seeds := eosBrokers(t)
	n := newEOSNames(t, seeds, 3)
	key := func(i int) string { return "k" + strconv.Itoa(i%7) }
	first := eosSeq("v", 0, 60)
	eosProduce(t, seeds, n.in, first, key)

	var calls sync.Map
	stop := eosRunning(t, eosSubscriber(t, seeds, n, kafkabus.MaxPollRecords(25)), n.group, n.in, eosTo(n.out, &calls))

	eosExactlyOnce(t, "outputs after the first batch", eosValues(eosRead(t, seeds, n.out, true, len(first))), eosWrapped(first))
	second := eosSeq("v", 60, 90)
	for i, v := range second {
		eosProduce(t, seeds, n.in, []string{v}, func(int) string { return key(60 + i) })
	}
	all := append(slices.Clone(first), second...)
	outs := eosRead(t, seeds, n.out, true, len(all))
	eosExactlyOnce(t, "outputs", eosValues(outs), eosWrapped(all))
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, v := range all {
		if c := eosCallsOf(&calls, v); c != 1 {
			t.Errorf("%s handled %d times, want 1", v, c)
		}
	}
	eosOutputsInKeyOrder(t, outs)
}

// TestSubscriberTransactionsFailureRetriesInPlace: a handler error does not
// end the poll's transaction: the subscriber retries the failing message
// in place. While it fails, what the poll produced before it (the outputs
// of v0..v4) is on the broker but invisible at read_committed; once it
// succeeds the poll commits, and every output is visible exactly once, with
// no aborted copy anywhere, in order. The messages before the failure are
// not handled again.
func TestSubscriberTransactionsFailureRetriesInPlace(t *testing.T) {
	seeds := eosBrokers(t)
	n := newEOSNames(t, seeds, 1)
	in := eosSeq("v", 0, 10)
	eosProduce(t, seeds, n.in, in, func(int) string { return "k" })

	var (
		calls             sync.Map
		failures          atomic.Int32
		onBroker, visible = -1, -1
		readErr           error
	)
	base := eosTo(n.out, &calls)
	h := func(ctx context.Context, m *bus.Message) error {
		if string(m.Value) == "v5" && failures.Add(1) == 1 {
			recs, err := eosReadTopic(seeds, n.out, false, 5)
			onBroker, readErr = len(recs), err
			if err == nil {
				recs, err = eosReadTopic(seeds, n.out, true, 0)
				visible, readErr = len(recs), err
			}
			return errors.New("flaky dependency")
		}
		return base(ctx, m)
	}
	sub := eosSubscriber(t, seeds, n, kafkabus.RetryBackoff(10*time.Millisecond, 50*time.Millisecond))
	stop := eosRunning(t, sub, n.group, n.in, h)
	outs := eosRead(t, seeds, n.out, true, len(in))
	eosExactlyOnce(t, "committed outputs", eosValues(outs), eosWrapped(in))
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if readErr != nil {
		t.Fatal(readErr)
	}
	if onBroker != 5 || visible != 0 {
		t.Fatalf("when v5 failed: %d outputs on the broker and %d visible at read_committed, want 5 and 0", onBroker, visible)
	}
	eosExactlyOnce(t, "read_uncommitted outputs", eosValues(eosRead(t, seeds, n.out, false, len(in))), eosWrapped(in))
	if f := failures.Load(); f < 2 {
		t.Fatalf("v5 was tried %d times, want a retry after its failure", f)
	}
	for _, v := range in {
		if c := eosCallsOf(&calls, v); c != 1 {
			t.Errorf("%s handled %d times, want 1", v, c)
		}
	}
	eosOutputsInKeyOrder(t, outs)
}

// TestSubscriberTransactionsUnfinishedPollAborts: a poll that cannot be
// finished (v5 keeps failing until the subscriber is stopped, with no grace)
// aborts its transaction: the outputs it produced reached the broker but
// never become visible at read_committed, and the next subscriber of the
// group handles the poll's messages again, each output then exactly once.
func TestSubscriberTransactionsUnfinishedPollAborts(t *testing.T) {
	seeds := eosBrokers(t)
	n := newEOSNames(t, seeds, 1)
	in := eosSeq("v", 0, 10)
	eosProduce(t, seeds, n.in, in, func(int) string { return "k" })

	var (
		calls  sync.Map
		failed = make(chan struct{})
		once   sync.Once
	)
	base := eosTo(n.out, &calls)
	failing := func(ctx context.Context, m *bus.Message) error {
		if string(m.Value) == "v5" {
			once.Do(func() { close(failed) })
			return errors.New("dependency down")
		}
		return base(ctx, m)
	}
	stop := eosRunning(t, eosSubscriber(t, seeds, n, kafkabus.ShutdownGrace(0),
		kafkabus.RetryBackoff(10*time.Millisecond, 50*time.Millisecond)), n.group, n.in, failing)
	select {
	case <-failed:
	case <-time.After(60 * time.Second):
		t.Fatal("v5 was never handled")
	}
	if got := eosRead(t, seeds, n.out, false, 5); len(got) != 5 {
		t.Fatalf("read_uncommitted sees %d outputs while v5 fails, want the 5 of v0..v4", len(got))
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := eosRead(t, seeds, n.out, true, 0); len(got) != 0 {
		t.Fatalf("read_committed sees %d outputs of the unfinished poll, want none", len(got))
	}

	stop = eosRunning(t, eosSubscriber(t, seeds, n), n.group, n.in, base)
	eosExactlyOnce(t, "committed outputs", eosValues(eosRead(t, seeds, n.out, true, len(in))), eosWrapped(in))
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := eosRead(t, seeds, n.out, false, len(in)+5); len(got) != len(in)+5 {
		t.Fatalf("read_uncommitted sees %d outputs, want %d: the aborted poll's 5 and the committed %d", len(got), len(in)+5, len(in))
	}
	for _, v := range []string{"v0", "v4"} {
		if c := eosCallsOf(&calls, v); c != 2 {
			t.Errorf("%s handled %d times, want twice: in the aborted poll and again", v, c)
		}
	}
	if c := eosCallsOf(&calls, "v5"); c != 1 {
		t.Errorf("v5 handled %d times, want once, by the second subscriber", c)
	}
}

// Environment of the crash helper process.
const (
	eosCrashEnvSeeds = "KAFKABUS_EOS_CRASH_SEEDS"
	eosCrashEnvNames = "KAFKABUS_EOS_CRASH_NAMES" // in,out,group,txnID
	eosCrashEnvAfter = "KAFKABUS_EOS_CRASH_AFTER"
)

// eosCrashInstance is the instance id of the killed subscriber and of its
// successor, so that the successor takes over its group membership at once.
const eosCrashInstance = "crash-test"

// eosCrashTimeout is the transaction timeout of the killed subscriber: the
// broker aborts its open transaction this long after it began.
const eosCrashTimeout = 5 * time.Second

// TestSubscriberTransactionsCrashHelper is the process
// TestSubscriberTransactionsCrashMidPoll kills: it handles messages until
// the n-th, says so on stdout and hangs inside the open transaction.
func TestSubscriberTransactionsCrashHelper(t *testing.T) {
	if os.Getenv(eosCrashEnvSeeds) == "" {
		t.Skip("run by TestSubscriberTransactionsCrashMidPoll in a child process")
	}
	seeds := strings.Split(os.Getenv(eosCrashEnvSeeds), ",")
	names := strings.Split(os.Getenv(eosCrashEnvNames), ",")
	after, _ := strconv.Atoi(os.Getenv(eosCrashEnvAfter))
	var calls atomic.Int32
	base := eosTo(names[1], nil)
	h := func(ctx context.Context, m *bus.Message) error {
		if int(calls.Add(1)) > after {
			fmt.Printf("hanging at %s\n", m.Value)
			select {}
		}
		return base(ctx, m)
	}
	n := eosNames{in: names[0], out: names[1], group: names[2], txnID: names[3]}
	sub := eosSubscriber(t, seeds, n, kafkabus.InstanceID(eosCrashInstance), kafkabus.TransactionTimeout(eosCrashTimeout))
	_ = sub.Run(context.Background(), n.group, []string{n.in}, h)
}

// TestSubscriberTransactionsCrashMidPoll kills a transactional subscriber's
// process (SIGKILL) in the middle of a poll whose outputs already reached
// the broker. Its successor (the same instance id, so the same group
// member) handles the poll again and every input ends up with exactly one
// visible output. The successor's session has a transactional id of its
// own (see kafkabus.GroupTransactions), so it does not fence the dead
// transaction: the broker aborts that at its timeout, and until then it
// holds the output topic's read_committed readers back.
func TestSubscriberTransactionsCrashMidPoll(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a transaction timeout")
	}
	seeds := eosBrokers(t)
	n := newEOSNames(t, seeds, 1)
	in := eosSeq("v", 0, 20)
	eosProduce(t, seeds, n.in, in, func(int) string { return "k" })
	const after = 8

	cmd := exec.Command(os.Args[0], "-test.run=^TestSubscriberTransactionsCrashHelper$", "-test.v")
	cmd.Env = append(os.Environ(), eosCrashEnvSeeds+"="+strings.Join(seeds, ","),
		eosCrashEnvNames+"="+strings.Join([]string{n.in, n.out, n.group, n.txnID}, ","),
		eosCrashEnvAfter+"="+strconv.Itoa(after))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	hanging := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "hanging at ") {
				hanging <- sc.Text()
			}
		}
		close(hanging)
	}()
	select {
	case line, ok := <-hanging:
		if !ok {
			t.Fatal("helper process ended before hanging")
		}
		t.Log("helper:", line)
	case <-time.After(60 * time.Second):
		t.Fatal("helper process did not reach the hang")
	}
	// The dead process's outputs are on the broker, in its open transaction.
	if got := eosRead(t, seeds, n.out, false, after); len(got) != after {
		t.Fatalf("read_uncommitted sees %d outputs before the kill, want %d", len(got), after)
	}
	if got := eosRead(t, seeds, n.out, true, 0); len(got) != 0 {
		t.Fatalf("read_committed sees %d outputs of an open transaction", len(got))
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	var calls sync.Map
	stop := eosRunning(t, eosSubscriber(t, seeds, n, kafkabus.InstanceID(eosCrashInstance)), n.group, n.in, eosTo(n.out, &calls))
	eosExactlyOnce(t, "committed outputs after the crash", eosValues(eosRead(t, seeds, n.out, true, len(in))), eosWrapped(in))
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := len(eosRead(t, seeds, n.out, false, len(in)+after)); got != len(in)+after {
		t.Fatalf("read_uncommitted sees %d outputs, want %d: the dead transaction's %d and the committed %d", got, len(in)+after, after, len(in))
	}
	for _, v := range in {
		if c := eosCallsOf(&calls, v); c != 1 {
			t.Fatalf("%s handled %d times after the restart, want 1", v, c)
		}
	}
}
