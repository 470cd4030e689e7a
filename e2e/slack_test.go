package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/config"
	slackin "github.com/incidentbot/incidentbot/handlers/slack"
	"github.com/incidentbot/incidentbot/internal/testenv"
	nslack "github.com/incidentbot/incidentbot/notify/slack"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
	"github.com/incidentbot/incidentbot/secret"
)

const signingSecret = "e2e-signing-secret-0123456789abcdef"

// slackPost sends a form body to the bot as Slack does, signed now, over
// real HTTP, and returns the status and the answer.
func slackPost(t *testing.T, addr, path string, body []byte) (int, string) {
	t.Helper()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(signingSecret))
	mac.Write([]byte("v0:" + ts + ":"))
	mac.Write(body)
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", ts)
	req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSlackThroughServe: through serve with real HTTP, a critical alert
// gets a card and a page; a signed `/incident ack` acknowledges it in
// PagerDuty with the same dedup key and edits the card to name the user;
// a double-clicked Acknowledge button acknowledges once; unknown input
// gets usage; a request that is not signed does nothing.
func TestSlackThroughServe(t *testing.T) {
	bot := serveInProcess(t, slog.LevelInfo, func(c *config.Config) { c.Slack.SigningSecret = secret.Secret(signingSecret) })
	addr, pd, sl := bot.srv.Addr(), bot.pd, bot.slack
	var mu sync.Mutex
	var answers []string
	responses := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		answers = append(answers, string(b))
		mu.Unlock()
	}))
	defer responses.Close()

	mustDeliver(t, addr, fixture(t, "webhook.firing.single.json"))
	eventually(t, 30*time.Second, "a card", func() bool { return len(cards(sl)) == 1 })
	eventually(t, 10*time.Second, "a page", func() bool { return len(pd.Events()) == 1 })
	id := pd.Events()[0].DedupKey
	if pd.Events()[0].EventAction != "trigger" || !strings.HasPrefix(id, "INC-") {
		t.Fatalf("page %+v", pd.Events()[0])
	}

	form := func(text, trigger string) []byte {
		return []byte(url.Values{"user_id": {"U0ADA"}, "user_name": {"ada"}, "command": {"/incident"}, "text": {text},
			"channel_id": {"C1"}, "trigger_id": {trigger}, "response_url": {responses.URL + "/commands"}}.Encode())
	}
	// A signed but empty body is a command with no text: help.
	if code, body := slackPost(t, addr, slackin.CommandsPath, nil); code != http.StatusOK || !strings.Contains(body, "Usage:") {
		t.Fatalf("signed empty command: %d %s", code, body)
	}
	unsigned, _ := http.Post("http://"+addr+slackin.CommandsPath, "application/x-www-form-urlencoded", bytes.NewReader(form("ack "+id, "t0")))
	unsigned.Body.Close()
	if unsigned.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned: %d, want 401", unsigned.StatusCode)
	}
	if code, body := slackPost(t, addr, slackin.CommandsPath, form("frobnicate", "t1")); code != http.StatusOK || !strings.Contains(body, "Usage:") {
		t.Fatalf("unknown command: %d %s", code, body)
	}
	code, body := slackPost(t, addr, slackin.CommandsPath, form("ack "+strings.ToLower(id), "t2"))
	if code != http.StatusOK || !strings.Contains(body, `"response_type":"ephemeral"`) || !strings.Contains(body, "accepted") {
		t.Fatalf("ack: %d %s", code, body)
	}
	eventually(t, 20*time.Second, "PagerDuty acknowledge", func() bool { return len(pd.Events()) == 2 })
	if ev := pd.Events()[1]; ev.EventAction != "acknowledge" || ev.DedupKey != id {
		t.Fatalf("second page %+v, want acknowledge of %s", ev, id)
	}
	eventually(t, 20*time.Second, "the card naming ada", func() bool {
		_, ok := cardWith(sl, "*ACKNOWLEDGED* by ada (slack)")
		return ok
	})

	// A second incident, its Acknowledge button clicked twice at once.
	mustDeliver(t, addr, fixture(t, "webhook.firing.grouped.json"))
	var value string
	eventually(t, 30*time.Second, "a second card with an Acknowledge button", func() bool {
		value = ackButton(sl, id)
		return value != ""
	})
	second, _, _ := nslack.ParseButtonValue(value)
	click := func(ts string) []byte {
		p, _ := json.Marshal(map[string]any{"type": "block_actions", "user": map[string]string{"id": "U0BOB", "username": "bob", "name": "bob"},
			"channel": map[string]string{"id": "C1"}, "response_url": responses.URL + "/actions", "trigger_id": "1.2." + ts,
			"actions": []map[string]string{{"action_id": nslack.ActionAck, "block_id": nslack.ActionsBlockID, "value": value, "type": "button", "action_ts": ts}}})
		return []byte("payload=" + url.QueryEscape(string(p)))
	}
	var wg sync.WaitGroup
	for _, ts := range []string{"1755093300.000001", "1755093300.000002"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, _ := slackPost(t, addr, slackin.InteractionsPath, click(ts)); code != http.StatusOK {
				t.Errorf("click: %d", code)
			}
		}()
	}
	wg.Wait()
	eventually(t, 20*time.Second, "the second incident acknowledged", func() bool {
		r, err := bot.srv.Engine.Get(context.Background(), second)
		return err == nil && r.Ack != nil
	})
	eventually(t, 10*time.Second, "both clicks answered", func() bool { mu.Lock(); defer mu.Unlock(); return len(answers) == 2 })
	time.Sleep(time.Second) // room for a second acknowledgement to show
	r, _ := bot.srv.Engine.Get(context.Background(), second)
	trail, err := bot.srv.Bus.AuditTrail(context.Background(), 10000)
	if err != nil {
		t.Fatal(err)
	}
	audited := 0
	for _, a := range trail {
		if a.Kind == "incident.acknowledged" && a.Incident == second {
			audited++
			if a.Attrs["actor_id"] != "U0BOB" || a.Attrs["transport"] != "http" {
				t.Errorf("audit %+v", a)
			}
		}
	}
	acks := 0
	for _, ev := range pd.Events() {
		if ev.EventAction == "acknowledge" && ev.DedupKey == second {
			acks++
		}
	}
	if len(r.Acks) != 1 || audited != 1 || acks > 1 {
		t.Fatalf("double click: %d acks recorded, %d audited, %d PagerDuty acknowledges; want one", len(r.Acks), audited, acks)
	}
}

// ackButton returns the Acknowledge button's value on the current card
// of an incident other than skip, or "".
func ackButton(sl *slacktestutil.Server, skip string) string {
	for _, c := range cards(sl) {
		cur, _ := sl.Card(c.Channel, c.TS)
		var blocks []struct {
			Type     string `json:"type"`
			Elements []struct {
				ActionID string `json:"action_id"`
				Value    string `json:"value"`
			} `json:"elements"`
		}
		_ = json.Unmarshal(cur.Blocks, &blocks)
		for _, b := range blocks {
			for _, e := range b.Elements {
				if b.Type == "actions" && e.ActionID == nslack.ActionAck && !strings.HasPrefix(e.Value, skip+"@") {
					return e.Value
				}
			}
		}
	}
	return ""
}

// TestSlackFlagsReadsRedis: `/incident flags` through serve lists the
// feature flags in the app's real Redis, read-only.
func TestSlackFlagsReadsRedis(t *testing.T) {
	r := testenv.StartRedis(t)
	if err := r.Client.Set(t.Context(), "feature:enable_escrow", "false", 0).Err(); err != nil {
		t.Fatal(err)
	}
	bot := serveInProcess(t, slog.LevelInfo, func(c *config.Config) {
		c.Slack.SigningSecret = secret.Secret(signingSecret)
		c.Redis.URL = secret.Secret(r.URL)
	})
	body := []byte(url.Values{"user_id": {"U0ADA"}, "user_name": {"ada"}, "command": {"/incident"}, "text": {"flags"}, "channel_id": {"C1"}}.Encode())
	code, answer := slackPost(t, bot.srv.Addr(), slackin.CommandsPath, body)
	if code != http.StatusOK || !strings.Contains(answer, "enable_escrow") || !strings.Contains(answer, `"response_type":"ephemeral"`) {
		t.Fatalf("/incident flags: %d %s", code, answer)
	}
	if v, _ := r.Client.Get(t.Context(), "feature:enable_escrow").Result(); v != "false" {
		t.Fatalf("reading the flags changed one: %q", v)
	}
}
