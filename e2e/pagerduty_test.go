package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/config"
	pdhook "github.com/incidentbot/incidentbot/handlers/pagerduty"
	"github.com/incidentbot/incidentbot/secret"
)

const pdSecret = "pd-whsec-7Kq2Vn9xR4tY1wZ8bC3dF6gH0jL5mP2s"

// pdWebhook builds a signed PagerDuty webhook v3 for our incident from the
// shared fixture, as PagerDuty sends it.
func pdWebhook(t *testing.T, eventType, incidentKey string) (body []byte, sig string) {
	t.Helper()
	raw, err := os.ReadFile("../handlers/pagerduty/testdata/incident_acknowledged.body.raw.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	ev := m["event"].(map[string]any)
	ev["event_type"] = eventType
	ev["occurred_at"] = time.Now().UTC().Format(time.RFC3339Nano)
	ev["data"].(map[string]any)["incident_key"] = incidentKey
	body, _ = json.Marshal(m)
	mac := hmac.New(sha256.New, []byte(pdSecret))
	mac.Write(body)
	return body, "v1=" + hex.EncodeToString(mac.Sum(nil))
}

func postPD(t *testing.T, addr string, body []byte, sig, webhookID string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+pdhook.Path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-PagerDuty-Signature", sig)
	req.Header.Set("X-Webhook-Id", webhookID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestPagerDutyAcknowledgesAndResolvesTheCard: a critical alert makes a
// card and a page; an acknowledgement made in PagerDuty names its person on
// the card and is not echoed back; a resolution made in PagerDuty resolves
// the card without a resolve sent back; the same webhook redelivered
// changes nothing.
func TestPagerDutyAcknowledgesAndResolvesTheCard(t *testing.T) {
	bot := serveInProcess(t, slog.LevelInfo, func(c *config.Config) { c.PagerDuty.WebhookSecret = secret.Secret(pdSecret) })
	mustDeliver(t, bot.srv.Addr(), fixture(t, "webhook.firing.single.json"))
	eventually(t, 20*time.Second, "card and page", func() bool { return len(cards(bot.slack)) == 1 && len(bot.pd.Events()) == 1 })
	key := bot.pd.Events()[0].DedupKey
	card := cards(bot.slack)[0]

	body, sig := pdWebhook(t, "incident.acknowledged", key)
	if code := postPD(t, bot.srv.Addr(), body, sig, "wh-ack"); code != http.StatusAccepted {
		t.Fatalf("ack webhook: %d", code)
	}
	eventually(t, 20*time.Second, "card names Dana", func() bool {
		cur, ok := bot.slack.Card(card.Channel, card.TS)
		return ok && strings.Contains(string(cur.Blocks), "ACKNOWLEDGED* by Dana Oncall (pagerduty)")
	})

	body, sig = pdWebhook(t, "incident.resolved", strings.ToLower(key))
	for range 2 { // PagerDuty's at-least-once delivery: the same webhook twice
		if code := postPD(t, bot.srv.Addr(), body, sig, "wh-resolve"); code != http.StatusAccepted {
			t.Fatalf("resolve webhook: %d", code)
		}
	}
	eventually(t, 20*time.Second, "card resolved", func() bool {
		cur, ok := bot.slack.Card(card.Channel, card.TS)
		return ok && strings.Contains(string(cur.Blocks), "RESOLVED* after") && strings.Contains(string(cur.Blocks), "by Dana Oncall (pagerduty)")
	})
	time.Sleep(time.Second) // an echo or a second change would land here
	if evs := bot.pd.Events(); len(evs) != 1 {
		t.Fatalf("PagerDuty got %d events, want only the trigger (no echo of its own ack or resolve): %+v", len(evs), evs)
	}
	resolvedReplies := 0
	for _, m := range bot.slack.Thread(card.Channel, card.TS) {
		if strings.HasPrefix(m.Text, "*resolved*") {
			resolvedReplies++
		}
	}
	if resolvedReplies != 1 {
		t.Fatalf("%d resolution replies in the thread, want 1", resolvedReplies)
	}
	// A forged webhook is refused.
	if code := postPD(t, bot.srv.Addr(), body, "v1=00", "wh-forged"); code != http.StatusUnauthorized {
		t.Fatalf("forged webhook: %d, want 401", code)
	}
}
