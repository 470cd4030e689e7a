// Package e2e holds end-to-end tests: real Alertmanager, the real bot
// (in-process or as a built binary), slack-go's test server and a
// PagerDuty Events API server.
package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
)

const token = "e2e-bearer-token-0123456789abcdef"

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cards returns the top-level posts (not thread replies).
func cards(s *slacktestutil.Server) []slacktestutil.Message {
	var out []slacktestutil.Message
	for _, m := range s.Posts() {
		if m.ThreadTS == "" {
			out = append(out, m)
		}
	}
	return out
}

func cardWith(s *slacktestutil.Server, substr string) (slacktestutil.Message, bool) {
	for _, c := range cards(s) {
		if cur, ok := s.Card(c.Channel, c.TS); ok && strings.Contains(cur.Text+string(cur.Blocks), substr) {
			return cur, true
		}
	}
	return slacktestutil.Message{}, false
}
