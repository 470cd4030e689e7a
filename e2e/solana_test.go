package e2e

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/config"
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
	bot := serveInProcess(t, slog.LevelWarn, func(cfg *config.Config) {
		cfg.Solana.Endpoints = []solana.EndpointConfig{
			{Name: "primary", URL: primary.URL(), WSURL: primary.WSURL(), Role: "primary"},
			{Name: "backup-1", URL: backup.URL(), WSURL: backup.WSURL(), Role: "backup"},
		}
		cfg.Solana.Health.Interval = 100 * time.Millisecond
		cfg.Solana.Health.Timeout = time.Second
		cfg.Solana.Health.UnhealthyAfter = 2
		cfg.Solana.Health.HealthyAfter = 2
	})
	srv, slackSrv, pd := bot.srv, bot.slack, bot.pd

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
