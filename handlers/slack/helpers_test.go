package slack_test

import (
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
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/handlers/alertmanager"
	slackin "github.com/incidentbot/incidentbot/handlers/slack"
	"github.com/incidentbot/incidentbot/internal/testenv"
	"github.com/incidentbot/incidentbot/notify/pagerduty"
	nslack "github.com/incidentbot/incidentbot/notify/slack"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
	"github.com/incidentbot/incidentbot/rpcview"
	"github.com/incidentbot/incidentbot/runbooks"
	"github.com/incidentbot/incidentbot/secret"
)

// The fixtures' made-up signing secret and the first incident's id.
const (
	fixtureSecret = "8e4f2b1c9d7a6e5f4a3b2c1d0e9f8a7b"
	fixtureID     = "INC-2041"
	fixtures      = "testdata/"
)

// bot is the engine on an embedded bus with the Slack and PagerDuty test
// servers as its sinks, and the Slack inbound handler in front of it.
type bot struct {
	bus     *bus.Bus
	eng     *engine.Engine
	sender  *command.Sender
	slack   *slacktestutil.Server
	pd      *testenv.PagerDuty
	h       *slackin.Handler
	mux     *http.ServeMux
	replies *replies
}

// newBot starts the bot; edit adjusts the handler's options before it is
// built. The handler's clock is at the slash command fixture's timestamp,
// so the fixtures verify.
func newBot(t *testing.T, edit ...func(*slackin.Options)) *bot {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	bcfg := bus.DefaultConfig()
	bcfg.DataDir = t.TempDir()
	b, err := bus.Open(ctx, bcfg, discard())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range engine.Streams {
		if err := b.EnsureStream(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	kvs := map[string]bus.KV{}
	for _, s := range append(engine.Buckets, rpcview.Bucket) {
		if kvs[s.Name], err = b.EnsureBucket(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	set, _, err := runbooks.LoadDefault("", actions.Default())
	if err != nil {
		t.Fatal(err)
	}
	bt := &bot{bus: b, slack: slacktestutil.Start(t), pd: testenv.StartPagerDuty(t), replies: startReplies(t)}
	chatCfg := nslack.DefaultConfig()
	chatCfg.Token, chatCfg.APIURL = "xoxb-test", bt.slack.URL()
	chatCfg.ChannelRate = 0 // the fake Slack has no limit
	chat, err := nslack.New(chatCfg)
	if err != nil {
		t.Fatal(err)
	}
	pdCfg := pagerduty.DefaultConfig()
	pdCfg.RoutingKey, pdCfg.BaseURL = "R0UT1NGKEY0000000000000000000000", bt.pd.URL
	pager, err := pagerduty.New(pdCfg)
	if err != nil {
		t.Fatal(err)
	}
	var ids sync.Mutex
	first := true
	ecfg := engine.DefaultConfig()
	ecfg.RetryMax = 200 * time.Millisecond
	bt.eng, err = engine.New(ecfg, engine.Deps{
		Catalog: app.Catalog{Set: set, DefaultChannel: "#incidents"}, Decoders: app.Decoders(),
		Incidents: kvs[engine.BucketIncidents], IDs: kvs[engine.BucketIDs], Deliveries: kvs[engine.BucketDeliveries],
		Chat: chat, Pager: pager, Publisher: b, Scheduler: b, Audit: b, Runs: kvs[engine.BucketRuns],
		NewID: func() string {
			ids.Lock()
			defer ids.Unlock()
			if first {
				first = false
				return fixtureID
			}
			return engine.NewID()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, c := range bt.eng.Consumers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = b.Consume(ctx, c.Config, c.Handler)
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if bt.h != nil {
			bt.h.Wait()
		}
		b.Close()
	})
	bt.sender = command.NewSender(b, bt.eng)
	o := slackin.Options{
		Incidents: bt.eng, Sender: bt.sender, Audit: b, Logger: discard(),
		Now:    func() time.Time { return time.Unix(1755093012, 0) },
		Client: bt.replies.client(),
	}
	for _, f := range edit {
		f(&o)
	}
	if bt.h, err = slackin.New(o); err != nil {
		t.Fatal(err)
	}
	x, err := slackin.NewHTTP(bt.h, slackin.Verifier{Secret: secret.Secret(fixtureSecret)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bt.mux = http.NewServeMux()
	x.Routes(bt.mux)
	return bt
}

// alert publishes an Alertmanager fixture as the receiver does and waits
// for its card.
func (bt *bot) alert(t *testing.T, name string) {
	t.Helper()
	body, err := os.ReadFile("../alertmanager/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := alertmanager.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	before := len(bt.slack.Posts())
	if _, err := bt.bus.Publish(context.Background(), bus.Event{ID: msg.EventID(), Source: "alertmanager", Type: alertmanager.EventType,
		Time: time.Now(), Subject: msg.GroupKey, Data: body}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a card", func() bool { return len(bt.slack.Posts()) > before })
}

// record reads an incident.
func (bt *bot) record(t *testing.T, id string) *engine.Record {
	t.Helper()
	r, err := bt.eng.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// stored counts what the events stream holds (events and commands).
func (bt *bot) stored(t *testing.T) uint64 {
	t.Helper()
	n, err := bt.bus.EventsStored(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// audits returns the audit records of kind.
func (bt *bot) audits(t *testing.T, kind string) []bus.AuditRecord {
	t.Helper()
	all, err := bt.bus.AuditTrail(context.Background(), 10000)
	if err != nil {
		t.Fatal(err)
	}
	var out []bus.AuditRecord
	for _, r := range all {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// pages returns the PagerDuty events of action.
func (bt *bot) pages(action string) []testenv.PagerDutyEvent {
	var out []testenv.PagerDutyEvent
	for _, e := range bt.pd.Events() {
		if e.EventAction == action {
			out = append(out, e)
		}
	}
	return out
}

// post sends a request with headers to the handler's routes.
func (bt *bot) post(path string, body []byte, headers map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	bt.mux.ServeHTTP(rec, req)
	return rec
}

// signed returns the headers Slack sends for body at ts, signed with secret.
func signed(secret string, ts int64, body []byte) map[string]string {
	tsText := strconv.FormatInt(ts, 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("v0:" + tsText + ":"))
	mac.Write(body)
	return map[string]string{"X-Slack-Request-Timestamp": tsText, "X-Slack-Signature": "v0=" + hex.EncodeToString(mac.Sum(nil))}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// slash is a slash command body as Slack sends it.
func slash(user, name, text, trigger string) []byte {
	return []byte(url.Values{"token": {"x"}, "team_id": {"T1"}, "channel_id": {"C1"}, "user_id": {user}, "user_name": {name},
		"command": {"/incident"}, "text": {text}, "response_url": {"https://hooks.slack.com/commands/T1/1/x"}, "trigger_id": {trigger}}.Encode())
}

// click is a block_actions body for a click on a card button.
func click(user, name, actionID, value, actionTS string) []byte {
	p, _ := json.Marshal(map[string]any{
		"type": "block_actions", "user": map[string]string{"id": user, "username": name, "name": name, "team_id": "T1"},
		"team": map[string]string{"id": "T1"}, "channel": map[string]string{"id": "C1"},
		"container":    map[string]any{"type": "message", "message_ts": "1755093020.004219", "channel_id": "C1"},
		"response_url": "https://hooks.slack.com/actions/T1/1/x", "trigger_id": "1.2.3",
		"actions": []map[string]any{{"action_id": actionID, "block_id": nslack.ActionsBlockID, "value": value, "type": "button", "action_ts": actionTS}},
	})
	return []byte("payload=" + url.QueryEscape(string(p)))
}

// reply decodes a slash command's answer.
func reply(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var p struct {
		ResponseType string `json:"response_type"`
		Text         string `json:"text"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("answer %s: %v", rec.Body, err)
	}
	if p.ResponseType != "ephemeral" {
		t.Errorf("answer is %q, want ephemeral", p.ResponseType)
	}
	return p.Text
}

// cardButton finds the value of a button on the incident's current card.
func (bt *bot) cardButton(t *testing.T, actionID string) string {
	t.Helper()
	for _, p := range bt.slack.Posts() {
		if p.ThreadTS != "" {
			continue
		}
		card, _ := bt.slack.Card(p.Channel, p.TS)
		var blocks []struct {
			Type     string `json:"type"`
			Elements []struct {
				ActionID string `json:"action_id"`
				Value    string `json:"value"`
			} `json:"elements"`
		}
		_ = json.Unmarshal(card.Blocks, &blocks)
		for _, b := range blocks {
			for _, e := range b.Elements {
				if b.Type == "actions" && e.ActionID == actionID {
					return e.Value
				}
			}
		}
	}
	t.Fatalf("no %s button on any card", actionID)
	return ""
}

// replies records what is posted to response_urls: the handler's client
// sends every request to this local server, whatever the URL's host.
type replies struct {
	srv  *httptest.Server
	mu   sync.Mutex
	sent []string
	// types are the response_type of each, in order.
	types []string
}

func startReplies(t *testing.T) *replies {
	r := &replies{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		var p struct {
			Text         string `json:"text"`
			ResponseType string `json:"response_type"`
		}
		_ = json.Unmarshal(b, &p)
		r.mu.Lock()
		r.sent = append(r.sent, p.Text)
		r.types = append(r.types, p.ResponseType)
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *replies) client() *http.Client {
	target, _ := url.Parse(r.srv.URL)
	return &http.Client{Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
		req = req.Clone(req.Context())
		req.URL.Scheme, req.URL.Host = target.Scheme, target.Host
		return http.DefaultTransport.RoundTrip(req)
	})}
}

func (r *replies) texts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.sent...)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stepButton finds the value of a step's button on the incident's current
// card; "" when the card has no such button.
func (bt *bot) stepButton(t *testing.T, actionID, step string) string {
	t.Helper()
	for _, p := range bt.slack.Posts() {
		if p.ThreadTS != "" {
			continue
		}
		card, _ := bt.slack.Card(p.Channel, p.TS)
		var blocks []struct {
			Type     string `json:"type"`
			BlockID  string `json:"block_id"`
			Elements []struct {
				ActionID string `json:"action_id"`
				Value    string `json:"value"`
			} `json:"elements"`
		}
		_ = json.Unmarshal(card.Blocks, &blocks)
		for _, b := range blocks {
			for _, e := range b.Elements {
				if b.Type == "actions" && b.BlockID == nslack.StepBlockPrefix+step && e.ActionID == actionID {
					return e.Value
				}
			}
		}
	}
	return ""
}

// ephemeral says whether every response_url post so far was ephemeral.
func (r *replies) ephemeral() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.types {
		if t != "ephemeral" {
			return false
		}
	}
	return true
}
