package e2e

import (
	"context"
	"io"
	"log/slog"
	"net"
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

// TestRealAlertmanagerToSlackAndPagerDuty: a real Alertmanager delivers a
// critical and a warning alert to the bot, then their resolution. Slack
// gets one card per incident, edited in place on resolve; PagerDuty gets
// trigger then resolve for the critical one and nothing for the warning.
func TestRealAlertmanagerToSlackAndPagerDuty(t *testing.T) {
	slackSrv := slacktestutil.Start(t)
	slackSrv.RequireToken("xoxb-e2e")
	pd := testenv.StartPagerDuty(t)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = ln.Addr().String()
	cfg.Bus.DataDir = t.TempDir()
	cfg.Alertmanager.BearerToken = secret.Secret(token)
	cfg.Slack.Token = "xoxb-e2e"
	cfg.Slack.APIURL = slackSrv.URL()
	cfg.PagerDuty.RoutingKey = "R0UT1NGKEY0000000000000000000000"
	cfg.PagerDuty.EventsURL = pd.URL
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := app.NewServer(ctx, cfg, log, app.Options{Listener: ln, Stdout: io.Discard})
	if err != nil {
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

	am := testenv.StartAlertmanager(t, "http://"+srv.Addr()+alertmanager.Path, token)
	start := time.Now().Add(-time.Minute).UTC()
	critical := testenv.Alert{
		Labels:      map[string]string{"alertname": "RPCEndpointDown", "severity": "critical", "endpoint": "primary"},
		Annotations: map[string]string{"summary": "Solana RPC endpoint is unreachable", "description": "Cannot connect to Solana RPC endpoint"},
		StartsAt:    start,
	}
	warning := testenv.Alert{
		Labels:      map[string]string{"alertname": "HighLatency", "severity": "warning", "service": "api"},
		Annotations: map[string]string{"summary": "High latency detected", "description": "P95 latency is above 1 second"},
		StartsAt:    start,
	}
	if err := am.Post(ctx, critical, warning); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "two cards", func() bool { return len(cards(slackSrv)) == 2 })
	eventually(t, 10*time.Second, "one page", func() bool { return len(pd.Events()) == 1 })
	ev := pd.Events()[0]
	if ev.EventAction != "trigger" || ev.Payload.Severity != "critical" || !strings.Contains(ev.Payload.Summary, "RPC") {
		t.Fatalf("page = %+v, want a critical trigger for the RPC alert", ev)
	}

	// Resolve both: Alertmanager sends the resolved notifications.
	end := time.Now().UTC()
	critical.EndsAt, warning.EndsAt = end, end
	if err := am.Post(ctx, critical, warning); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "page resolved", func() bool { return len(pd.Events()) == 2 })
	eventually(t, 30*time.Second, "both cards resolved", func() bool {
		n := 0
		for _, c := range cards(slackSrv) {
			if cur, ok := slackSrv.Card(c.Channel, c.TS); ok && strings.Contains(strings.ToUpper(cur.Text), "RESOLVED") {
				n++
			}
		}
		return n == 2
	})
	evs := pd.Events()
	if evs[1].EventAction != "resolve" || evs[1].DedupKey != evs[0].DedupKey {
		t.Fatalf("second page = %+v, want resolve with dedup key %s", evs[1], evs[0].DedupKey)
	}
	if n := len(cards(slackSrv)); n != 2 {
		t.Fatalf("%d cards after resolve, want the same 2 edited in place", n)
	}
	if len(slackSrv.Updates()) < 2 {
		t.Fatalf("%d card updates, want ≥ 2", len(slackSrv.Updates()))
	}
	// Let Alertmanager's repeat flushes pass: still no new card or page.
	time.Sleep(3 * time.Second)
	if n, p := len(cards(slackSrv)), len(pd.Events()); n != 2 || p != 2 {
		t.Fatalf("after settling: %d cards, %d pages; want 2 and 2", n, p)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
