package slack_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/engine"
	slackin "github.com/incidentbot/incidentbot/handlers/slack"
	nslack "github.com/incidentbot/incidentbot/notify/slack"
	"github.com/incidentbot/incidentbot/runbooks"
)

// stepBot is a bot whose handler resolves the shipped runbooks' steps, with
// Ada and Bob in @solana-oncall (the approvers of disable-feature).
func stepBot(t *testing.T) *bot {
	t.Helper()
	bt := newBot(t)
	set, _, err := runbooks.LoadDefault("", actions.Default())
	if err != nil {
		t.Fatal(err)
	}
	bt.h = mustHandler(t, bt, func(o *slackin.Options) {
		o.Now = time.Now
		o.Steps = app.Steps{Catalog: app.Catalog{Set: set, DefaultChannel: "#incidents"}}
		o.Approvers = groups{"U0ADA": "@solana-oncall", "U0BOB": "@solana-oncall"}
	})
	bt.alert(t, "webhook.firing.single.json")
	return bt
}

const buttonStep = "disable-feature"

// press clicks a card button over HTTP, signed now, and returns what the
// handler posted to the response_url for it.
func (bt *bot) press(t *testing.T, user, name, actionID, value, actionTS string) string {
	t.Helper()
	before := len(bt.replies.texts())
	body := click(user, name, actionID, value, actionTS)
	if rec := bt.post(slackin.InteractionsPath, body, signed(fixtureSecret, time.Now().Unix(), body)); rec.Code != http.StatusOK {
		t.Fatalf("click: %d %s", rec.Code, rec.Body)
	}
	bt.h.Wait()
	got := bt.replies.texts()
	if len(got) != before+1 {
		t.Fatalf("%d answers to the click, want 1: %q", len(got)-before, got[before:])
	}
	return got[before]
}

func (bt *bot) timeline(t *testing.T, kind string) int {
	t.Helper()
	n := 0
	for _, u := range bt.record(t, fixtureID).Timeline {
		if u.Kind == kind {
			n++
		}
	}
	return n
}

// TestStepButtonsOverHTTP: the card offers Request for a step; a double
// click requests it once; the card then offers Approve and Deny; a
// stranger and the requester are refused ephemerally and nothing is sent;
// an Approve from a card whose plan hash is not the plan's now sends
// nothing and says so; Bob's Approve is counted, bound to the plan, and
// the step's buttons go away.
func TestStepButtonsOverHTTP(t *testing.T) {
	bt := stepBot(t)
	eventually(t, "a Request button", func() bool { return bt.stepButton(t, nslack.ActionStepRequest, buttonStep) != "" })
	request := bt.stepButton(t, nslack.ActionStepRequest, buttonStep)
	if !strings.HasPrefix(request, fixtureID+"@") || !strings.Contains(request, "|"+buttonStep+"|") {
		t.Fatalf("Request value %q", request)
	}
	if v := bt.stepButton(t, nslack.ActionStepApprove, buttonStep); v != "" {
		t.Fatalf("Approve before any request: %q", v)
	}

	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := click("U0ADA", "ada", nslack.ActionStepRequest, request, fmt.Sprintf("1755093100.00000%d", i+1))
			if rec := bt.post(slackin.InteractionsPath, body, signed(fixtureSecret, time.Now().Unix(), body)); rec.Code != http.StatusOK {
				t.Errorf("click %d: %d", i, rec.Code)
			}
		}()
	}
	wg.Wait()
	eventually(t, "Approve on the card", func() bool { return bt.stepButton(t, nslack.ActionStepApprove, buttonStep) != "" })
	bt.h.Wait()
	for _, got := range bt.replies.texts() {
		if !strings.Contains(got, "Requested `disable-feature` for *INC-2041*: accepted") && !strings.Contains(got, "already requested by ada (slack)") {
			t.Errorf("Request answered %q", got)
		}
	}
	q := bt.record(t, fixtureID).Steps[buttonStep]
	if q == nil || q.State != engine.DecisionPending || q.Requested.By.ID != "U0ADA" || q.Requested.By.Transport != slackin.TransportHTTP ||
		!strings.HasSuffix(request, "|"+q.Hash[:12]) {
		t.Fatalf("request %+v for button %q", q, request)
	}
	if n := bt.timeline(t, "step_requested"); n != 1 {
		t.Fatalf("%d requests on the timeline, want 1", n)
	}
	if v := bt.stepButton(t, nslack.ActionStepRequest, buttonStep); v != "" {
		t.Fatalf("Request still offered while pending: %q", v)
	}
	approve := bt.stepButton(t, nslack.ActionStepApprove, buttonStep)
	if deny := bt.stepButton(t, nslack.ActionStepDeny, buttonStep); deny != approve {
		t.Fatalf("Deny %q, Approve %q", deny, approve)
	}

	before := bt.stored(t)
	if got := bt.press(t, "U0EVE", "eve", nslack.ActionStepApprove, approve, "1755093101.000001"); !strings.Contains(got, "⛔") || !strings.Contains(got, "not an approver") {
		t.Fatalf("stranger's Approve answered %q", got)
	}
	if got := bt.press(t, "U0ADA", "ada", nslack.ActionStepApprove, approve, "1755093101.000002"); !strings.Contains(got, "⛔") || !strings.Contains(got, "does not let the requester approve") {
		t.Fatalf("requester's Approve answered %q", got)
	}
	if bt.stored(t) != before {
		t.Fatal("a refused click sent a command")
	}
	// A click carrying a plan that no longer holds votes for nothing; the
	// card is redrawn (one refresh command, a new version, an edit).
	version, edits := bt.record(t, fixtureID).Version, len(bt.slack.Updates())
	stale := approve[:strings.LastIndex(approve, "|")+1] + "00000000beef"
	if got := bt.press(t, "U0BOB", "bob", nslack.ActionStepApprove, stale, "1755093101.000003"); !strings.Contains(got, "The plan changed since this card was drawn; it is being redrawn") ||
		!strings.Contains(got, "redis: SET feature:enable_escrow false") {
		t.Fatalf("stale Approve answered %q", got)
	}
	if n := bt.stored(t); n != before+1 {
		t.Fatalf("a stale click stored %d commands, want 1 (the refresh)", n-before)
	}
	eventually(t, "the card redrawn", func() bool {
		return bt.record(t, fixtureID).Version > version && len(bt.slack.Updates()) > edits
	})
	if q := bt.record(t, fixtureID).Steps[buttonStep]; len(q.Votes) != 0 || q.State != engine.DecisionPending {
		t.Fatalf("after the stale click: %+v; want no vote", q)
	}
	before = bt.stored(t)
	if a := bt.audits(t, "slack.stale"); len(a) != 1 || !strings.Contains(a[0].Detail, "00000000beef") {
		t.Fatalf("stale click audited as %+v", a)
	}

	if got := bt.press(t, "U0BOB", "bob", nslack.ActionStepApprove, approve, "1755093102.000001"); !strings.Contains(got, "Your approval of `disable-feature` for *INC-2041* is accepted") {
		t.Fatalf("Bob's Approve answered %q", got)
	}
	eventually(t, "approved", func() bool { return bt.record(t, fixtureID).Steps[buttonStep].State == engine.DecisionApproved })
	q = bt.record(t, fixtureID).Steps[buttonStep]
	if len(q.Votes) != 1 || q.Votes[0].By.ID != "U0BOB" || q.Votes[0].As != "@solana-oncall" || q.Votes[0].Hash != q.Hash || q.Votes[0].By.Transport != slackin.TransportHTTP {
		t.Fatalf("votes %+v", q.Votes)
	}
	eventually(t, "no step buttons once approved", func() bool {
		return bt.stepButton(t, nslack.ActionStepApprove, buttonStep) == "" && bt.stepButton(t, nslack.ActionStepRequest, buttonStep) == ""
	})
	if !bt.replies.ephemeral() {
		t.Fatal("an answer to a click was not ephemeral")
	}
}

// TestStepButtonsOverSocketMode: Request by Ada and Deny by Bob arrive
// over Socket Mode, each acknowledged over the websocket and answered on
// the response_url; after the denial the card offers Request again.
func TestStepButtonsOverSocketMode(t *testing.T) {
	bt := stepBot(t)
	bt.slack.RequireAppToken("xapp-1-A0TEST-1-secret")
	ctx, cancel := context.WithCancel(context.Background())
	api := slack.New("xoxb-test", slack.OptionAPIURL(bt.slack.URL()), slack.OptionAppLevelToken("xapp-1-A0TEST-1-secret"))
	s, err := slackin.NewSocket(bt.h, api, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, "the socket mode connection", func() bool { return bt.slack.SocketConnections() == 1 })

	send := func(user, name, actionID, value, ts string) {
		t.Helper()
		id, err := bt.slack.SendSocket("interactive", map[string]any{
			"type": "block_actions", "user": map[string]string{"id": user, "username": name, "name": name},
			"channel": map[string]string{"id": "C1"}, "response_url": "https://hooks.slack.com/actions/T1/3/z", "trigger_id": "1.2.4",
			"actions": []map[string]string{{"action_id": actionID, "block_id": nslack.StepBlockPrefix + buttonStep, "value": value, "type": "button", "action_ts": ts}},
		})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "the click's ack", func() bool { _, ok := bt.slack.SocketAck(id); return ok })
	}
	answered := func(want string) {
		t.Helper()
		eventually(t, "the answer "+want, func() bool {
			for _, r := range bt.replies.texts() {
				if strings.Contains(r, want) {
					return true
				}
			}
			return false
		})
	}
	eventually(t, "a Request button", func() bool { return bt.stepButton(t, nslack.ActionStepRequest, buttonStep) != "" })
	send("U0ADA", "ada", nslack.ActionStepRequest, bt.stepButton(t, nslack.ActionStepRequest, buttonStep), "1755093200.000001")
	answered("Requested `disable-feature` for *INC-2041*: accepted")
	eventually(t, "Deny on the card", func() bool { return bt.stepButton(t, nslack.ActionStepDeny, buttonStep) != "" })
	if by := bt.record(t, fixtureID).Steps[buttonStep].Requested.By; by.ID != "U0ADA" || by.Transport != slackin.TransportSocket {
		t.Fatalf("requested by %+v", by)
	}
	send("U0BOB", "bob", nslack.ActionStepDeny, bt.stepButton(t, nslack.ActionStepDeny, buttonStep), "1755093201.000001")
	answered("Your denial of `disable-feature` for *INC-2041* is accepted")
	eventually(t, "denied", func() bool { return bt.record(t, fixtureID).Steps[buttonStep].State == engine.DecisionDenied })
	eventually(t, "Request on the card again", func() bool {
		return bt.stepButton(t, nslack.ActionStepRequest, buttonStep) != "" && bt.stepButton(t, nslack.ActionStepDeny, buttonStep) == ""
	})
	if !bt.replies.ephemeral() {
		t.Fatal("an answer to a click was not ephemeral")
	}
}
