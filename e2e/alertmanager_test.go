package e2e

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/handlers/alertmanager"
	"github.com/incidentbot/incidentbot/internal/testenv"
)

// TestRealAlertmanagerToSlackAndPagerDuty: a real Alertmanager delivers a
// critical and a warning alert to the bot, then their resolution. Slack
// gets one card per incident, edited in place on resolve; PagerDuty gets
// trigger then resolve for the critical one and nothing for the warning.
func TestRealAlertmanagerToSlackAndPagerDuty(t *testing.T) {
	bot := serveInProcess(t, slog.LevelInfo, nil)
	srv, slackSrv, pd := bot.srv, bot.slack, bot.pd
	ctx := context.Background()

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
