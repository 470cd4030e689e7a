package e2e

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/handlers/alertmanager"
)

// TestPoisonEventIsTerminatedAndAudited: an event no engine can decode is
// not redelivered forever; it is terminated and lands in the audit trail,
// and the events behind it still flow.
func TestPoisonEventIsTerminatedAndAudited(t *testing.T) {
	bot := serveInProcess(t, slog.LevelError, nil)
	ctx := context.Background()
	poison := bus.Event{ID: "poison-1", Source: "solana", Type: "solana.rpc.unhealthy", Subject: "x", Data: []byte(`{"status":"maybe"}`)}
	if _, err := bot.srv.Bus.Publish(ctx, poison); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "event.terminated audit record", func() bool {
		recs, err := bot.srv.Bus.AuditTrail(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Kind == "event.terminated" && r.EventID == "poison-1" && r.Detail != "" {
				return true
			}
		}
		return false
	})
	if n := len(cards(bot.slack)); n != 0 {
		t.Fatalf("poison event posted %d cards", n)
	}
	body, err := os.ReadFile("../handlers/alertmanager/testdata/webhook.firing.single.json")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+bot.srv.Addr()+alertmanager.Path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	eventually(t, 20*time.Second, "the next event's card", func() bool { return len(cards(bot.slack)) == 1 })
}
