package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/input"
)

// Remediation steps that run. A person requests a step (for the exact
// plan they saw, by its hash), approvers vote, and Decide says when the
// step's policy is met. All of it is input, applied by the pure apply to
// the record's StepRequest, so a double click, a redelivery or a second
// replica changes nothing twice. A request lapses on a durable timer.

// StepPolicy is what the engine needs of a runbook's remediation step.
type StepPolicy struct {
	Title  string
	Action string
	// Automatic steps need no approval: a request is approved at once.
	Automatic bool
	Approval  ApprovalPolicy
	Cooldown  time.Duration
}

// Stepper is implemented by runbooks whose remediation steps can be
// requested.
type Stepper interface {
	// Step returns the policy of the step with id.
	Step(id string) (StepPolicy, bool)
}

// StepRequest is where a step's latest request stands.
type StepRequest struct {
	Step string `json:"step"`
	// Hash is the plan hash the request is bound to; Plan the plan's text
	// as the requester saw it.
	Hash      string        `json:"hash"`
	Plan      string        `json:"plan,omitempty"`
	Requested Mark          `json:"requested"`
	Votes     []Vote        `json:"votes,omitempty"`
	State     DecisionState `json:"state"`
	// Reason is Decide's sentence (who approved, why void or expired).
	Reason    string    `json:"reason,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Token fences the expiry timer: only a timer carrying it expires
	// this request.
	Token string `json:"token,omitempty"`
	// DecidedAt is when the request was settled: the time the deciding
	// vote was cast (votes cast later change nothing).
	DecidedAt time.Time `json:"decided_at,omitzero"`
	// Opening is the opening of the incident the request was made in
	// (Record.Reopened then): a plan runs at most once per opening.
	Opening int `json:"opening,omitempty"`
	// Run is the run of the approved plan, once begun.
	Run *StepRun `json:"run,omitempty"`
}

// ReasonNoStep is why a request for a step the runbook lacks does nothing.
const ReasonNoStep = "no such remediation step in the incident's runbook"

// maxEarlyVotes bounds the votes kept per step before their request.
const maxEarlyVotes = 16

// voteSkew is how much earlier than its request a vote may say it was
// cast and still count for it: replicas' clocks disagree a little. A vote
// cast longer before was for an earlier request.
const voteSkew = 30 * time.Second

// stepRequest applies a request: a person's, or the bot's for an
// automatic step when the incident opened or reopened.
func stepRequest(r *Record, in input.Input, env applyEnv) Result {
	if in.Actor == input.Bot {
		return autoRequest(r, in, env)
	}
	return requestStep(r, in, env)
}

// autoRequest is the bot's request of an automatic step, made once per
// opening of the incident (Record.AutoDue): when it is refused (cooling
// down, frozen, the plan could not be resolved: then Hash is empty and
// Text says why) the thread says so, and it is not tried again until the
// incident reopens.
func autoRequest(r *Record, in input.Input, env applyEnv) Result {
	i := slices.Index(r.AutoDue, in.Step)
	if i < 0 {
		return noop("the automatic step " + in.Step + " was already requested in this opening of the incident")
	}
	r.AutoDue = slices.Delete(r.AutoDue, i, i+1)
	if len(r.AutoDue) == 0 {
		r.AutoDue = nil
	}
	why := in.Text
	if in.Hash != "" {
		res := requestStep(r, in, env)
		if res.Changed() {
			return res
		}
		why = res.Reason
	}
	r.addUpdate(env.Now, "step_not_run", fmt.Sprintf("The automatic step %s did not run: %s", in.Step, why))
	return Result{change: stepChanged, step: in.Step}
}

// requestStep applies a request that may be taken.
func requestStep(r *Record, in input.Input, env applyEnv) Result {
	pol, ok := env.step(in.Step)
	if !ok {
		return noop(fmt.Sprintf("%s: %q", ReasonNoStep, in.Step))
	}
	if !r.Open() {
		return stale("incident is resolved")
	}
	if cur := r.Steps[in.Step]; cur != nil && cur.State == DecisionPending && cur.Hash == in.Hash && env.Now.Before(cur.ExpiresAt) {
		return noop("already requested by " + cur.Requested.By.String())
	}
	if cur := r.Steps[in.Step]; cur != nil && cur.State == DecisionApproved && cur.Hash == in.Hash && cur.Opening == r.Reopened {
		if cur.Run != nil && cur.Run.Result != "" {
			return noop(in.Step + " already ran for this plan (" + cur.Run.Result + "): it never runs twice; retry by hand")
		}
		return noop(in.Step + " is already approved")
	}
	if prev := r.Steps[in.Step]; prev != nil && prev.Run != nil && pol.Cooldown > 0 {
		if until := prev.Run.StartedAt.Add(pol.Cooldown); !prev.Run.StartedAt.IsZero() && in.At.Before(until) {
			return noop(fmt.Sprintf("%s is cooling down after its run at %s: it may be requested again from %s",
				in.Step, prev.Run.StartedAt.UTC().Format("15:04 UTC"), until.UTC().Format("15:04 UTC")))
		}
	}
	req := &StepRequest{Step: in.Step, Hash: in.Hash, Plan: in.Text, Requested: Mark{By: in.Actor, At: in.At}, State: DecisionPending,
		Opening: r.Reopened}
	text := fmt.Sprintf("%s requested %s: %s (plan %s)", in.Actor, in.Step, orTitle(in.Text, pol.Title), short(in.Hash))
	if prev := r.Steps[in.Step]; prev != nil && prev.State == DecisionPending && prev.Hash != in.Hash {
		text += "; the earlier request for plan " + short(prev.Hash) + " is void: the plan changed"
	}
	if pol.Automatic {
		req.State, req.Reason, req.DecidedAt = DecisionApproved, "automatic: the runbook lets it run without approval", in.At
		text += "; automatic, no approval needed"
	} else {
		req.ExpiresAt = in.At.Add(pol.Approval.Expires)
		text += "; needs " + pol.Approval.String()
		// Votes applied before this request count now.
		var early int
		req.Votes, early = r.foldEarlyVotes(in.Step, in.Hash, in.At)
		d, at := decideInTime(pol.Approval, req.Votes, req.Requested, req.Hash, env.Now)
		req.State, req.Reason, req.DecidedAt = d.State, d.Reason, at
		if early > 0 {
			text += fmt.Sprintf("; %d vote(s) cast before the request was recorded count: %s", early, d.Reason)
		}
		if d.State == DecisionPending {
			req.Token = fmt.Sprintf("%s.%s.%d", r.ID, in.Step, r.Version+1)
		}
	}
	if r.Steps == nil {
		r.Steps = map[string]*StepRequest{}
	}
	r.Steps[in.Step] = req
	r.addUpdate(env.Now, "step_requested", text)
	return Result{change: stepChanged, step: in.Step}
}

// foldEarlyVotes takes out of the early votes of step those for the plan
// with hash cast since the request at (give or take voteSkew), and drops
// the ones cast too long before it to count for any request to come.
func (r *Record) foldEarlyVotes(step, hash string, at time.Time) ([]Vote, int) {
	var votes, keep []Vote
	for _, v := range r.EarlyVotes[step] {
		switch {
		case v.At.Before(at.Add(-voteSkew)):
		case v.Hash == hash:
			votes = append(votes, v)
		default:
			keep = append(keep, v)
		}
	}
	if len(keep) == 0 {
		delete(r.EarlyVotes, step)
	} else {
		r.EarlyVotes[step] = keep
	}
	if len(r.EarlyVotes) == 0 {
		r.EarlyVotes = nil
	}
	return votes, len(votes)
}

func stepVote(r *Record, in input.Input, env applyEnv) Result {
	pol, ok := env.step(in.Step)
	if !ok {
		return noop(fmt.Sprintf("%s: %q", ReasonNoStep, in.Step))
	}
	if pol.Automatic {
		return noop(in.Step + " is automatic: it needs no approval")
	}
	v := Vote{By: in.Actor, At: in.At, Approve: in.Kind == input.Approve, Hash: in.Hash, As: in.As}
	req := r.Steps[in.Step]
	if req == nil || (req.Hash != in.Hash && req.State != DecisionPending) {
		// Nothing pending to vote on: its request may not be applied
		// yet (a vote sent right after its request, applied first by
		// another replica). Kept until a request for its plan arrives.
		return earlyVote(r, in, v, pol, env)
	}
	late := false
	switch {
	case req.Hash != in.Hash:
		// A vote for another plan than the pending request's: it voids it.
	case req.Run != nil && req.Run.Hash == req.Hash:
		return noop("the request for " + in.Step + " is already " + string(req.State) + ", and its run has begun")
	case req.State == DecisionApproved || req.State == DecisionDenied:
		// A vote cast before the decision but applied after it counts,
		// so the decision does not depend on the order votes arrive in.
		if req.DecidedAt.IsZero() || v.At.After(req.DecidedAt) {
			return noop("the request for " + in.Step + " is already " + string(req.State))
		}
		late = true
	case req.State != DecisionPending:
		return noop("the request for " + in.Step + " is already " + string(req.State))
	}
	if ok, why := MayApprove(pol.Approval, in.Actor, in.As, req.Requested.By); !ok {
		return noop(why)
	}
	if slices.ContainsFunc(req.Votes, func(o Vote) bool {
		return personID(o.By) == personID(v.By) && o.Approve == v.Approve && o.Hash == v.Hash
	}) {
		return noop("you already voted on " + in.Step)
	}
	req.Votes = append(req.Votes, v)
	var d Decision
	if in.Hash != req.Hash {
		d = Decide(pol.Approval, req.Votes, req.Requested, req.Hash, in.Hash, env.Now)
		req.DecidedAt = in.At
	} else {
		d, req.DecidedAt = decideInTime(pol.Approval, req.Votes, req.Requested, req.Hash, env.Now)
	}
	req.State, req.Reason = d.State, d.Reason
	verb := "approved"
	if !v.Approve {
		verb = "denied"
	}
	text := fmt.Sprintf("%s %s %s (plan %s)", in.Actor, verb, in.Step, short(in.Hash))
	if late {
		text += " before the request was decided"
	}
	switch d.State {
	case DecisionApproved:
		text += ": " + d.Reason + ", ready to run"
	case DecisionPending, DecisionDenied:
		text += ": " + d.Reason
	case DecisionVoid:
		text = fmt.Sprintf("The request for %s is void: %s", in.Step, d.Reason)
	case DecisionExpired:
		text = fmt.Sprintf("The request for %s expired: %s", in.Step, d.Reason)
	}
	if d.State != DecisionPending {
		req.Token = ""
	}
	r.addUpdate(env.Now, "step_"+verb, text)
	return Result{change: stepChanged, step: in.Step}
}

// earlyVote keeps a vote that came before any request it could be for.
// Whether the voter may approve is checked now as far as it can be (an
// approver of the step); whether they are the requester, once the request
// arrives (Decide).
func earlyVote(r *Record, in input.Input, v Vote, pol StepPolicy, env applyEnv) Result {
	if ok, why := MayApprove(pol.Approval, in.Actor, in.As, input.Actor{}); !ok {
		return noop(why)
	}
	early := r.EarlyVotes[in.Step]
	if slices.ContainsFunc(early, func(o Vote) bool {
		return personID(o.By) == personID(v.By) && o.Approve == v.Approve && o.Hash == v.Hash
	}) {
		return noop("you already voted on " + in.Step)
	}
	early = append(early, v)
	slices.SortFunc(early, voteOrder)
	if len(early) > maxEarlyVotes {
		dropped := early[0]
		early = slices.Delete(early, 0, len(early)-maxEarlyVotes)
		if dropped == v {
			return noop(fmt.Sprintf("%d later votes on %s wait for its request", maxEarlyVotes, in.Step))
		}
	}
	if r.EarlyVotes == nil {
		r.EarlyVotes = map[string][]Vote{}
	}
	r.EarlyVotes[in.Step] = early
	verb := "approved"
	if !v.Approve {
		verb = "denied"
	}
	r.addUpdate(env.Now, "step_vote_early", fmt.Sprintf("%s %s %s (plan %s) before its request was recorded: the vote counts once the request for that plan arrives",
		in.Actor, verb, in.Step, short(in.Hash)))
	return Result{change: stepChanged, step: in.Step}
}

func stepExpired(r *Record, in input.Input, env applyEnv) Result {
	req := r.Steps[in.Step]
	if req == nil || req.Token == "" || req.Token != in.Token {
		return stale("approval timer no longer current")
	}
	req.State, req.Token = DecisionExpired, ""
	req.Reason = fmt.Sprintf("nobody approved %s in time (requested by %s)", in.Step, req.Requested.By)
	r.addUpdate(env.Now, "step_expired", "The request for "+in.Step+" expired: "+req.Reason)
	return Result{change: stepChanged, step: in.Step}
}

func orTitle(plan, title string) string {
	if plan != "" {
		return plan
	}
	return title
}

func (env applyEnv) step(id string) (StepPolicy, bool) {
	if env.Step == nil {
		return StepPolicy{}, false
	}
	return env.Step(id)
}

func cloneSteps(m map[string]*StepRequest) map[string]*StepRequest {
	if m == nil {
		return nil
	}
	out := make(map[string]*StepRequest, len(m))
	for k, v := range m {
		c := *v
		c.Votes = slices.Clone(v.Votes)
		if v.Run != nil {
			run := *v.Run
			c.Run = &run
		}
		out[k] = &c
	}
	return out
}

func cloneVotes(m map[string][]Vote) map[string][]Vote {
	if m == nil {
		return nil
	}
	out := make(map[string][]Vote, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

// runKey is the action key of the run of step for plan hash in r: one per
// incident, opening, step and plan. Runs of the first opening keep the
// key they always had.
func runKey(r *Record, step, hash string) string {
	inc := r.ID
	if q := r.Steps[step]; q != nil && q.Opening > 0 {
		inc = fmt.Sprintf("%s#%d", r.ID, q.Opening)
	}
	return actionKey(inc, step, hash)
}

// ApprovalTimerEventType is the type of a fired approval expiry timer.
const ApprovalTimerEventType = "engine.approval_expired"

type approvalTimer struct {
	Incident string `json:"incident"`
	Step     string `json:"step"`
	Token    string `json:"token"`
}

func approvalTimerKey(r *Record, step string) string {
	return "apv." + strings.TrimPrefix(r.Key, "inc.") + "." + step
}

// armApprovalTimers makes the approval schedules match the record: one per
// pending request, armed for its expiry with its token; cancelled once it
// is decided.
func (e *Engine) armApprovalTimers(ctx context.Context, prev, r *Record, redo bool) error {
	steps := slices.Sorted(maps.Keys(r.Steps))
	for _, id := range steps {
		req := r.Steps[id]
		var before *StepRequest
		if prev != nil && prev.ID == r.ID {
			before = prev.Steps[id]
		}
		if !redo && before != nil && before.Token == req.Token {
			continue
		}
		key := approvalTimerKey(r, id)
		if req.Token == "" {
			if err := e.timers.CancelSchedule(ctx, key); err != nil {
				return fmt.Errorf("cancel approval timer of %s %s: %w", r.ID, id, err)
			}
			continue
		}
		data, _ := json.Marshal(approvalTimer{Incident: r.ID, Step: id, Token: req.Token})
		ev := bus.Event{ID: "approval." + req.Token, Source: "engine", Type: ApprovalTimerEventType,
			Time: req.ExpiresAt, Subject: r.GroupKey, Data: data}
		if err := e.timers.Schedule(ctx, key, req.ExpiresAt, ev); err != nil {
			return fmt.Errorf("arm approval timer of %s %s: %w", r.ID, id, err)
		}
	}
	return nil
}

// ApprovalTimerDecoder decodes a fired approval expiry timer.
func ApprovalTimerDecoder(ev bus.Event) ([]input.Input, error) {
	var d approvalTimer
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		return nil, bus.Poison(fmt.Errorf("decode approval timer: %w", err))
	}
	return []input.Input{{Kind: input.ApprovalExpired, ID: ev.ID, At: ev.Time, Incident: d.Incident, Step: d.Step, Token: d.Token, Actor: input.Bot}}, nil
}

// StepStatus is one step's request as the card shows it: "requested by
// Ada (slack) — 1 of 2 approvals (Bob (slack)); expires 04:30 UTC".
func (q *StepRequest) StepStatus() string {
	s := fmt.Sprintf("%s: requested by %s, plan %s", q.State, q.Requested.By, short(q.Hash))
	if q.Reason != "" {
		s += " — " + q.Reason
	}
	if q.State == DecisionPending && !q.ExpiresAt.IsZero() {
		s += "; expires " + q.ExpiresAt.UTC().Format("15:04 UTC")
	}
	if r := q.Run; r != nil && r.Hash == q.Hash {
		switch r.Result {
		case "":
			s += "; running since " + r.StartedAt.UTC().Format("15:04:05 UTC")
		case RunUnknown:
			s += "; ❓ outcome unknown: check, then retry by hand (" + r.Detail + ")"
		default:
			s += "; " + r.Result + ": " + r.Detail
		}
	}
	return s
}
