// Package ratelog bounds how often one kind of log line is written, so
// that a flood (unauthenticated requests, a dependency that is down) cannot
// fill the log: at most one line per interval, which says how many were
// left out since the previous one.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Logger writes one kind of line at most once per interval. It is safe for
// concurrent use.
type Logger struct {
	log   *slog.Logger
	level slog.Level
	every time.Duration
	now   func() time.Time

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// New returns a Logger writing to log at level, at most once every every.
func New(log *slog.Logger, level slog.Level, every time.Duration) *Logger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Logger{log: log, level: level, every: every, now: time.Now}
}

// Log writes msg with args, unless a line was written less than the
// interval ago: then it only counts it. A written line carries
// "suppressed", the number left out since the previous line, when any
// were. It reports whether it wrote.
func (l *Logger) Log(ctx context.Context, msg string, args ...any) bool {
	l.mu.Lock()
	now := l.now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		l.mu.Unlock()
		return false
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	l.log.Log(ctx, l.level, msg, args...)
	return true
}
