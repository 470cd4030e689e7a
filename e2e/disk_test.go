package e2e

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/internal/testenv"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
)

// TestAFullDiskIsSurvivedThroughServe: the disk under the embedded store
// fills. Webhooks answer 503 (Alertmanager retries) and /readyz says the
// store cannot write. Once space returns, the file store stays wedged, so
// the bot exits non-zero for its supervisor; restarted on the same data it
// takes the webhook, and the card accepted before the disk filled is not
// posted again.
func TestAFullDiskIsSurvivedThroughServe(t *testing.T) {
	disk := testenv.SmallDisk(t, 64<<20)
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	slackSrv := slacktestutil.Start(t)
	env := botEnv(addr, filepath.Join(disk, "data"),
		"INCIDENTBOT_SLACK_API_URL="+slackSrv.URL(),
		"INCIDENTBOT_BUS_PROBE_INTERVAL=200ms",
		"INCIDENTBOT_BUS_MIN_FREE_BYTES=16777216",
		"INCIDENTBOT_BUS_PUBLISH_TIMEOUT=2s",
		"INCIDENTBOT_BUS_AUDIT_MAX_BYTES=4194304", // reserved on the small disk
	)
	first := startBot(t, env...)
	waitReady(t, addr)
	mustDeliver(t, addr, fixture(t, "webhook.firing.single.json"))
	eventually(t, 30*time.Second, "the first card", func() bool { return len(cards(slackSrv)) == 1 })

	filler := testenv.Fill(t, disk)
	grouped := fixture(t, "webhook.firing.grouped.json")
	code, err := deliver(addr, grouped)
	if err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("webhook on a full disk: %d, %v; want 503 so Alertmanager retries", code, err)
	}
	eventually(t, 30*time.Second, "/readyz 503 saying the store cannot write", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 512)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(b.String(), "write to")
	})

	exited := make(chan error, 1)
	go func() { exited <- first.cmd.Wait() }()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Fatalf("bot exit after space returned: %v; want a non-zero exit", err)
		}
		if !strings.Contains(first.out.String(), "stopped writing") {
			t.Fatalf("the log does not say why the bot exited:\n%s", first.out.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatal("the bot neither recovered nor exited after space returned")
	}

	// Its supervisor starts it again on the same data.
	startBot(t, env...)
	waitReady(t, addr)
	mustDeliver(t, addr, grouped)
	eventually(t, 30*time.Second, "five more cards", func() bool { return len(cards(slackSrv)) == 6 })
	time.Sleep(3 * time.Second)
	if n := len(cards(slackSrv)); n != 6 {
		t.Fatalf("%d cards; want 6: the first one once, five for the grouped alerts", n)
	}
}
