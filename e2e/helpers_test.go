// Package e2e holds end-to-end tests: real Alertmanager, the real bot
// (in-process or as a built binary), slack-go's test server and a
// PagerDuty Events API server.
package e2e

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/config"
	"github.com/incidentbot/incidentbot/handlers/alertmanager"
	"github.com/incidentbot/incidentbot/internal/testenv"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
	"github.com/incidentbot/incidentbot/secret"
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

// inProcess is the bot running inside the test process against
// slacktest and the PagerDuty test server.
type inProcess struct {
	srv   *app.Server
	slack *slacktestutil.Server
	pd    *testenv.PagerDuty
}

// serveInProcess configures the bot for the fakes (bearer token, Slack,
// PagerDuty, a temp data dir, a loopback port), lets edit adjust the
// configuration, and runs it — with the Solana watchers when configured —
// until the test ends, when it must drain without error.
func serveInProcess(t *testing.T, level slog.Level, edit func(*config.Config)) *inProcess {
	t.Helper()
	p := &inProcess{slack: slacktestutil.Start(t), pd: testenv.StartPagerDuty(t)}
	p.slack.RequireToken("xoxb-e2e")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = ln.Addr().String()
	cfg.Bus.DataDir = t.TempDir()
	cfg.Alertmanager.BearerToken = secret.Secret(token)
	cfg.Slack.Token, cfg.Slack.APIURL = "xoxb-e2e", p.slack.URL()
	cfg.Slack.ChannelRate = 0    // the fake Slack has no limit: bursts post unpaced
	cfg.Slack.StormThreshold = 0 // every alert of a burst gets its card
	cfg.PagerDuty.RoutingKey, cfg.PagerDuty.EventsURL = "R0UT1NGKEY0000000000000000000000", p.pd.URL
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
	srv, err := app.NewServer(ctx, cfg, log, app.Options{Listener: ln, Stdout: io.Discard})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server run: %v", err)
		}
	})
	p.srv = srv
	return p
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// fixture reads an Alertmanager payload from the receiver's testdata.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../handlers/alertmanager/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// deliver posts body to the bot's webhook with the test token, as
// Alertmanager does, and returns the status code.
func deliver(addr string, body []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+alertmanager.Path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// mustDeliver delivers body and fails the test unless the bot answers 200.
func mustDeliver(t testing.TB, addr string, body []byte) {
	t.Helper()
	code, err := deliver(addr, body)
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusOK {
		t.Fatalf("webhook: %d, want 200", code)
	}
}
