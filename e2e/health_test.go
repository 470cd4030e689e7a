package e2e

import (
	"log/slog"
	"net/http"
	"testing"
	"time"
)

// TestHealthAndReadiness: /healthz answers while the process lives;
// /readyz follows the bus, so a replica that lost NATS leaves the load
// balancer instead of answering 503 to every webhook.
func TestHealthAndReadiness(t *testing.T) {
	bot := serveInProcess(t, slog.LevelError, nil)
	get := func(path string) int {
		resp, err := http.Get("http://" + bot.srv.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := get("/healthz"); c != 200 {
		t.Fatalf("/healthz = %d", c)
	}
	if c := get("/readyz"); c != 200 {
		t.Fatalf("/readyz with the bus up = %d", c)
	}
	// Let the pipeline come all the way up (the engine's consumer exists
	// once a card is posted) so that losing the bus below is a loss at
	// run time, not a failure to start.
	mustDeliver(t, bot.srv.Addr(), fixture(t, "webhook.firing.single.json"))
	eventually(t, 20*time.Second, "the card", func() bool { return len(cards(bot.slack)) == 1 })

	bot.srv.Bus.Close()
	if c := get("/readyz"); c != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with the bus down = %d, want 503", c)
	}
	if c := get("/healthz"); c != 200 {
		t.Fatalf("/healthz with the bus down = %d; liveness must not follow the bus", c)
	}
}
