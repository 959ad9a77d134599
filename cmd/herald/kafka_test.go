package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/bus/kafkabus/kafkatest"
)

// TestKafkaTransactionsHeal: `herald kafka transactions` lists a
// transaction the coordinator committed but whose marker the partition
// never got, exits 1 while it is open, and with --heal closes it.
func TestKafkaTransactionsHeal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := fmt.Sprintf("heal%d", time.Now().UnixNano())
	b, topic := kafkatest.Start(ctx, t, ns+".herald.orders.v1-", 2)
	brokers := b.Seeds
	commit := true
	if err := kafkatest.Hang(ctx, b.Cl, nil, ns+"-relay", topic, 0, 1, "an order", &commit); err != nil {
		t.Fatal(err)
	}

	cmd := func(extra ...string) (string, error) {
		var out, errOut bytes.Buffer
		// Not __consumer_offsets: other tests' groups may have
		// transactions running there.
		args := append([]string{"kafka", "transactions", "--kafka-brokers", brokers, "--namespace", ns, "--min-open", "0s",
			"--consumer-offsets=false"}, extra...)
		err := run(ctx, args, func(string) string { return "" }, &out, &errOut)
		return out.String(), err
	}
	out, err := cmd()
	if err == nil || !strings.Contains(out, topic+"/0 ") || !strings.Contains(out, "the coordinator decided: commit") {
		t.Fatalf("listing: err %v, output:\n%s\nwant exit 1 and %s/0 decided commit", err, out, topic)
	}
	out, err = cmd("--heal")
	if err != nil || !strings.Contains(out, "healed "+topic+"/0: commit marker") {
		t.Fatalf("--heal: err %v, output:\n%s", err, out)
	}
	out, err = cmd()
	if err != nil || !strings.Contains(out, "no transaction open") {
		t.Fatalf("after --heal: err %v, output:\n%s", err, out)
	}
}
