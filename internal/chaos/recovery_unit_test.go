package chaos_test

import (
	"math/rand/v2"
	"testing"
	"time"
)

// The suite's own arithmetic runs without the stack.

func TestRecoveryPoll(t *testing.T) {
	tests := []struct {
		name      string
		firstPoll int
		lastSeen  map[int64]int
		stuck     map[int64]bool
		want      int
	}{
		{"nothing pending at the end: the first poll after it", 4, map[int64]int{}, nil, 4},
		{"pending at the end only: the first poll after it", 4, map[int64]int{7: 3, 9: 3}, nil, 4},
		{"last seen pending at poll 10: recovered at 11", 4, map[int64]int{7: 6, 9: 10, 11: 8}, nil, 11},
		{"a stuck order does not hold the time", 4, map[int64]int{7: 6, 9: 40}, map[int64]bool{9: true}, 7},
		{"only stuck orders: the first poll after the end", 4, map[int64]int{9: 40}, map[int64]bool{9: true}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := recoveryPoll(tt.firstPoll, tt.lastSeen, tt.stuck); got != tt.want {
				t.Errorf("recoveryPoll = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestFaultSchedule(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	seen := map[faultKind]int{}
	for range 10000 {
		seen[pickKind(rng)]++
	}
	total := 0
	for _, k := range faultKinds {
		total += k.weight
	}
	for _, k := range faultKinds {
		want := 10000 * k.weight / total
		if got := seen[k.kind]; got < want*8/10 || got > want*12/10 {
			t.Errorf("%s drawn %d times in 10000, want about %d", k.kind, got, want)
		}
		for _, u := range []float64{0, 0.5, 0.999} {
			d := downtime(k.kind, u)
			if d < 0 || d > 8*time.Second {
				t.Errorf("%s: downtime(%v) = %s", k.kind, u, d)
			}
		}
	}
	if lo, hi := downtime(pauseKafka, 0), downtime(pauseKafka, 0.999); lo != 2*time.Second || hi >= 6*time.Second {
		t.Errorf("a broker pause lasts %s to %s, want 2 s to 6 s", lo, hi)
	}
}
