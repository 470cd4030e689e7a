package e2e

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/internal/testenv"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
)

// buildBot compiles the incidentbot binary once per test run.
var buildBot = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "incidentbot-e2e")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "incidentbot")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/incidentbot").CombinedOutput()
	if err != nil {
		return "", &buildError{out: string(out), err: err}
	}
	return bin, nil
})

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

type bot struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

func startBot(t *testing.T, env ...string) *bot {
	t.Helper()
	bin, err := buildBot()
	if err != nil {
		t.Fatalf("build incidentbot: %v", err)
	}
	b := &bot{out: &bytes.Buffer{}}
	b.cmd = exec.Command(bin, "serve")
	b.cmd.Env = append(os.Environ(), env...)
	b.cmd.Stdout, b.cmd.Stderr = b.out, b.out
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = b.cmd.Process.Kill()
		_ = b.cmd.Wait()
		if t.Failed() {
			t.Logf("bot output:\n%s", b.out.String())
		}
	})
	return b
}

// botEnv is the environment of a built bot listening on addr with its bus
// under dataDir, the test's webhook token and a Slack token, plus extra.
func botEnv(addr, dataDir string, extra ...string) []string {
	return append([]string{
		"INCIDENTBOT_LISTEN=" + addr,
		"INCIDENTBOT_BUS_DATA_DIR=" + dataDir,
		"INCIDENTBOT_ALERTMANAGER_BEARER_TOKEN=" + token,
		"INCIDENTBOT_SLACK_TOKEN=xoxb-e2e",
		"INCIDENTBOT_SLACK_CHANNEL_RATE=0",    // the fake Slack has no limit: bursts post unpaced
		"INCIDENTBOT_SLACK_STORM_THRESHOLD=0", // every alert of a burst gets its card
	}, extra...)
}

func waitReady(t *testing.T, addr string) {
	t.Helper()
	eventually(t, 30*time.Second, "bot ready", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// TestCrashAfterAckBeforeSlackPostsOnceOnRestart: the webhook is
// acknowledged (durably published), the engine starts posting the card,
// and the process is SIGKILLed while Slack has not answered. On restart the
// event is redelivered and the card is posted — once.
func TestCrashAfterAckBeforeSlackPostsOnceOnRestart(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	slackSrv := slacktestutil.Start(t)
	env := botEnv(addr, t.TempDir(),
		"INCIDENTBOT_SLACK_API_URL="+slackSrv.URL(),
		"INCIDENTBOT_LOG_LEVEL=debug",
	)

	// First life: Slack receives the card and never answers.
	hold := slackSrv.HoldNext(slacktestutil.PostMessage)
	first := startBot(t, env...)
	waitReady(t, addr)
	mustDeliver(t, addr, fixture(t, "webhook.firing.single.json"))
	select {
	case <-hold.Arrived():
	case <-time.After(30 * time.Second):
		t.Fatal("engine never called Slack")
	}
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()

	// Second life: Slack answers (the held call died with its client).
	startBot(t, env...)
	waitReady(t, addr)
	eventually(t, 60*time.Second, "card posted after restart", func() bool { return len(cards(slackSrv)) >= 1 })
	time.Sleep(3 * time.Second) // any duplicate would show by now (claim timeout 2s)
	if n := len(cards(slackSrv)); n != 1 {
		t.Fatalf("%d cards after restart, want 1", n)
	}
}

// TestDuplicateDeliveriesMakeOneCard: Alertmanager's retries and an HA
// pair's double sends of one payload produce one card.
func TestDuplicateDeliveriesMakeOneCard(t *testing.T) {
	slackSrv := slacktestutil.Start(t)
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	startBot(t, botEnv(addr, t.TempDir(), "INCIDENTBOT_SLACK_API_URL="+slackSrv.URL())...)
	waitReady(t, addr)
	body := fixture(t, "webhook.firing.grouped.json")
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, err := deliver(addr, body); err != nil || code != http.StatusOK {
				t.Errorf("delivery: %d %v, want 200", code, err)
			}
		}()
	}
	wg.Wait()
	// The grouped payload holds five alerts of five runbooks: five cards.
	eventually(t, 30*time.Second, "five cards", func() bool { return len(cards(slackSrv)) == 5 })
	time.Sleep(2 * time.Second)
	if n := len(cards(slackSrv)); n != 5 {
		t.Fatalf("%d cards, want 5", n)
	}
}
