package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/signal"
)

func stepEnv(now time.Time, min int) applyEnv {
	env := testEnv(now)
	env.Step = func(id string) (StepPolicy, bool) {
		switch id {
		case "disable-feature":
			return StepPolicy{Title: "Disable the feature", Action: "featureflag.disable",
				Approval: ApprovalPolicy{Approvers: []string{"ada", "bob", "@oncall"}, MinApprovals: min, Expires: 15 * time.Minute}}, true
		case "auto-step":
			return StepPolicy{Title: "Restart", Action: "kubernetes.rollout_restart", Automatic: true}, true
		}
		return StepPolicy{}, false
	}
	return env
}

func stepCmd(kind input.Kind, id string, at time.Time, who, step, hash, as string) input.Input {
	in := cmd(kind, id, at, who)
	in.Step, in.Hash, in.As, in.Text = step, hash, as, "redis: SET feature:enable_escrow false"
	return in
}

// TestStepApproval: request then approve by a second user, self-approval,
// a quorum of distinct people, double clicks, expiry, a changed plan.
func TestStepApproval(t *testing.T) {
	rec, _ := applySignals(nil, []input.Input{sig("1", signal.Firing, t0)}, testEnv(t0))
	now := t0.Add(time.Minute)
	env := stepEnv(now, 1)

	if _, res := applyInput(rec, stepCmd(input.Request, "r0", now, "ada", "nope", "h1", ""), env); res.Changed() || !strings.Contains(res.Reason, ReasonNoStep) {
		t.Fatalf("unknown step: %v", res)
	}
	// A vote applied before its request is kept, not lost; a stranger's
	// is refused at once.
	early, res := applyInput(rec, stepCmd(input.Approve, "a0", now.Add(time.Second), "bob", "disable-feature", "h1", "bob"), env)
	if !res.Changed() || len(early.EarlyVotes["disable-feature"]) != 1 || early.Steps["disable-feature"] != nil ||
		!strings.Contains(lastText(early), "before its request was recorded") {
		t.Fatalf("vote without request: %v %+v", res, early.EarlyVotes)
	}
	if _, res := applyInput(rec, stepCmd(input.Approve, "a0x", now, "eve", "disable-feature", "h1", ""), env); res.Changed() || !strings.Contains(res.Reason, "not an approver") {
		t.Fatalf("a stranger's early vote: %v", res)
	}
	// Its request arrives: the vote counts.
	folded, _ := applyInput(early, stepCmd(input.Request, "r0b", now, "ada", "disable-feature", "h1", ""), env)
	if q := folded.Steps["disable-feature"]; q.State != DecisionApproved || q.Token != "" || len(folded.EarlyVotes) != 0 ||
		!strings.Contains(lastText(folded), "1 vote(s) cast before the request was recorded count: approved by bob (slack)") {
		t.Fatalf("request after its vote: %+v %q", q, lastText(folded))
	}
	// The requester's own early vote does not count.
	selfEarly, _ := applyInput(rec, stepCmd(input.Approve, "a0s", now.Add(time.Second), "ada", "disable-feature", "h1", "ada"), env)
	selfEarly, _ = applyInput(selfEarly, stepCmd(input.Request, "r0c", now, "ada", "disable-feature", "h1", ""), env)
	if q := selfEarly.Steps["disable-feature"]; q.State != DecisionPending || q.Token == "" {
		t.Fatalf("requester's early vote counted: %+v", q)
	}
	r1, res := applyInput(rec, stepCmd(input.Request, "r1", now, "ada", "disable-feature", "h1", ""), env)
	q := r1.Steps["disable-feature"]
	if !res.Changed() || q == nil || q.State != DecisionPending || q.Token == "" || !q.ExpiresAt.Equal(now.Add(15*time.Minute)) {
		t.Fatalf("request: %v %+v", res, q)
	}
	if !strings.Contains(lastText(r1), "ada (slack) requested disable-feature: redis: SET feature:enable_escrow false (plan h1); needs 1 approval") {
		t.Errorf("timeline %q", lastText(r1))
	}
	// A second click on Request (another request id) changes nothing.
	if _, res := applyInput(r1, stepCmd(input.Request, "r2", now, "ada", "disable-feature", "h1", ""), env); res.Changed() {
		t.Fatalf("second request: %v", res)
	}
	// Self-approval is refused with the reason.
	if _, res := applyInput(r1, stepCmd(input.Approve, "a1", now, "ada", "disable-feature", "h1", "ada"), env); res.Changed() || !strings.Contains(res.Reason, "does not let the requester approve") {
		t.Fatalf("self-approval: %v", res)
	}
	// A stranger is refused.
	if _, res := applyInput(r1, stepCmd(input.Approve, "a2", now, "eve", "disable-feature", "h1", ""), env); res.Changed() || !strings.Contains(res.Reason, "not an approver") {
		t.Fatalf("stranger: %v", res)
	}
	// Bob approves: approved, the timer's token cleared.
	r2, res := applyInput(r1, stepCmd(input.Approve, "a3", now.Add(time.Minute), "bob", "disable-feature", "h1", "bob"), env)
	if q := r2.Steps["disable-feature"]; !res.Changed() || q.State != DecisionApproved || q.Token != "" || !strings.Contains(lastText(r2), "bob (slack) approved disable-feature (plan h1): approved by bob (slack), ready to run") {
		t.Fatalf("approve: %v %+v %q", res, q, lastText(r2))
	}
	// A double click of Approve is one vote.
	if _, res := applyInput(r2, stepCmd(input.Approve, "a3", now.Add(time.Minute), "bob", "disable-feature", "h1", "bob"), env); res.Changed() {
		t.Fatalf("double click: %v", res)
	}
	if r1.Steps["disable-feature"].State != DecisionPending {
		t.Fatal("apply changed its input record")
	}

	t.Run("quorum of two distinct people", func(t *testing.T) {
		env := stepEnv(now, 2)
		r, _ := applyInput(rec, stepCmd(input.Request, "r1", now, "ada", "disable-feature", "h1", ""), env)
		r, _ = applyInput(r, stepCmd(input.Approve, "a1", now, "bob", "disable-feature", "h1", "bob"), env)
		r, _ = applyInput(r, stepCmd(input.Approve, "a2", now.Add(time.Second), "bob", "disable-feature", "h1", "@oncall"), env)
		if q := r.Steps["disable-feature"]; q.State != DecisionPending || !strings.Contains(q.Reason, "1 of 2") {
			t.Fatalf("one person twice: %+v", q)
		}
		r, _ = applyInput(r, stepCmd(input.Approve, "a3", now.Add(2*time.Second), "cy", "disable-feature", "h1", "@oncall"), env)
		if q := r.Steps["disable-feature"]; q.State != DecisionApproved || !strings.Contains(q.Reason, "bob (slack), cy (slack)") {
			t.Fatalf("two people: %+v", q)
		}
	})

	t.Run("deny", func(t *testing.T) {
		r, res := applyInput(r1, stepCmd(input.Deny, "d1", now, "bob", "disable-feature", "h1", "bob"), env)
		if q := r.Steps["disable-feature"]; !res.Changed() || q.State != DecisionDenied || q.Token != "" {
			t.Fatalf("deny: %v %+v", res, q)
		}
		if _, res := applyInput(r, stepCmd(input.Approve, "a9", now.Add(time.Second), "cy", "disable-feature", "h1", "@oncall"), env); res.Changed() || !strings.Contains(res.Reason, "already denied") {
			t.Fatalf("vote after deny: %v", res)
		}
		// An approval cast before the deny, applied after it: the
		// request was approved first.
		r, res = applyInput(r, stepCmd(input.Approve, "a10", now.Add(-time.Second), "cy", "disable-feature", "h1", "@oncall"), env)
		if q := r.Steps["disable-feature"]; !res.Changed() || q.State != DecisionApproved || !strings.Contains(lastText(r), "before the request was decided: approved by cy (slack)") {
			t.Fatalf("an earlier approval applied late: %v %+v %q", res, q, lastText(r))
		}
	})

	t.Run("expired", func(t *testing.T) {
		tok := r1.Steps["disable-feature"].Token
		late := stepEnv(now.Add(15*time.Minute), 1)
		if _, res := applyInput(r1, input.Input{Kind: input.ApprovalExpired, ID: "t0", Incident: "INC-TEST", Step: "disable-feature", Token: "old"}, late); !res.Stale {
			t.Fatalf("timer of another request: %v", res)
		}
		r, res := applyInput(r1, input.Input{Kind: input.ApprovalExpired, ID: "t1", Incident: "INC-TEST", Step: "disable-feature", Token: tok}, late)
		if q := r.Steps["disable-feature"]; !res.Changed() || q.State != DecisionExpired {
			t.Fatalf("expiry: %v %+v", res, q)
		}
		if _, res := applyInput(r, stepCmd(input.Approve, "a4", now.Add(16*time.Minute), "bob", "disable-feature", "h1", "bob"), late); res.Changed() {
			t.Fatalf("approve after expiry: %v", res)
		}
		// The timer lost (or late): a vote after expiry still cannot approve.
		r, _ = applyInput(r1, stepCmd(input.Approve, "a5", now.Add(16*time.Minute), "bob", "disable-feature", "h1", "bob"), stepEnv(now.Add(16*time.Minute), 1))
		if q := r.Steps["disable-feature"]; q.State != DecisionExpired {
			t.Fatalf("late vote: %+v", q)
		}
	})

	t.Run("a changed plan voids the request", func(t *testing.T) {
		r, res := applyInput(r1, stepCmd(input.Approve, "a6", now, "bob", "disable-feature", "h2", "bob"), env)
		if q := r.Steps["disable-feature"]; !res.Changed() || q.State != DecisionVoid || !strings.Contains(lastText(r), "is void: the plan changed since it was requested (plan h1, now h2)") {
			t.Fatalf("vote on a new plan: %v %+v %q", res, q, lastText(r))
		}
		r, res = applyInput(r1, stepCmd(input.Request, "r3", now, "ada", "disable-feature", "h2", ""), env)
		if q := r.Steps["disable-feature"]; !res.Changed() || q.Hash != "h2" || q.State != DecisionPending || len(q.Votes) != 0 ||
			!strings.Contains(lastText(r), "the earlier request for plan h1 is void") {
			t.Fatalf("request of a new plan: %v %+v %q", res, q, lastText(r))
		}
	})

	t.Run("cooldown", func(t *testing.T) {
		env := stepEnv(now, 1)
		pol := env.Step
		env.Step = func(id string) (StepPolicy, bool) { p, ok := pol(id); p.Cooldown = 10 * time.Minute; return p, ok }
		ran := clone(r2)
		ran.Steps["disable-feature"].Run = &StepRun{Hash: "h1", StartedAt: now.Add(2 * time.Minute), Result: RunVerified}
		if _, res := applyInput(ran, stepCmd(input.Request, "r5", now.Add(5*time.Minute), "ada", "disable-feature", "h2", ""), env); res.Changed() ||
			!strings.Contains(res.Reason, "cooling down after its run at 14:03 UTC: it may be requested again from 14:13 UTC") {
			t.Fatalf("within the cooldown: %v", res)
		}
		if _, res := applyInput(ran, stepCmd(input.Request, "r6", now.Add(13*time.Minute), "ada", "disable-feature", "h2", ""), env); !res.Changed() {
			t.Fatalf("after the cooldown: %v", res)
		}
	})

	t.Run("automatic", func(t *testing.T) {
		r, res := applyInput(rec, stepCmd(input.Request, "r4", now, "ada", "auto-step", "h9", ""), env)
		if q := r.Steps["auto-step"]; !res.Changed() || q.State != DecisionApproved || q.Token != "" {
			t.Fatalf("automatic: %v %+v", res, q)
		}
	})
}

// TestStepStateForTheCard: what the card's buttons follow, from the
// latest request and the plan the card shows.
func TestStepStateForTheCard(t *testing.T) {
	ran := &StepRun{Hash: "h1", StartedAt: t0, Result: RunVerified}
	for _, tt := range []struct {
		name string
		q    StepRequest
		hash string
		want notify.StepState
	}{
		{"pending", StepRequest{Hash: "h1", State: DecisionPending}, "h1", notify.StepPending},
		{"pending for another plan", StepRequest{Hash: "h1", State: DecisionPending}, "h2", notify.StepVoid},
		{"pending, plan unknown", StepRequest{Hash: "h1", State: DecisionPending}, "", notify.StepPending},
		{"approved, waiting", StepRequest{Hash: "h1", State: DecisionApproved}, "h1", notify.StepApproved},
		{"running", StepRequest{Hash: "h1", State: DecisionApproved, Run: &StepRun{Hash: "h1", StartedAt: t0}}, "h1", notify.StepApproved},
		{"ran", StepRequest{Hash: "h1", State: DecisionApproved, Run: ran}, "h1", notify.StepRan},
		{"ran, plan changed since", StepRequest{Hash: "h1", State: DecisionApproved, Run: ran}, "h2", notify.StepNone},
		{"denied", StepRequest{Hash: "h1", State: DecisionDenied}, "h1", notify.StepDenied},
		{"expired", StepRequest{Hash: "h1", State: DecisionExpired}, "h1", notify.StepExpired},
		{"void", StepRequest{Hash: "h1", State: DecisionVoid}, "h1", notify.StepVoid},
	} {
		if got := stepState(&tt.q, tt.hash); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestAutomaticStepIsDueOncePerOpening: opening an incident makes its
// runbook's automatic steps due; the bot's request takes one off, so a
// repeat does nothing; a refusal is said in the thread; a reopen makes
// them due again.
func TestAutomaticStepIsDueOncePerOpening(t *testing.T) {
	env := stepEnv(t0, 1)
	env.AutoSteps = []string{"auto-step"}
	rec, _ := applySignals(nil, []input.Input{sig("1", signal.Firing, t0)}, env)
	if len(rec.AutoDue) != 1 || rec.AutoDue[0] != "auto-step" {
		t.Fatalf("due %v", rec.AutoDue)
	}
	bot := input.Input{Kind: input.Request, ID: "auto.INC-TEST.0.auto-step", At: t0, Incident: "INC-TEST", Actor: input.Bot, Step: "auto-step", Hash: "h9", Text: "restart api"}
	r, res := applyInput(rec, bot, env)
	if q := r.Steps["auto-step"]; !res.Changed() || q.State != DecisionApproved || q.Requested.By != input.Bot || len(r.AutoDue) != 0 {
		t.Fatalf("bot request: %v %+v %v", res, q, r.AutoDue)
	}
	again := bot
	again.ID = "another"
	if _, res := applyInput(r, again, env); res.Changed() || !strings.Contains(res.Reason, "already requested in this opening") {
		t.Fatalf("second bot request: %v", res)
	}
	// The bot cannot request a step that is not due (not automatic).
	manual := bot
	manual.Step, manual.ID = "disable-feature", "auto.INC-TEST.0.disable-feature"
	if _, res := applyInput(rec, manual, env); res.Changed() {
		t.Fatalf("bot request of a manual step: %v", res)
	}
	// Refused (no plan): said once in the thread.
	refused := bot
	refused.Hash, refused.Text = "", "could not resolve its plan: no kubeconfig"
	r2, res := applyInput(rec, refused, env)
	if !res.Changed() || r2.Steps["auto-step"] != nil || lastText(r2) != "The automatic step auto-step did not run: could not resolve its plan: no kubeconfig" {
		t.Fatalf("refusal: %v %q", res, lastText(r2))
	}
	// Resolved, then reopened: due again.
	env.Now = t0.Add(30 * time.Minute)
	r, _ = applySignals(r, []input.Input{sig("1", signal.Resolved, t0)}, env)
	r, res = applySignals(r, []input.Input{sig("1", signal.Firing, t0.Add(25*time.Minute))}, env)
	if res.change != reopened || len(r.AutoDue) != 1 {
		t.Fatalf("reopen: %v due %v", res, r.AutoDue)
	}
}
