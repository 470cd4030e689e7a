package e2e

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/internal/testenv"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
)

// TestSIGTERMDrainsInFlightWork: SIGTERM arrives while the engine is in the
// middle of posting a card (Slack has the request and has not answered).
// The bot stops taking webhooks at once, waits for Slack, records and
// acknowledges the event, and exits 0. A restart on the same data posts
// nothing more: the work was finished, not dropped for redelivery.
func TestSIGTERMDrainsInFlightWork(t *testing.T) {
	slackSrv := slacktestutil.Start(t)
	hold := slackSrv.HoldNext(slacktestutil.PostMessage)
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	env := botEnv(addr, t.TempDir(),
		"INCIDENTBOT_SLACK_API_URL="+slackSrv.URL(),
		"INCIDENTBOT_SHUTDOWN_TIMEOUT=60s",
	)
	b := startBot(t, env...)
	exited := make(chan struct{}) // closed once the process has exited; then waitErr is set
	var waitErr error
	go func() { waitErr = b.cmd.Wait(); close(exited) }()
	t.Cleanup(func() { // runs before startBot's cleanup: only one Wait at a time
		_ = b.cmd.Process.Kill()
		<-exited
	})
	waitReady(t, addr)

	body := fixture(t, "webhook.firing.single.json")
	mustDeliver(t, addr, body)
	select {
	case <-hold.Arrived():
	case <-time.After(30 * time.Second):
		t.Fatal("engine never called Slack")
	}
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// New webhooks are refused while the in-flight one drains, so that
	// Alertmanager sends them to another replica or retries.
	eventually(t, 30*time.Second, "webhooks refused after SIGTERM", func() bool {
		_, err := deliver(addr, body)
		return err != nil
	})
	// Slack stays slow for a while longer; the bot must keep waiting for it.
	select {
	case <-exited:
		t.Fatalf("bot exited (%v) while its Slack call was in flight", waitErr)
	case <-time.After(3 * time.Second):
	}

	hold.Release()
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("bot exit after drain: %v, want status 0", waitErr)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("bot did not exit after its in-flight work finished")
	}
	if n := len(cards(slackSrv)); n != 1 {
		t.Fatalf("%d cards after drain, want 1", n)
	}
	if out := b.out.String(); !strings.Contains(out, "draining in-flight work") || strings.Contains(out, "did not drain in time") {
		t.Errorf("shutdown log does not show a completed drain:\n%s", out)
	}

	// Restart on the same data: the event was acknowledged, so nothing is
	// redelivered and no second card appears (claim timeout 2s).
	startBot(t, env...)
	waitReady(t, addr)
	time.Sleep(3 * time.Second)
	if n := slackSrv.Attempts(slacktestutil.PostMessage); n != 1 {
		t.Fatalf("%d chat.postMessage calls after restart, want 1 (the drained one)", n)
	}
}
