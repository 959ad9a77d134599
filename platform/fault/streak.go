package fault

import (
	"context"
	"log/slog"
	"time"
)

// Streak logs the failures of a loop that retries, as the operator wants
// them: one line when it starts failing (Warn for a transient error, see
// [IsTransient], Error otherwise), Debug while it goes on, and one line
// with how long it lasted when it ends. The zero value is ready to use.
type Streak struct{ since time.Time }

// Fail logs err: msg at the first failure of a streak, still (at Debug,
// with args) at the others.
func (s *Streak) Fail(ctx context.Context, log *slog.Logger, msg, still string, err error, args ...any) {
	if !s.since.IsZero() {
		log.Debug(still, append([]any{"err", err}, args...)...)
		return
	}
	s.since = time.Now()
	level := slog.LevelError
	if IsTransient(err) {
		level = slog.LevelWarn
	}
	log.Log(ctx, level, msg, "err", err, "dependency", DependencyOf(err))
}

// Recovered logs the end of a streak, if there was one, and reports it.
func (s *Streak) Recovered(log *slog.Logger, msg string) bool {
	if s.since.IsZero() {
		return false
	}
	log.Info(msg, "failed_for", time.Since(s.since).Round(time.Millisecond))
	s.since = time.Time{}
	return true
}
