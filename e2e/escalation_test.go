package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/internal/testenv"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
)

// escalatingRunbook overrides the shipped high-error-rate runbook with a
// ladder of seconds: L2 after 4s, L3 after 10s.
const escalatingRunbook = `name: high-error-rate
title: High error rate
priority: 10
match:
  matchers: ['alertname="HighErrorRate"']
routing:
  critical: {channel: "#solana-dapps-alerts", page: true}
assessment: [{text: look}]
remediation:
  - {id: note, title: Note, action: manual, params: {text: look}}
escalation:
  - {name: L1, after: 0s, notify: "@oncall"}
  - {name: L2, after: 4s, notify: "@senior", mention: [S0SENIORS]}
  - {name: L3, after: 10s, notify: "@architects"}
`

func escalationReplies(s *slacktestutil.Server, card slacktestutil.Message) []string {
	var out []string
	for _, m := range s.Thread(card.Channel, card.TS) {
		if strings.HasPrefix(m.Text, "*escalated*") {
			out = append(out, m.Text)
		}
	}
	return out
}

// TestEscalationSurvivesKill9: nobody acknowledges; L2 is posted in the
// thread, the bot is killed with SIGKILL, and after the restart L3 is
// posted once and L2 never again. The timers live in the bus, not in the
// process.
func TestEscalationSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "high-error-rate.yaml"), []byte(escalatingRunbook), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	slackSrv := slacktestutil.Start(t)
	env := botEnv(addr, t.TempDir(), "INCIDENTBOT_SLACK_API_URL="+slackSrv.URL(), "INCIDENTBOT_RUNBOOKS_DIR="+dir)

	first := startBot(t, env...)
	waitReady(t, addr)
	mustDeliver(t, addr, fixture(t, "webhook.firing.single.json"))
	eventually(t, 30*time.Second, "the card", func() bool { return len(cards(slackSrv)) == 1 })
	card := cards(slackSrv)[0]
	eventually(t, 30*time.Second, "L2 in the thread", func() bool { return len(escalationReplies(slackSrv, card)) == 1 })
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()

	startBot(t, env...)
	waitReady(t, addr)
	eventually(t, 40*time.Second, "L3 after the restart", func() bool { return len(escalationReplies(slackSrv, card)) >= 2 })
	time.Sleep(3 * time.Second) // a repeated level would land here
	got := escalationReplies(slackSrv, card)
	if len(got) != 2 || !strings.Contains(got[0], "L2") || !strings.Contains(got[0], "<!subteam^S0SENIORS>") || !strings.Contains(got[1], "L3") {
		t.Fatalf("escalations in the thread: %q, want L2 (mentioning the group) then L3, once each", got)
	}
	if n := len(cards(slackSrv)); n != 1 {
		t.Fatalf("%d cards, want 1", n)
	}
}
