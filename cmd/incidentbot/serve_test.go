package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is an io.Writer safe for a running command and a test that
// reads what it wrote.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runningServe is `incidentbot serve` running in the test process.
type runningServe struct {
	cancel         context.CancelFunc
	done           chan error
	stdout, stderr *lockedBuffer
}

// startServe runs serve with args and env until it logs that it is
// serving, or returns early with the error it stopped with.
func startServe(t *testing.T, args, env []string) (*runningServe, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &runningServe{cancel: cancel, done: make(chan error, 1), stdout: &lockedBuffer{}, stderr: &lockedBuffer{}}
	go func() { s.done <- run(ctx, append([]string{"serve"}, args...), nil, s.stdout, s.stderr, env) }()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(s.stderr.String(), "incidentbot serving") {
		select {
		case err := <-s.done:
			cancel()
			if err == nil {
				t.Fatalf("serve returned nil before serving\n%s", s.stderr)
			}
			return nil, err
		case <-deadline:
			cancel()
			t.Fatalf("serve did not start in 30s\n%s", s.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Cleanup(func() { s.stop(t) })
	return s, nil
}

// stop cancels serve (SIGTERM) and waits for a clean exit.
func (s *runningServe) stop(t *testing.T) {
	t.Helper()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("serve stopped with %v\n%s", err, s.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("serve did not stop in 30s\n%s", s.stderr)
	}
}

// TestSecondServeOnOneDataDirRefuses: two bots on one data directory would
// both page; the second refuses to start and names the directory and the
// process holding it.
func TestSecondServeOnOneDataDirRefuses(t *testing.T) {
	dir := t.TempDir()
	first, err := startServe(t, []string{"--data-dir", dir, "--listen", "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatalf("first serve: %v", err)
	}
	second, err := startServe(t, []string{"--data-dir", dir, "--listen", "127.0.0.1:0"}, nil)
	if err == nil {
		second.stop(t)
		t.Fatal("a second serve on the same --data-dir started")
	}
	for _, want := range []string{dir, "is locked by pid", "--data-dir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("second serve: %v; want it to name %q", err, want)
		}
	}
	first.stop(t)
	if again, err := startServe(t, []string{"--data-dir", dir, "--listen", "127.0.0.1:0"}, nil); err != nil {
		t.Fatalf("serve after the first stopped: %v", err)
	} else {
		again.stop(t)
	}
}

// TestCleanShutdownLogsStopped: after SIGTERM and draining, the last log
// line says the bot stopped.
func TestCleanShutdownLogsStopped(t *testing.T) {
	s, err := startServe(t, []string{"--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.stop(t)
	lines := strings.Split(strings.TrimSpace(s.stderr.String()), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, `msg="incidentbot stopped"`) {
		t.Errorf("last log line %q, want the stopped line", last)
	}
}

// TestConsoleCardsWithoutWatchers: `make run`'s console shows the card
// apart from the log with its time, the page says which routing key it
// means, and with no Solana watcher configured no plan waits for an RPC
// view that will never come.
func TestConsoleCardsWithoutWatchers(t *testing.T) {
	s, err := startServe(t, []string{"--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(s.stderr.String())
	if addr == nil {
		t.Fatalf("no addr in log:\n%s", s.stderr)
	}
	body, err := os.ReadFile("../../handlers/alertmanager/testdata/webhook.firing.grouped.json")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+addr[1]+"/webhook/alertmanager", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(s.stdout.String(), "PAGE TRIGGER") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	out := s.stdout.String()
	for _, want := range []string{
		"\n┏━━ ", " UTC ━━ card #solana-dapps-alerts console-",
		"to the default PagerDuty service (pagerduty.routing_key)",
		"no RPC view: no Solana RPC watcher is configured",
		"\n┃      Check: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("console output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "no RPC view yet") {
		t.Errorf("console says %q with no watcher configured:\n%s", "no RPC view yet", out)
	}
}
