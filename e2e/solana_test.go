package e2e

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/config"
	"github.com/incidentbot/incidentbot/internal/testenv"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
	"github.com/incidentbot/incidentbot/watchers/solana"
	"github.com/incidentbot/incidentbot/watchers/solana/solanatest"
)

// TestSolanaWatchersThroughServe: the watchers run inside serve against a
// fake Solana node pair. When the primary falls behind, its event crosses
// the bus, matches the shipped RPC runbook, pages, and the card proposes
// switching to the healthy backup; when it recovers, the card resolves.
// The course's metric names appear on /metrics.
func TestSolanaWatchersThroughServe(t *testing.T) {
	primary, backup := solanatest.NewServer(), solanatest.NewServer()
	t.Cleanup(primary.Close)
	t.Cleanup(backup.Close)
	primary.SetSlot(1000)
	backup.SetSlot(1000)
	slackSrv := slacktestutil.Start(t)
	pd := testenv.StartPagerDuty(t)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = ln.Addr().String()
	cfg.Bus.DataDir = t.TempDir()
	cfg.Alertmanager.BearerToken = token
	cfg.Slack.Token, cfg.Slack.APIURL = "xoxb-e2e", slackSrv.URL()
	cfg.PagerDuty.RoutingKey, cfg.PagerDuty.EventsURL = "R0UT1NGKEY0000000000000000000000", pd.URL
	cfg.Solana.Endpoints = []solana.EndpointConfig{
		{Name: "primary", URL: primary.URL(), WSURL: primary.WSURL(), Role: "primary"},
		{Name: "backup-1", URL: backup.URL(), WSURL: backup.WSURL(), Role: "backup"},
	}
	cfg.Solana.Health.Interval = 100 * time.Millisecond
	cfg.Solana.Health.Timeout = time.Second
	cfg.Solana.Health.UnhealthyAfter = 2
	cfg.Solana.Health.HealthyAfter = 2
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := app.NewServer(ctx, cfg, log, app.Options{Listener: ln, Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	w, err := app.Watchers(ctx, cfg, srv.Bus, srv.Registry, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, w.Run) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})

	primary.SetHealth(solanatest.HealthBehind, 187)
	eventually(t, 30*time.Second, "RPC card", func() bool { return len(cards(slackSrv)) == 1 })
	card, _ := cardWith(slackSrv, "primary")
	if !strings.Contains(string(card.Blocks), "backup-1") {
		t.Errorf("card does not propose the healthy backup:\n%s", card.Blocks)
	}
	if card.Channel != "#solana-dapps-alerts" {
		t.Errorf("card in %s, want #solana-dapps-alerts", card.Channel)
	}
	eventually(t, 10*time.Second, "page", func() bool { return len(pd.Events()) == 1 })

	primary.SetHealth(solanatest.HealthOK, 0)
	eventually(t, 30*time.Second, "page resolved", func() bool { return len(pd.Events()) == 2 })
	eventually(t, 10*time.Second, "card resolved", func() bool {
		cur, ok := slackSrv.Card(card.Channel, card.TS)
		return ok && strings.Contains(strings.ToUpper(cur.Text), "RESOLVED")
	})
	if n := len(cards(slackSrv)); n != 1 {
		t.Fatalf("%d cards, want 1", n)
	}

	resp, err := http.Get("http://" + srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`solana_rpc_up{endpoint="primary"} 1`,
		`solana_rpc_up{endpoint="backup-1"} 1`,
		`solana_rpc_slot_lag{endpoint="primary"}`,
		`solana_rpc_request_duration_seconds_bucket{endpoint="primary",method="getHealth"`,
		`incidentbot_events_processed_total{result="ok",source="solana"}`,
		`incidentbot_notifications_total{op="trigger",result="ok",sink="pager"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
