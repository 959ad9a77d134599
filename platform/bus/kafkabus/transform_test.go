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

// xfBrokers returns the Kafka to test the transformer on: the real one
// named by HERALD_KAFKA_BROKERS, or a fresh kfake cluster.
func xfBrokers(t *testing.T) []string {
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

// xfNames returns names unique to this run, so runs can share a real
// cluster: topics in and out (and in.dlq), a group and a transactional id.
type xfNames struct{ in, out, dlq, group, txnID string }

func newXFNames(t *testing.T, seeds []string, partitions int32) xfNames {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	p := "kafkabus-xf-" + hex.EncodeToString(b[:])
	n := xfNames{in: p + ".in", out: p + ".out", dlq: p + ".in.dlq", group: p + "-group", txnID: p + "-txn"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := kafkabus.EnsureTopics(ctx, partitions, -1, []string{n.in, n.out, n.dlq}, kafkabus.Seeds(seeds...), kafkabus.Logger(xfLogger(t))); err != nil {
		t.Fatal(err)
	}
	return n
}

func xfLogger(t *testing.T) *slog.Logger {
	if os.Getenv("HERALD_TEST_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// xfProduce writes values to topic, keyed by key(i), in one call.
func xfProduce(t *testing.T, seeds []string, topic string, values []string, key func(i int) string) {
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

// xfRead reads topic from the start, at read_committed isolation or not,
// until it has at least want records (or 30s passed) and then for another
// moment, so that extra records show up too.
func xfRead(t *testing.T, seeds []string, topic string, committed bool, want int) []*kgo.Record {
	t.Helper()
	recs, err := xfReadTopic(seeds, topic, committed, want)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// xfReadTopic is xfRead for goroutines other than the test's.
func xfReadTopic(seeds []string, topic string, committed bool, want int) ([]*kgo.Record, error) {
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

// xfValues returns the values of recs, in order.
func xfValues(recs []*kgo.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Value)
	}
	return out
}

// xfExactlyOnce fails unless got holds each of want exactly once.
func xfExactlyOnce(t *testing.T, what string, got, want []string) {
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

// xfRunning runs tr in the background; stop cancels it and returns Run's error.
func xfRunning(t *testing.T, tr *kafkabus.Transformer, group, topic string, fn kafkabus.TransformFunc) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, group, []string{topic}, fn) }()
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

// xfTo returns a TransformFunc producing "T(value)" to topic under the same
// key, counting calls per input value.
func xfTo(topic string, calls *sync.Map) kafkabus.TransformFunc {
	return func(_ context.Context, in *bus.Message) ([]*bus.Message, error) {
		if calls != nil {
			n, _ := calls.LoadOrStore(string(in.Value), new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
		}
		return []*bus.Message{{Topic: topic, Key: in.Key, Value: []byte("T(" + string(in.Value) + ")"),
			Headers: []bus.Header{{Key: "src", Value: []byte(in.String())}}}}, nil
	}
}

func xfCallsOf(calls *sync.Map, v string) int32 {
	n, ok := calls.Load(v)
	if !ok {
		return 0
	}
	return n.(*atomic.Int32).Load()
}

func xfSeq(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, prefix+strconv.Itoa(i))
	}
	return out
}

func xfWrapped(vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = "T(" + v + ")"
	}
	return out
}

// TestTransformerExactlyOnce: every consumed message yields its output
// exactly once at read_committed, outputs of one key keep their order, and
// OnCommit hears of each message once.
func TestTransformerExactlyOnce(t *testing.T) {
	seeds := xfBrokers(t)
	n := newXFNames(t, seeds, 3)
	key := func(i int) string { return "k" + strconv.Itoa(i%7) }
	first := xfSeq("v", 0, 60)
	xfProduce(t, seeds, n.in, first, key)

	var committed atomic.Int32
	tr, err := kafkabus.NewTransformer(kafkabus.Seeds(seeds...), kafkabus.Logger(xfLogger(t)),
		kafkabus.TransactionalID(n.txnID), kafkabus.MaxPollRecords(25),
		kafkabus.OnCommit(func(_ *bus.Message, out []*bus.Message, dead bool) {
			if len(out) != 1 || dead {
				t.Errorf("OnCommit: %d outputs, dead letter %v; want 1, false", len(out), dead)
			}
			committed.Add(1)
		}))
	if err != nil {
		t.Fatal(err)
	}
	stop := xfRunning(t, tr, n.group, n.in, xfTo(n.out, nil))

	xfExactlyOnce(t, "outputs after the first batch", xfValues(xfRead(t, seeds, n.out, true, len(first))), xfWrapped(first))
	second := xfSeq("v", 60, 90)
	for i, v := range second {
		xfProduce(t, seeds, n.in, []string{v}, func(int) string { return key(60 + i) })
	}
	all := append(slices.Clone(first), second...)
	outs := xfRead(t, seeds, n.out, true, len(all))
	xfExactlyOnce(t, "outputs", xfValues(outs), xfWrapped(all))
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := committed.Load(); got != int32(len(all)) {
		t.Fatalf("OnCommit called for %d messages, want %d", got, len(all))
	}

	last := map[string]int{}
	for _, r := range outs {
		v, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(string(r.Value), "T(v"), ")"))
		if prev, ok := last[string(r.Key)]; ok && v < prev {
			t.Errorf("key %s: output of v%d after v%d", r.Key, v, prev)
		}
		last[string(r.Key)] = v
	}
}

// TestTransformerFailureAbortsAndRepeats: a function error aborts the poll's
// transaction; what the poll had produced stays invisible at read_committed
// (though it reached the broker), and the poll's messages are transformed
// again.
func TestTransformerFailureAbortsAndRepeats(t *testing.T) {
	seeds := xfBrokers(t)
	n := newXFNames(t, seeds, 1)
	in := xfSeq("v", 0, 10)
	xfProduce(t, seeds, n.in, in, func(int) string { return "k" })

	var (
		calls     sync.Map
		succeeded atomic.Int32
		failed    atomic.Bool
		aborted   int
		readErr   error
	)
	base := xfTo(n.out, &calls)
	fn := func(ctx context.Context, m *bus.Message) ([]*bus.Message, error) {
		if string(m.Value) == "v5" && failed.CompareAndSwap(false, true) {
			// Let the outputs of v0..v4 reach the broker first, so the
			// abort has something to hide.
			recs, err := xfReadTopic(seeds, n.out, false, int(succeeded.Load()))
			aborted, readErr = len(recs), err
			return nil, errors.New("flaky dependency")
		}
		succeeded.Add(1)
		return base(ctx, m)
	}
	tr, err := kafkabus.NewTransformer(kafkabus.Seeds(seeds...), kafkabus.Logger(xfLogger(t)),
		kafkabus.TransactionalID(n.txnID), kafkabus.RetryBackoff(10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	stop := xfRunning(t, tr, n.group, n.in, fn)
	xfExactlyOnce(t, "committed outputs", xfValues(xfRead(t, seeds, n.out, true, len(in))), xfWrapped(in))
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if readErr != nil {
		t.Fatal(readErr)
	}
	if aborted < 5 {
		t.Fatalf("%d outputs on the broker when v5 failed, want the 5 of v0..v4", aborted)
	}
	if uncommitted := xfRead(t, seeds, n.out, false, len(in)+5); len(uncommitted) < len(in)+5 {
		t.Fatalf("read_uncommitted sees %d outputs, want %d: the aborted attempt's and the committed ones", len(uncommitted), len(in)+5)
	}
	// calls counts successful transformations.
	for _, v := range []string{"v0", "v4"} {
		if got := xfCallsOf(&calls, v); got < 2 {
			t.Errorf("%s transformed %d times, want twice: in the aborted transaction and again", v, got)
		}
	}
	if got := xfCallsOf(&calls, "v5"); got != 1 {
		t.Errorf("v5 transformed %d times after its failure, want 1", got)
	}
}

var errXFPoison = errors.New("poison")

// TestTransformerDeadLetter: a permanent failure is produced to the
// dead-letter topic in the same transaction, and the messages around it go
// on; a transient failure is retried.
func TestTransformerDeadLetter(t *testing.T) {
	seeds := xfBrokers(t)
	n := newXFNames(t, seeds, 1)
	xfProduce(t, seeds, n.in, []string{"a", "poison", "b", "flaky", "c"}, func(i int) string { return "k" + strconv.Itoa(i) })

	var (
		flaky atomic.Int32
		dead  sync.Map
	)
	base := xfTo(n.out, nil)
	fn := func(ctx context.Context, m *bus.Message) ([]*bus.Message, error) {
		switch string(m.Value) {
		case "poison":
			return nil, fmt.Errorf("decode: %w", errXFPoison)
		case "flaky":
			if flaky.Add(1) == 1 {
				return nil, errors.New("timeout")
			}
		}
		return base(ctx, m)
	}
	dlq := func(_ context.Context, in *bus.Message, err error) *bus.Message {
		if !errors.Is(err, errXFPoison) {
			return nil
		}
		dl := &bus.Message{Topic: in.Topic + ".dlq", Key: in.Key, Value: in.Value, Headers: slices.Clone(in.Headers)}
		dl.SetHeader("reason", err.Error())
		return dl
	}
	tr, err := kafkabus.NewTransformer(kafkabus.Seeds(seeds...), kafkabus.Logger(xfLogger(t)),
		kafkabus.TransactionalID(n.txnID), kafkabus.RetryBackoff(10*time.Millisecond, 50*time.Millisecond),
		kafkabus.DeadLetter(dlq),
		kafkabus.OnCommit(func(in *bus.Message, _ []*bus.Message, d bool) {
			if d {
				dead.Store(string(in.Value), true)
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	stop := xfRunning(t, tr, n.group, n.in, fn)
	xfExactlyOnce(t, "outputs", xfValues(xfRead(t, seeds, n.out, true, 4)), xfWrapped([]string{"a", "b", "flaky", "c"}))
	dls := xfRead(t, seeds, n.dlq, true, 1)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(dls) != 1 || string(dls[0].Value) != "poison" || string(dls[0].Key) != "k1" {
		t.Fatalf("dead letters %v, want the poison message once", xfValues(dls))
	}
	if r := dls[0].Headers; len(r) != 1 || r[0].Key != "reason" || string(r[0].Value) != "decode: poison" {
		t.Fatalf("dead letter headers %v, want reason", r)
	}
	if flaky.Load() < 2 {
		t.Fatalf("the transient failure was tried %d times, want a retry", flaky.Load())
	}
	if _, ok := dead.Load("poison"); !ok {
		t.Fatal("OnCommit did not report the dead letter")
	}
}

// Environment of the crash helper process.
const (
	crashEnvSeeds = "KAFKABUS_CRASH_SEEDS"
	crashEnvNames = "KAFKABUS_CRASH_NAMES" // in,out,group,txnID
	crashEnvAfter = "KAFKABUS_CRASH_AFTER"
)

// TestTransformerCrashHelper is the process TestTransformerCrashMidBatch
// kills: it transforms until the n-th message, says so on stdout and hangs
// inside the open transaction.
func TestTransformerCrashHelper(t *testing.T) {
	if os.Getenv(crashEnvSeeds) == "" {
		t.Skip("run by TestTransformerCrashMidBatch in a child process")
	}
	seeds := strings.Split(os.Getenv(crashEnvSeeds), ",")
	names := strings.Split(os.Getenv(crashEnvNames), ",")
	after, _ := strconv.Atoi(os.Getenv(crashEnvAfter))
	var calls atomic.Int32
	base := xfTo(names[1], nil)
	fn := func(ctx context.Context, m *bus.Message) ([]*bus.Message, error) {
		if int(calls.Add(1)) > after {
			fmt.Printf("hanging at %s\n", m.Value)
			select {}
		}
		return base(ctx, m)
	}
	tr, err := kafkabus.NewTransformer(kafkabus.Seeds(seeds...), kafkabus.Logger(xfLogger(t)),
		kafkabus.TransactionalID(names[3]),
		// A short session, so the group notices the killed member soon.
		kafkabus.ClientOptions(kgo.SessionTimeout(6*time.Second), kgo.RebalanceTimeout(6*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	_ = tr.Run(context.Background(), names[2], []string{names[0]}, fn)
}

// TestTransformerCrashMidBatch kills a transformer process (SIGKILL) in the
// middle of a transaction whose outputs already reached the broker. A new
// transformer with the same transactional id fences the dead one, its open
// transaction is aborted, and every input ends up with exactly one visible
// output.
func TestTransformerCrashMidBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a group session timeout")
	}
	seeds := xfBrokers(t)
	n := newXFNames(t, seeds, 1)
	in := xfSeq("v", 0, 20)
	xfProduce(t, seeds, n.in, in, func(int) string { return "k" })
	const after = 8

	cmd := exec.Command(os.Args[0], "-test.run=^TestTransformerCrashHelper$", "-test.v")
	cmd.Env = append(os.Environ(), crashEnvSeeds+"="+strings.Join(seeds, ","),
		crashEnvNames+"="+strings.Join([]string{n.in, n.out, n.group, n.txnID}, ","),
		crashEnvAfter+"="+strconv.Itoa(after))
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
	if got := xfRead(t, seeds, n.out, false, after); len(got) != after {
		t.Fatalf("read_uncommitted sees %d outputs before the kill, want %d", len(got), after)
	}
	if got := xfRead(t, seeds, n.out, true, 0); len(got) != 0 {
		t.Fatalf("read_committed sees %d outputs of an open transaction", len(got))
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	var calls sync.Map
	tr, err := kafkabus.NewTransformer(kafkabus.Seeds(seeds...), kafkabus.Logger(xfLogger(t)),
		kafkabus.TransactionalID(n.txnID))
	if err != nil {
		t.Fatal(err)
	}
	stop := xfRunning(t, tr, n.group, n.in, xfTo(n.out, &calls))
	xfExactlyOnce(t, "committed outputs after the crash", xfValues(xfRead(t, seeds, n.out, true, len(in))), xfWrapped(in))
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := len(xfRead(t, seeds, n.out, false, len(in)+after)); got != len(in)+after {
		t.Fatalf("read_uncommitted sees %d outputs, want %d: the dead transaction's %d and the committed %d", got, len(in)+after, after, len(in))
	}
	if c := xfCallsOf(&calls, "v0"); c != 1 {
		t.Fatalf("v0 transformed %d times after the restart, want 1", c)
	}
}
