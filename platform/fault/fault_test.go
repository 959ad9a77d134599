package fault_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/fault"
)

func TestIsTransient(t *testing.T) {
	// A real refused connection: a port that was listening and is closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	_, refused := net.DialTimeout("tcp", addr, time.Second)
	if refused == nil {
		t.Skip("a closed port accepted a connection")
	}

	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", errors.New("bad row"), false},
		{"marked", fault.Transient("database", errors.New("down")), true},
		{"marked and wrapped", fmt.Errorf("confirm order: %w", fault.Transient("database", errors.New("down"))), true},
		{"refused connection", fmt.Errorf("publish: %w", refused), true},
		{"cancelled", context.Canceled, false},
		{"cancelled while marked", fault.Transient("kafka", context.Canceled), true},
		{"unmarked deadline", context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fault.IsTransient(tt.err); got != tt.want {
				t.Errorf("IsTransient(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestTransientKeepsTheFirstDependency(t *testing.T) {
	inner := fault.Transient("schema registry", errors.New("503"))
	outer := fault.Transient("database", fmt.Errorf("decode: %w", inner))
	if got := fault.DependencyOf(outer); got != "schema registry" {
		t.Errorf("DependencyOf = %q, want the innermost marking", got)
	}
	if fault.Transient("x", nil) != nil {
		t.Error("Transient(nil) is not nil")
	}
	if got := fault.DependencyOf(errors.New("x")); got != "" {
		t.Errorf("DependencyOf(unmarked) = %q", got)
	}
}

// TestConflict: a conflict is transient, of its dependency, and known as a
// conflict through wrapping; an outage is no conflict, and marking an
// error already marked keeps the first mark.
func TestConflict(t *testing.T) {
	deadlock := fmt.Errorf("deduct: %w", fault.Conflict("database", errors.New("deadlock detected")))
	if !fault.IsConflict(deadlock) || !fault.IsTransient(deadlock) || fault.DependencyOf(deadlock) != "database" {
		t.Fatalf("%v: conflict %v, transient %v, dependency %q; want a conflict of the database",
			deadlock, fault.IsConflict(deadlock), fault.IsTransient(deadlock), fault.DependencyOf(deadlock))
	}
	if got := deadlock.Error(); got != "deduct: database conflict: deadlock detected" {
		t.Fatalf("message %q", got)
	}
	down := fault.Transient("database", errors.New("refused"))
	if fault.IsConflict(down) || fault.IsConflict(fault.Conflict("database", down)) || fault.IsConflict(errors.New("plain")) {
		t.Fatal("an outage, or a plain error, counted as a conflict")
	}
	if fault.Conflict("database", nil) != nil {
		t.Fatal("Conflict(nil) is not nil")
	}
}
