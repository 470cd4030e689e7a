package e2e

import (
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/config"
	"github.com/incidentbot/incidentbot/watchers/solana"
	"github.com/incidentbot/incidentbot/watchers/solana/solanatest"
)

// rpcEndpointDown is the course's RPCEndpointDown for the primary endpoint
// as Alertmanager sends it (runbooks/tests/testdata), starting now.
func rpcEndpointDown(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../runbooks/tests/testdata/alertmanager/RPCEndpointDown.firing.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["alerts"].([]any)[0].(map[string]any)["startsAt"] = time.Now().Add(-2 * time.Minute).UTC()
	b, _ = json.Marshal(m)
	return b
}

// TestOneFaultOnePageThroughServe: the course's RPCEndpointDown over HTTP
// and the watchers' event for the same endpoint (the watchers running in
// serve against a fake node) make one incident, one card and one page,
// whichever comes first; the card says which joined.
func TestOneFaultOnePageThroughServe(t *testing.T) {
	for _, order := range []string{"alert first", "watcher first"} {
		t.Run(order, func(t *testing.T) {
			primary, backup := solanatest.NewServer(), solanatest.NewServer()
			t.Cleanup(primary.Close)
			t.Cleanup(backup.Close)
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
			alert := func() { mustDeliver(t, bot.srv.Addr(), rpcEndpointDown(t)) }
			watcher := func() { primary.SetHealth(solanatest.HealthBehind, 187) }
			first, second, joined := alert, watcher, "joined from SolanaRPCUnhealthy (Solana watchers, runbook solana-rpc-unhealthy)"
			if order == "watcher first" {
				first, second, joined = watcher, alert, "joined from RPCEndpointDown (Alertmanager, runbook rpc-endpoint-down)"
			}
			first()
			eventually(t, 30*time.Second, "the first card", func() bool { return len(cards(bot.slack)) == 1 })
			eventually(t, 10*time.Second, "the page", func() bool { return len(bot.pd.Events()) == 1 })
			second()
			eventually(t, 30*time.Second, "the card to say what joined", func() bool {
				_, ok := cardWith(bot.slack, joined)
				return ok
			})
			time.Sleep(time.Second) // anything else queued would be delivered by now
			if n := len(cards(bot.slack)); n != 1 {
				t.Errorf("%d cards, want 1", n)
			}
			if evs := bot.pd.Events(); len(evs) != 1 || evs[0].EventAction != "trigger" {
				t.Errorf("pages %+v, want one trigger", evs)
			}
			card, _ := cardWith(bot.slack, joined)
			if !strings.Contains(string(card.Blocks), "RPCEndpointDown") || !strings.Contains(string(card.Blocks), "SolanaRPCUnhealthy") {
				t.Errorf("card does not list both alerts:\n%s", card.Blocks)
			}
		})
	}
}
