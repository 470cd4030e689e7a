package slack_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/incidentbot/incidentbot/bus"
	slackin "github.com/incidentbot/incidentbot/handlers/slack"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
	nslack "github.com/incidentbot/incidentbot/notify/slack"
	"github.com/incidentbot/incidentbot/rpcview"
	"github.com/incidentbot/incidentbot/secret"
)

// fixture reads a signed request: its exact body and its Slack headers.
func fixture(t *testing.T, name string) ([]byte, map[string]string) {
	t.Helper()
	body, err := os.ReadFile(fixtures + name + ".request.body.txt")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(fixtures + name + ".request.headers.txt")
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]string{}
	for _, l := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok && strings.HasPrefix(k, "X-Slack-") {
			h[k] = strings.TrimSpace(v)
		}
	}
	return body, h
}

// TestSignatureWorkedExamples: every worked example verifies at its own
// time, Slack's documented vector included; each negative case is refused.
func TestSignatureWorkedExamples(t *testing.T) {
	raw, err := os.ReadFile(fixtures + "signature.worked_examples.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Secret   string `json:"made_up_signing_secret"`
		Examples []struct {
			Name, Timestamp, Body string
			BodyFile              string `json:"body_file"`
			SigningSecret         string `json:"signing_secret"`
			Expected              string `json:"expected_signature"`
		}
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, ex := range doc.Examples {
		body := []byte(ex.Body)
		if ex.BodyFile != "" {
			if body, err = os.ReadFile(fixtures + ex.BodyFile); err != nil {
				t.Fatal(err)
			}
		}
		sec := ex.SigningSecret
		if sec == "" {
			sec = doc.Secret
		}
		at := mustUnix(t, ex.Timestamp)
		v := slackin.Verifier{Secret: secret.Secret(sec), Now: func() time.Time { return at }}
		h := http.Header{}
		h.Set("X-Slack-Request-Timestamp", ex.Timestamp)
		h.Set("X-Slack-Signature", ex.Expected)
		if err := v.Verify(h, body); err != nil {
			t.Errorf("%s: %v", ex.Name, err)
		}
		for name, tamper := range map[string]func(){
			"stale (301 s later)": func() { v.Now = func() time.Time { return at.Add(301 * time.Second) } },
			"from the future":     func() { v.Now = func() time.Time { return at.Add(-301 * time.Second) } },
			"upper-case hex":      func() { h.Set("X-Slack-Signature", "v0="+strings.ToUpper(strings.TrimPrefix(ex.Expected, "v0="))) },
			"no v0= prefix":       func() { h.Set("X-Slack-Signature", strings.TrimPrefix(ex.Expected, "v0=")) },
			"tampered body":       func() { body = append([]byte(nil), append(body, ' ')...) },
			"another secret":      func() { v.Secret = "not-the-secret" },
			"no timestamp":        func() { h.Del("X-Slack-Request-Timestamp") },
		} {
			saveV, saveH, saveB := v, h.Clone(), body
			tamper()
			if err := v.Verify(h, body); err == nil {
				t.Errorf("%s, %s: verified", ex.Name, name)
			}
			v, h, body = saveV, saveH, saveB
		}
	}
}

func mustUnix(t *testing.T, s string) time.Time {
	t.Helper()
	var n int64
	if err := json.Unmarshal([]byte(s), &n); err != nil {
		t.Fatal(err)
	}
	return time.Unix(n, 0)
}

// TestSignedFixturesAct: the signed slash command from the fixtures
// acknowledges INC-2041 (the engine records who, through which transport,
// the audit trail says so, PagerDuty is told with the same dedup key), and
// the signed Acknowledge click that follows is answered as a second
// acknowledgement, changing nothing.
func TestSignedFixturesAct(t *testing.T) {
	bt := newBot(t)
	bt.alert(t, "webhook.firing.single.json")
	eventually(t, "the page", func() bool { return len(bt.pages("trigger")) == 1 })

	body, h := fixture(t, "slash_command")
	text := reply(t, bt.post(slackin.CommandsPath, body, h))
	if !strings.Contains(text, "Acknowledging *INC-2041*: accepted") {
		t.Fatalf("answer %q", text)
	}
	eventually(t, "the ack", func() bool { return bt.record(t, fixtureID).Ack != nil })
	r := bt.record(t, fixtureID)
	want := input.Actor{ID: "U03L9P2V6XK", Name: "dana.oncall", Via: "slack", Transport: "http"}
	if r.Status != notify.StatusAcknowledged || r.Ack.By != want {
		t.Fatalf("record: %s by %+v, want acknowledged by %+v", r.Status, r.Ack.By, want)
	}
	eventually(t, "PagerDuty acknowledge", func() bool { return len(bt.pages("acknowledge")) == 1 })
	if ack := bt.pages("acknowledge")[0]; ack.DedupKey != bt.pages("trigger")[0].DedupKey {
		t.Fatalf("acknowledge dedup key %q, trigger %q", ack.DedupKey, bt.pages("trigger")[0].DedupKey)
	}
	eventually(t, "the card names who acknowledged", func() bool {
		for _, u := range bt.slack.Updates() {
			if strings.Contains(string(u.Blocks), "*ACKNOWLEDGED* by dana.oncall (slack)") {
				return true
			}
		}
		return false
	})
	audits := bt.audits(t, "incident.acknowledged")
	if len(audits) != 1 || audits[0].Actor != "dana.oncall (slack)" || audits[0].Attrs["actor_id"] != "U03L9P2V6XK" ||
		audits[0].Attrs["transport"] != "http" || audits[0].Incident != fixtureID {
		t.Fatalf("audit %+v", audits)
	}

	before := bt.stored(t)
	body, h = fixture(t, "block_actions")
	bt.h = mustHandler(t, bt, func(o *slackin.Options) { o.Now = func() time.Time { return time.Unix(1755093075, 0) } })
	if rec := bt.post(slackin.InteractionsPath, body, h); rec.Code != http.StatusOK {
		t.Fatalf("click: %d %s", rec.Code, rec.Body)
	}
	bt.h.Wait()
	if got := bt.replies.texts(); len(got) != 1 || !strings.Contains(got[0], "You already acknowledged *INC-2041*") {
		t.Fatalf("click answered %q", got)
	}
	if bt.stored(t) != before {
		t.Fatal("a click on an acknowledged incident published a command")
	}
}

// mustHandler rebuilds the bot's handler and routes with edited options.
func mustHandler(t *testing.T, bt *bot, edit func(*slackin.Options)) *slackin.Handler {
	t.Helper()
	o := slackin.Options{Incidents: bt.eng, Sender: bt.sender, Audit: bt.bus, Logger: discard(), Client: bt.replies.client()}
	edit(&o)
	h, err := slackin.New(o)
	if err != nil {
		t.Fatal(err)
	}
	x, err := slackin.NewHTTP(h, slackin.Verifier{Secret: secret.Secret(fixtureSecret)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bt.mux = http.NewServeMux()
	x.Routes(bt.mux)
	return h
}

// TestRefusedRequestsDoNothing: forged, stale, unsigned and wrongly signed
// requests get 401, publish nothing, answer nothing and change nothing.
func TestRefusedRequestsDoNothing(t *testing.T) {
	bt := newBot(t)
	bt.alert(t, "webhook.firing.single.json")
	slashBody, slashH := fixture(t, "slash_command")
	clickBody, clickH := fixture(t, "block_actions")
	with := func(h map[string]string, k, v string) map[string]string {
		out := map[string]string{}
		for a, b := range h {
			out[a] = b
		}
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}
	forged := []byte(strings.Replace(string(slashBody), "text=ack+INC-2041", "text=resolve+INC-2041", 1))
	tests := []struct {
		name    string
		path    string
		body    []byte
		headers map[string]string
	}{
		{"forged body", slackin.CommandsPath, forged, slashH},
		{"stale (the click, replayed at the command's time + 6 min)", slackin.InteractionsPath, clickBody, with(clickH, "X-Slack-Request-Timestamp", "1755093012")},
		{"stale but well signed", slackin.CommandsPath, slashBody, signed(fixtureSecret, 1755093012-301, slashBody)},
		{"unsigned", slackin.CommandsPath, slashBody, nil},
		{"no signature", slackin.InteractionsPath, clickBody, with(clickH, "X-Slack-Signature", "")},
		{"signed with another secret", slackin.CommandsPath, slashBody, signed("another-secret", 1755093012, slashBody)},
		{"upper-case signature", slackin.CommandsPath, slashBody, with(slashH, "X-Slack-Signature", "v0="+strings.ToUpper(strings.TrimPrefix(slashH["X-Slack-Signature"], "v0=")))},
		{"garbage timestamp", slackin.CommandsPath, slashBody, with(slashH, "X-Slack-Request-Timestamp", "soon")},
	}
	before := bt.stored(t)
	for _, tt := range tests {
		rec := bt.post(tt.path, tt.body, tt.headers)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s: %d %s, want 401", tt.name, rec.Code, rec.Body)
		}
	}
	bt.h.Wait()
	if n := bt.stored(t); n != before {
		t.Fatalf("refused requests published %d events", n-before)
	}
	if got := bt.replies.texts(); len(got) != 0 {
		t.Fatalf("refused requests were answered: %q", got)
	}
	if r := bt.record(t, fixtureID); r.Status != notify.StatusFiring || r.Ack != nil {
		t.Fatalf("incident changed: %s", r.Status)
	}
	if rec := bt.post(slackin.CommandsPath, slashBody, slashH); rec.Code != http.StatusOK {
		t.Fatalf("the genuine request after them: %d", rec.Code)
	}
	if rec := httpGet(bt, slackin.CommandsPath); rec != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", rec)
	}
}

func httpGet(bt *bot, path string) int {
	req, _ := http.NewRequest(http.MethodGet, path, nil)
	rec := httptest.NewRecorder()
	bt.mux.ServeHTTP(rec, req)
	return rec.Code
}

// TestCommandsAnswer: unknown input gets usage; reads answer from the
// records; what this bot lacks says what to configure.
func TestCommandsAnswer(t *testing.T) {
	bt := newBot(t)
	bt.alert(t, "webhook.firing.single.json")
	ask := func(text string) string {
		body := slash("U0ADA", "ada", text, "trig-"+text)
		return reply(t, bt.post(slackin.CommandsPath, body, signed(fixtureSecret, 1755093012, body)))
	}
	for text, want := range map[string][]string{
		"reboot everything":    {`unknown command "reboot"`, "*Usage:*", "`/incident ack ID`"},
		"":                     {"*Usage:*", "`/incident list`"},
		"ack":                  {"`ack` needs an incident id", "*Usage:*"},
		"list":                 {"1 open incident(s)", "`INC-2041` *critical*", "HighErrorRate — High 5xx error rate on api", "not acknowledged"},
		"show inc-2041":        {"*INC-2041*", "*firing* · critical", "Alerts: 1 firing, 0 resolved", "Incident opened"},
		"ack INC-9999":         {"No incident INC-9999"},
		"rpc":                  {"Not configured on this bot:", "solana.endpoints"},
		"flags":                {"Not configured on this bot:", "set redis.url"},
		"report INC-2041":      {"Not configured on this bot:", "report builder"},
		"silence INC-2041 1h":  {"Not configured on this bot:", "alertmanager.url"},
		"unsilence INC-2041":   {"Not configured on this bot:", "alertmanager.url"},
		"unack INC-2041":       {"*INC-2041* is not acknowledged"},
		"note 2041 looking at": {"Note for *INC-2041* accepted"},
	} {
		got := ask(text)
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%q answered %q, want %q in it", text, got, w)
			}
		}
	}
	eventually(t, "the note", func() bool { return len(bt.record(t, fixtureID).Notes) == 1 })

	// A resolve, then a click on the card from before it: the card is out
	// of date, and the answer says so.
	ackValue := bt.cardButton(t, nslack.ActionAck)
	if got := ask("resolve INC-2041 rolled back"); !strings.Contains(got, "Resolving *INC-2041*: accepted") {
		t.Fatalf("resolve answered %q", got)
	}
	eventually(t, "resolved", func() bool { return !bt.record(t, fixtureID).Open() })
	if got := ask("list"); !strings.Contains(got, "No open incidents") {
		t.Errorf("list after resolve: %q", got)
	}
	before := bt.stored(t)
	body := click("U0BOB", "bob", nslack.ActionAck, ackValue, "1755093100.000001")
	if rec := bt.post(slackin.InteractionsPath, body, signed(fixtureSecret, 1755093012, body)); rec.Code != http.StatusOK {
		t.Fatalf("click: %d", rec.Code)
	}
	bt.h.Wait()
	got := bt.replies.texts()
	if len(got) != 1 || !strings.Contains(got[0], "*INC-2041* is already resolved by ada (slack)") || !strings.Contains(got[0], "nothing to acknowledge") {
		t.Fatalf("stale click answered %q", got)
	}
	if bt.stored(t) != before {
		t.Fatal("a stale click published a command")
	}
	stale := bt.audits(t, "slack.stale") // the unack of an unacknowledged incident, and the click
	if len(stale) != 2 || stale[1].Actor != "bob (slack)" || stale[1].Attrs["actor_id"] != "U0BOB" || stale[1].Attrs["transport"] != "http" {
		t.Fatalf("stale requests audited as %+v", stale)
	}
}

// TestDoubleClickActsOnce: two clicks on the same Acknowledge button,
// together, make one acknowledgement and one PagerDuty acknowledge.
func TestDoubleClickActsOnce(t *testing.T) {
	bt := newBot(t)
	bt.alert(t, "webhook.firing.single.json")
	eventually(t, "the page", func() bool { return len(bt.pages("trigger")) == 1 })
	value := bt.cardButton(t, nslack.ActionAck)
	if !strings.HasPrefix(value, fixtureID+"@") {
		t.Fatalf("button value %q", value)
	}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := click("U0ADA", "ada", nslack.ActionAck, value, "1755093100.00000"+string(rune('1'+i)))
			if rec := bt.post(slackin.InteractionsPath, body, signed(fixtureSecret, 1755093012, body)); rec.Code != http.StatusOK {
				t.Errorf("click %d: %d", i, rec.Code)
			}
		}()
	}
	wg.Wait()
	eventually(t, "the ack", func() bool { return bt.record(t, fixtureID).Ack != nil })
	eventually(t, "PagerDuty acknowledge", func() bool { return len(bt.pages("acknowledge")) == 1 })
	time.Sleep(500 * time.Millisecond) // room for a second one to show
	r := bt.record(t, fixtureID)
	if len(r.Acks) != 1 || len(bt.pages("acknowledge")) != 1 || len(bt.audits(t, "incident.acknowledged")) != 1 {
		t.Fatalf("%d acks, %d PagerDuty acknowledges, %d audited; want one each", len(r.Acks), len(bt.pages("acknowledge")), len(bt.audits(t, "incident.acknowledged")))
	}
	n := 0
	for _, tl := range r.Timeline {
		if tl.Kind == "acknowledged" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d acknowledgements on the timeline", n)
	}
	bt.h.Wait()
	for _, got := range bt.replies.texts() {
		if !strings.Contains(got, "Acknowledging *INC-2041*: accepted") && !strings.Contains(got, "You already acknowledged") {
			t.Errorf("click answered %q", got)
		}
	}
}

// TestAllowLists: a user in neither list is refused, ephemerally, with the
// reason; a member of an allowed user group is let in; the group's members
// are read once within the cache's lifetime.
func TestAllowLists(t *testing.T) {
	bt := newBot(t)
	bt.slack.SetUserGroup("S0ONCALL", "U0BOB")
	api := slack.New("xoxb-test", slack.OptionAPIURL(bt.slack.URL()))
	bt.h = mustHandler(t, bt, func(o *slackin.Options) {
		o.Now = func() time.Time { return time.Unix(1755093012, 0) }
		o.Access = slackin.NewAccess([]string{"U0ADA"}, []string{"S0ONCALL"}, api, time.Minute)
	})
	bt.alert(t, "webhook.firing.single.json")
	before := bt.stored(t)
	body, h := fixture(t, "slash_command") // dana, in neither list
	got := reply(t, bt.post(slackin.CommandsPath, body, h))
	for _, w := range []string{"⛔", "You (<@U03L9P2V6XK>) may not use incidentbot", "slack.allowed_users", "<!subteam^S0ONCALL>"} {
		if !strings.Contains(got, w) {
			t.Errorf("refusal %q misses %q", got, w)
		}
	}
	if bt.stored(t) != before || bt.record(t, fixtureID).Ack != nil {
		t.Fatal("a refused user's command acted")
	}
	if len(bt.audits(t, "slack.refused")) != 1 {
		t.Fatal("the refusal is not audited")
	}
	// Help is for everyone.
	helpBody := slash("U03L9P2V6XK", "dana.oncall", "help", "t-help")
	if got := reply(t, bt.post(slackin.CommandsPath, helpBody, signed(fixtureSecret, 1755093012, helpBody))); !strings.Contains(got, "*Usage:*") {
		t.Errorf("help for a refused user: %q", got)
	}
	for _, u := range []struct{ id, name string }{{"U0BOB", "bob"}, {"U0ADA", "ada"}} {
		b := slash(u.id, u.name, "show INC-2041", "t-"+u.id)
		if got := reply(t, bt.post(slackin.CommandsPath, b, signed(fixtureSecret, 1755093012, b))); !strings.Contains(got, "*INC-2041*") {
			t.Errorf("%s: %q", u.name, got)
		}
	}
	b := slash("U0EVE", "eve", "list", "t-eve")
	if got := reply(t, bt.post(slackin.CommandsPath, b, signed(fixtureSecret, 1755093012, b))); !strings.Contains(got, "may not use") {
		t.Errorf("eve: %q", got)
	}
	if n := bt.slack.Attempts("usergroups.users.list"); n != 1 {
		t.Errorf("usergroups.users.list called %d times, want 1 (cached)", n)
	}
}

// TestRPCAnswersTheRanking: `/incident rpc` lists the watchers' ranking
// from the shared view, and never an endpoint's URL (it may hold an API
// key).
func TestRPCAnswersTheRanking(t *testing.T) {
	var store rpcview.Store
	bt := newBot(t, func(o *slackin.Options) {
		kv, err := o.Audit.(*bus.Bus).EnsureBucket(context.Background(), rpcview.Bucket)
		if err != nil {
			t.Fatal(err)
		}
		store = rpcview.Store{KV: kv}
		o.RPC = store
	})
	ask := func() string {
		body := slash("U0ADA", "ada", "rpc", "t-rpc")
		return reply(t, bt.post(slackin.CommandsPath, body, signed(fixtureSecret, 1755093012, body)))
	}
	if got := ask(); !strings.Contains(got, "No RPC view yet") {
		t.Fatalf("before any watcher: %q", got)
	}
	err := store.Put(context.Background(), rpcview.View{UpdatedAt: time.Unix(1755093000, 0), Endpoints: []rpcview.Endpoint{
		{Name: "triton", URL: "https://rpc.example/SECRETKEY", Role: rpcview.RoleBackup, Healthy: true, Slot: 100, Latency: 80 * time.Millisecond},
		{Name: "helius", URL: "https://rpc.example/?api-key=SECRETKEY", Role: rpcview.RolePrimary, Slot: 40, SlotLag: 60, LastError: "slot lag 60"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := ask()
	for _, w := range []string{"1. ✅ *triton* (backup) · slot 100, 0 behind · 80ms", "2. ❌ *helius* (primary) · slot 40, 60 behind", "slot lag 60"} {
		if !strings.Contains(got, w) {
			t.Errorf("rpc answered %q, want %q", got, w)
		}
	}
	if strings.Contains(got, "SECRETKEY") || strings.Contains(got, "rpc.example") {
		t.Errorf("rpc shows an endpoint URL: %q", got)
	}
}
