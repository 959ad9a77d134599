package kafkabus

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestStallWatch: a poll that waits while the group has records to read is
// cancelled with the reason; one that waits on an idle group is not.
func TestStallWatch(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, v := range []string{"a", "b", "c"} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	adm := kadm.NewClient(cl)
	commit := func(group string, at int64) {
		t.Helper()
		var os kadm.Offsets
		os.AddOffset("t", 0, at, -1)
		if _, err := adm.CommitOffsets(ctx, group, os); err != nil {
			t.Fatal(err)
		}
	}
	commit("behind", 0)
	commit("idle", 3)

	for _, tt := range []struct {
		group   string
		stalled bool
	}{{"behind", true}, {"idle", false}} {
		t.Run(tt.group, func(t *testing.T) {
			w := newStallWatch(ctx, adm, tt.group, 300*time.Millisecond)
			defer w.stop()
			w.polling(true)
			select {
			case <-w.ctx.Done():
				if !tt.stalled {
					t.Fatalf("an idle group's poll was cancelled: %v", w.err())
				}
				if err := w.err(); err == nil || !strings.Contains(err.Error(), "3 records") {
					t.Fatalf("stall reason %v; want the 3 waiting records named", err)
				}
			case <-time.After(2 * time.Second):
				if tt.stalled {
					t.Fatal("a poll with 3 records waiting was not cancelled")
				}
			}
		})
	}
}
