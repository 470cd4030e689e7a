package slack_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/engine"
	slackin "github.com/incidentbot/incidentbot/handlers/slack"
	"github.com/incidentbot/incidentbot/runbooks"
)

// groups is a fake of the cached user-group resolver: user → the group
// handle they are a member of.
type groups map[string]string

func (g groups) Match(_ context.Context, user string, approvers []string) (string, error) {
	for _, a := range approvers {
		if a == user || a == g[user] {
			return a, nil
		}
	}
	return "", nil
}

// TestStepApprovalFromSlack: /incident run, then approve by a second
// person through signed requests; self-approval and a stranger are refused
// ephemerally and send nothing; a repeated command is one request.
func TestStepApprovalFromSlack(t *testing.T) {
	bt := newBot(t)
	set, _, err := runbooks.LoadDefault("", actions.Default())
	if err != nil {
		t.Fatal(err)
	}
	bt.h = mustHandler(t, bt, func(o *slackin.Options) {
		o.Now = time.Now
		o.Steps = app.Steps{Catalog: app.Catalog{Set: set, DefaultChannel: "#incidents"}}
		o.Approvers = groups{"U0ADA": "@solana-oncall", "U0BOB": "@solana-oncall", "U0CY": "@solana-senior"}
	})
	bt.alert(t, "webhook.firing.single.json")
	ask := func(user, name, text, trigger string) string {
		body := slash(user, name, text, trigger)
		return reply(t, bt.post(slackin.CommandsPath, body, signed(fixtureSecret, time.Now().Unix(), body)))
	}
	if got := ask("U0ADA", "ada", "approve INC-2041 disable-feature", "t0"); !strings.Contains(got, "Nobody requested `disable-feature`") {
		t.Fatalf("approve before request: %q", got)
	}
	got := ask("U0ADA", "ada", "run INC-2041 disable-feature", "t1")
	if !strings.Contains(got, "Requested `disable-feature` for *INC-2041*: accepted") || !strings.Contains(got, "SET feature:enable_escrow false") {
		t.Fatalf("run answered %q", got)
	}
	ask("U0ADA", "ada", "run INC-2041 disable-feature", "t1") // Slack's retry of the same request
	eventually(t, "the request", func() bool { return bt.record(t, fixtureID).Steps["disable-feature"] != nil })

	before := bt.stored(t)
	if got := ask("U0ADA", "ada", "approve INC-2041 disable-feature", "t2"); !strings.Contains(got, "⛔") || !strings.Contains(got, "does not let the requester approve") {
		t.Fatalf("self-approval answered %q", got)
	}
	if got := ask("U0EVE", "eve", "approve INC-2041 disable-feature", "t3"); !strings.Contains(got, "⛔") || !strings.Contains(got, "not an approver") {
		t.Fatalf("stranger answered %q", got)
	}
	if bt.stored(t) != before {
		t.Fatal("a refused vote was sent")
	}
	if got := ask("U0BOB", "bob", "approve INC-2041 disable-feature", "t4"); !strings.Contains(got, "Your approval of `disable-feature` for *INC-2041* is accepted") {
		t.Fatalf("approve answered %q", got)
	}
	eventually(t, "approved", func() bool {
		q := bt.record(t, fixtureID).Steps["disable-feature"]
		return q != nil && q.State == engine.DecisionApproved
	})
	r := bt.record(t, fixtureID)
	q := r.Steps["disable-feature"]
	if q.Requested.By.ID != "U0ADA" || len(q.Votes) != 1 || q.Votes[0].By.ID != "U0BOB" || q.Votes[0].As != "@solana-oncall" || len(q.Hash) != 64 {
		t.Fatalf("request %+v", q)
	}
	n := 0
	for _, u := range r.Timeline {
		if u.Kind == "step_requested" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d requests on the timeline, want 1", n)
	}
	if got := ask("U0CY", "cy", "deny INC-2041 disable-feature", "t5"); !strings.Contains(got, "already approved") {
		t.Fatalf("deny after approval answered %q", got)
	}
	// Requesting it again would be dropped by the engine: say so, send nothing.
	before = bt.stored(t)
	if got := ask("U0CY", "cy", "run INC-2041 disable-feature", "t6"); !strings.Contains(got, "`disable-feature` is already approved for this plan") {
		t.Fatalf("request of an approved step answered %q", got)
	}
	if bt.stored(t) != before {
		t.Fatal("a request of an approved step was sent")
	}
}

// fakeGroups answers usergroups.list and usergroups.users.list, counting
// calls.
type fakeGroups struct{ lists, members int }

func (f *fakeGroups) GetUserGroupsContext(context.Context, ...slack.GetUserGroupsOption) ([]slack.UserGroup, error) {
	f.lists++
	return []slack.UserGroup{{ID: "S0ONCALL", Handle: "solana-oncall"}, {ID: "S0SENIOR", Handle: "solana-senior"}}, nil
}

func (f *fakeGroups) GetUserGroupMembersContext(_ context.Context, g string, _ ...slack.GetUserGroupMembersOption) ([]string, error) {
	f.members++
	return map[string][]string{"S0ONCALL": {"U0BOB"}, "S0SENIOR": {"U0CY"}}[g], nil
}

// TestAccessMatchesApprovers: a user id entry is that user; a group, by
// handle or id, its members; lookups are cached.
func TestAccessMatchesApprovers(t *testing.T) {
	api := &fakeGroups{}
	a := slackin.NewAccess(nil, nil, api, time.Minute)
	ctx := context.Background()
	approvers := []string{"U0ADA", "@solana-oncall", "S0SENIOR"}
	for user, want := range map[string]string{"U0ADA": "U0ADA", "U0BOB": "@solana-oncall", "U0CY": "S0SENIOR", "U0EVE": ""} {
		got, err := a.Match(ctx, user, approvers)
		if err != nil || got != want {
			t.Errorf("Match(%s) = %q, %v; want %q", user, got, err, want)
		}
	}
	if api.lists != 1 || api.members != 2 {
		t.Errorf("%d usergroups.list and %d usergroups.users.list calls, want 1 and 2 (cached)", api.lists, api.members)
	}
	if _, err := a.Match(ctx, "U0EVE", []string{"@nobody"}); err == nil || !strings.Contains(err.Error(), "no user group @nobody") {
		t.Errorf("unknown handle: %v", err)
	}
}

type frozen struct {
	f engine.Freeze
	// breaker is what BreakerOpen says of every runbook.
	breaker string
}

func (z *frozen) BreakerOpen(context.Context, string) (string, error) { return z.breaker, nil }

func (z *frozen) Frozen(context.Context) (engine.Freeze, error) { return z.f, nil }

// TestFreezeRefusesSteps: /incident freeze is a command on the bus, applied
// by the engine: the kill switch goes on (the KV key every replica reads),
// is audited once and said on the open incident; a retried slash command
// is stored once. While on, run, approve and deny are refused and nothing
// is sent; /incident unfreeze lifts it.
func TestFreezeRefusesSteps(t *testing.T) {
	bt := newBot(t)
	set, _, err := runbooks.LoadDefault("", actions.Default())
	if err != nil {
		t.Fatal(err)
	}
	bt.h = mustHandler(t, bt, func(o *slackin.Options) {
		o.Now = time.Now
		o.Steps = app.Steps{Catalog: app.Catalog{Set: set, DefaultChannel: "#incidents"}}
		o.Freezer = bt.eng
	})
	bt.alert(t, "webhook.firing.single.json")
	ask := func(text string) string {
		body := slash("U0ADA", "ada", text, "t-"+text)
		return reply(t, bt.post(slackin.CommandsPath, body, signed(fixtureSecret, time.Now().Unix(), body)))
	}
	frozen := func() engine.Freeze {
		f, err := bt.eng.Frozen(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	if got := ask("freeze bad deploy"); !strings.Contains(got, "Freeze accepted") {
		t.Fatalf("freeze answered %q", got)
	}
	eventually(t, "the freeze", func() bool { return frozen().On })
	if f := frozen(); f.Reason != "bad deploy" || f.By.ID != "U0ADA" {
		t.Fatalf("freeze %+v", f)
	}
	said := func() int {
		n := 0
		for _, u := range bt.record(t, fixtureID).Timeline {
			if u.Kind == "freeze" && strings.Contains(u.Text, "Remediation frozen by ada (slack): bad deploy") {
				n++
			}
		}
		return n
	}
	eventually(t, "the incident told", func() bool { return said() == 1 })
	// Slack's retry of the same request: stored once, applied once.
	before := bt.stored(t)
	if got := ask("freeze bad deploy"); !strings.Contains(got, "Freeze accepted") {
		t.Fatalf("retried freeze answered %q", got)
	}
	if bt.stored(t) != before {
		t.Fatal("a retried freeze was stored twice")
	}
	for _, c := range []string{"run INC-2041 disable-feature", "approve INC-2041 disable-feature", "deny INC-2041 disable-feature"} {
		if got := ask(c); !strings.Contains(got, "🧊 Remediation frozen by ada (slack)") || !strings.Contains(got, "nothing is requested, approved or run") {
			t.Errorf("%s answered %q", c, got)
		}
	}
	if bt.stored(t) != before {
		t.Fatal("a command was sent while frozen")
	}
	if got := ask("unfreeze"); !strings.Contains(got, "Unfreeze accepted") {
		t.Fatalf("unfreeze answered %q", got)
	}
	eventually(t, "the unfreeze", func() bool { return !frozen().On })
	if n := len(bt.audits(t, "remediation.freeze")); n != 1 || said() != 1 {
		t.Fatalf("%d freezes audited, said %d times: want 1", n, said())
	}
	if n := len(bt.audits(t, "remediation.unfreeze")); n != 1 {
		t.Fatalf("%d unfreezes audited, want 1", n)
	}
	if got := ask("run INC-2041 disable-feature"); !strings.Contains(got, "Requested `disable-feature`") {
		t.Fatalf("run after unfreeze answered %q", got)
	}
}

// TestBreakerRefusesRequests: while the runbook's circuit breaker is
// open, /incident run is refused with the reason and nothing is sent; a
// revert step is not refused by it (here there is nothing to revert).
func TestBreakerRefusesRequests(t *testing.T) {
	bt := newBot(t)
	set, _, err := runbooks.LoadDefault("", actions.Default())
	if err != nil {
		t.Fatal(err)
	}
	z := &frozen{breaker: "circuit breaker open: 3 failed runs of runbook high-error-rate since 03:10 UTC; closes at 04:10 UTC"}
	bt.h = mustHandler(t, bt, func(o *slackin.Options) {
		o.Now = time.Now
		o.Steps = app.Steps{Catalog: app.Catalog{Set: set, DefaultChannel: "#incidents"}}
		o.Freezer = z
	})
	bt.alert(t, "webhook.firing.single.json")
	ask := func(text string) string {
		body := slash("U0ADA", "ada", text, "t-"+text)
		return reply(t, bt.post(slackin.CommandsPath, body, signed(fixtureSecret, time.Now().Unix(), body)))
	}
	before := bt.stored(t)
	if got := ask("run INC-2041 disable-feature"); !strings.Contains(got, "🔌 circuit breaker open: 3 failed runs of runbook high-error-rate since 03:10 UTC; closes at 04:10 UTC: `disable-feature` cannot be requested until it closes") {
		t.Fatalf("run answered %q", got)
	}
	if got := ask("run INC-2041 revert-disable-feature"); !strings.Contains(got, "nothing to revert: disable-feature has no run that changed something") {
		t.Fatalf("revert answered %q", got)
	}
	if bt.stored(t) != before {
		t.Fatal("a command was sent while the breaker is open")
	}
}
