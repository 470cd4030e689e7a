package ratelog

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestOneLinePerIntervalWithTheCount(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), slog.LevelWarn, time.Minute)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	for range 1000 {
		l.Log(context.Background(), "rejected", "remote", "1.2.3.4")
	}
	now = now.Add(time.Minute)
	l.Log(context.Background(), "rejected", "remote", "1.2.3.4")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), buf.String())
	}
	if strings.Contains(lines[0], "suppressed") || !strings.Contains(lines[1], "suppressed=999") {
		t.Errorf("lines %q, want the second to count the 999 left out", lines)
	}
}
