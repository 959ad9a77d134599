package fault_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/herald-events/herald/platform/fault"
)

// TestStreak: a streak logs its first failure at Warn when transient and
// at Error otherwise, the rest at Debug, and its end once, with its length.
func TestStreak(t *testing.T) {
	for _, tc := range []struct {
		err   error
		level string
	}{
		{fault.Transient("database", errors.New("connection refused")), "level=WARN"},
		{errors.New("odd"), "level=ERROR"},
	} {
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		var s fault.Streak
		if s.Recovered(log, "recovered") {
			t.Fatal("Recovered reported the end of a streak that never began")
		}
		for range 3 {
			s.Fail(context.Background(), log, "failing", "still failing", tc.err)
		}
		if !s.Recovered(log, "recovered") || s.Recovered(log, "recovered") {
			t.Fatal("Recovered must report the end of a streak once")
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 4 || !strings.Contains(lines[0], tc.level) || !strings.Contains(lines[0], `msg=failing`) ||
			strings.Count(buf.String(), `level=DEBUG msg="still failing"`) != 2 ||
			!strings.Contains(lines[3], "level=INFO msg=recovered failed_for=") {
			t.Errorf("%v: logged\n%s\nwant a %s line, two Debug lines and a recovery line with its length", tc.err, buf.String(), tc.level)
		}
	}
}
