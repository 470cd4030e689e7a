package e2e

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
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
	mustDeliver(t, bot.srv.Addr(), fixture(t, "webhook.firing.single.json"))
	eventually(t, 20*time.Second, "the next event's card", func() bool { return len(cards(bot.slack)) == 1 })
}
