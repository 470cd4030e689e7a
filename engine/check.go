package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
)

// Checking a run, and undoing it. After Run the action's Verify is called
// at once; when it answers actions.ErrNotYet, or when the step's
// verify.within asks for the incident to resolve as well, the run is
// "verifying": its action key says so and a durable timer (a message
// schedule on the timers stream, like approval timers) probes again every
// VerifyInterval until the check passes or the window ends. No worker is
// held for the window. A run whose check failed is reverted at once with
// revert: auto (exactly once: the revert has its own action key, the run's
// key + ".revert") and the incident escalates; with revert: manual the
// card offers revert-<id> as a step of its own, under the same approval
// policy.

// Results of a check and of a revert.
const (
	RunVerifying    = "verifying"
	RunReverted     = "reverted"
	RunRevertFailed = "revert_failed"
)

// Revert modes of a step (the runbook's revert key).
const (
	RevertAuto   = "auto"
	RevertManual = "manual"
	RevertNever  = "never"
)

// RevertPrefix starts the id of a step's revert step: revert-<id>.
const RevertPrefix = "revert-"

// RunPolicy is how a step's run is checked and undone.
type RunPolicy struct {
	// VerifyWithin is the check window, and by when the incident must
	// resolve for the run to count as verified; 0: the action's check
	// alone, within the engine's EffectTimeout.
	VerifyWithin time.Duration
	// IgnoreIncident: within VerifyWithin only the action's check counts
	// (verify.incident_resolves: false), for incidents that never resolve
	// by themselves.
	IgnoreIncident bool
	// Revert is RevertAuto, RevertManual or RevertNever.
	Revert string
}

// BreakerPolicy is a runbook's circuit breaker: Failures failed,
// verify_failed or reverted runs of its steps within Window open it.
type BreakerPolicy struct {
	Failures int
	Window   time.Duration
}

// DefaultBreaker applies to runbooks that set none: 3 failures in 1h.
var DefaultBreaker = BreakerPolicy{Failures: 3, Window: time.Hour}

// Guarded is implemented by runbooks whose steps are checked, undone and
// guarded by a circuit breaker. Runbooks that are not Guarded check with
// the action's Verify alone, never revert, and have DefaultBreaker.
type Guarded interface {
	RunPolicy(step string) (RunPolicy, bool)
	Breaker() BreakerPolicy
}

// RevertPolicy is the policy of the revert step of a step with policy p:
// the same approvers, no cooldown.
func RevertPolicy(p StepPolicy) StepPolicy {
	p.Title = "Revert: " + p.Title
	p.Cooldown = 0
	return p
}

func runPolicy(rb Runbook, step string) RunPolicy {
	if g, ok := rb.(Guarded); ok {
		if p, ok := g.RunPolicy(step); ok {
			return p
		}
	}
	return RunPolicy{Revert: RevertNever}
}

// revertible reports whether a run's result may be reverted: it ran and
// changed something.
func revertible(r *StepRun) bool {
	return r != nil && r.Before != "" && (r.Result == RunVerified || r.Result == RunVerifyFailed || r.Result == RunFailed)
}

// RevertPlan is the plan of revert step id (revert-<step>) of rec: what
// it restores, from the state recorded before the step's run. Its hash is
// derived from the run's action key.
func RevertPlan(rec *Record, id string) (actions.Plan, error) {
	orig, ok := strings.CutPrefix(id, RevertPrefix)
	var q *StepRequest
	if ok {
		q = rec.Steps[orig]
	}
	if q == nil || !revertible(q.Run) {
		return actions.Plan{}, fmt.Errorf("nothing to revert: %s has no run that changed something", orig)
	}
	return revertPlan(runKey(rec, orig, q.Run.Hash), orig, q.Run.Target, q.Run.Before, q.Run.StartedAt), nil
}

func revertPlan(key, step, target, before string, at time.Time) actions.Plan {
	if len(before) > 300 {
		before = before[:300] + "…"
	}
	text := fmt.Sprintf("restore %s as it was before %s ran at %s: %s", target, step, at.UTC().Format("15:04:05 UTC"), before)
	h := sha256.Sum256([]byte(key + ".revert"))
	return actions.Plan{Action: "revert", Text: text, Target: target, Hash: hex.EncodeToString(h[:])}
}

// revertProposals adds to the card, after each step, its revert step:
// offered (revert: manual) once a run of the step changed something, or
// shown once requested or run (revert: auto).
func revertProposals(rec *Record, rb Runbook, props []notify.Proposal) []notify.Proposal {
	out := make([]notify.Proposal, 0, len(props))
	for _, p := range props {
		out = append(out, p)
		id := RevertPrefix + p.ID
		q := rec.Steps[id]
		plan, err := RevertPlan(rec, id)
		if q == nil && (err != nil || runPolicy(rb, p.ID).Revert != RevertManual) {
			continue
		}
		rp := notify.Proposal{ID: id, Title: "Revert: " + p.Title, Action: p.Action, Approval: p.Approval, Automatic: p.Automatic}
		if err == nil {
			rp.Plan = plan.Text
		} else if q != nil {
			rp.Plan = q.Plan
		}
		if q != nil {
			rp.Status = q.StepStatus()
		}
		out = append(out, rp)
	}
	return out
}

// check brings a run's check forward: the action's Verify (until it
// passed), then, with verify.within, the incident's resolution. It sets
// run.Result to verified, verify_failed, or verifying while the window
// lasts.
func (e *Engine) check(ctx context.Context, rec *Record, runner actions.Runner, run *actionRun) {
	base := run.Outcome.Detail
	if !run.Checked {
		err := runner.Verify(ctx, e.actionEnv, run.Plan, run.Outcome)
		switch {
		case err == nil:
			run.Checked, run.Waiting = true, ""
		case errors.Is(err, actions.ErrNotYet):
			run.Waiting = err.Error()
		default:
			run.Result, run.Detail = RunVerifyFailed, base+"; verify failed: "+err.Error()
			return
		}
	}
	now := e.now()
	if run.Checked {
		if run.Within == 0 || run.IgnoreIncident {
			run.Result, run.Detail = RunVerified, base+"; verified"
			return
		}
		if !rec.Open() && !rec.ResolvedAt.After(run.StartedAt.Add(run.Within)) {
			run.Result, run.Detail = RunVerified, base+"; verified: the incident resolved "+
				notify.HumanDuration(max(rec.ResolvedAt.Sub(run.StartedAt), 0))+" after the run"
			return
		}
	}
	window := run.VerifyUntil.Sub(run.StartedAt)
	if !now.Before(run.VerifyUntil) {
		run.Result = RunVerifyFailed
		if run.Checked {
			run.Detail = fmt.Sprintf("%s; verify failed: the alerts still fire %s after the run", base, notify.HumanDuration(window))
		} else {
			run.Detail = fmt.Sprintf("%s; verify failed: not verified within %s (%s)", base, notify.HumanDuration(window), run.Waiting)
		}
		return
	}
	what := run.Waiting
	if run.Checked {
		what = "the change is live; waiting for the incident to resolve"
	}
	run.Result = RunVerifying
	run.Detail = fmt.Sprintf("%s; verifying until %s (%s)", base, run.VerifyUntil.UTC().Format("15:04:05 UTC"), what)
}

// VerifyTimerEventType is the type of a fired verify probe.
const VerifyTimerEventType = "engine.verify_due"

type verifyTimer struct {
	Incident string `json:"incident"`
	// Key is the incident's record key, Run the action key.
	Key string `json:"key"`
	Run string `json:"run"`
}

func verifyTimerKey(runKey string) string { return "vfy." + strings.TrimPrefix(runKey, "run.") }

// armProbe schedules the next probe of a verifying run.
func (e *Engine) armProbe(ctx context.Context, rec *Record, key string, run actionRun) error {
	at := e.now().Add(e.cfg.VerifyInterval)
	if at.After(run.VerifyUntil) {
		at = run.VerifyUntil
	}
	data, _ := json.Marshal(verifyTimer{Incident: rec.ID, Key: rec.Key, Run: key})
	ev := bus.Event{ID: fmt.Sprintf("verify.%s.%d", key, at.UnixNano()), Source: "engine", Type: VerifyTimerEventType,
		Time: at, Subject: rec.GroupKey, Data: data}
	if err := e.timers.Schedule(ctx, verifyTimerKey(key), at, ev); err != nil {
		return fmt.Errorf("arm verify probe of %s %s: %w", rec.ID, run.Step, err)
	}
	return nil
}

// handleTimer is the timer consumer's handler: verify probes run here
// (they read the target system); every other timer is an input.
func (e *Engine) handleTimer(ctx context.Context, d *bus.Delivery) error {
	switch d.Event.Type {
	case VerifyTimerEventType:
		return e.probe(ctx, d)
	case StormTimerEventType:
		return e.stormDue(ctx, d)
	}
	return e.Handle(ctx, d)
}

// probe checks a verifying run once more, and finishes it when the check
// passed or its window ended. Several probes of one run may race (a
// redelivery): the action key's revision decides, and what follows a
// result is idempotent.
func (e *Engine) probe(ctx context.Context, d *bus.Delivery) error {
	var vt verifyTimer
	if err := json.Unmarshal(d.Event.Data, &vt); err != nil {
		return bus.Poison(fmt.Errorf("decode verify timer: %w", err))
	}
	if e.runs == nil {
		return nil
	}
	ent, err := e.runs.Get(ctx, vt.Run)
	if errors.Is(err, bus.ErrKeyNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	var run actionRun
	if err := json.Unmarshal(ent.Value, &run); err != nil {
		return bus.Poison(fmt.Errorf("action key %s: %w", vt.Run, err))
	}
	if run.Result != RunVerifying {
		return nil
	}
	rec, _, err := e.load(ctx, vt.Key)
	if err != nil {
		return err
	}
	if rec == nil || rec.ID != run.Incident {
		run.Result, run.Detail = RunVerifyFailed, run.Outcome.Detail+"; verify failed: the incident is gone"
	} else if e.runner == nil {
		return nil
	} else if _, runner, rerr := e.runner.Resolve(ctx, rec, run.Step); runner == nil {
		if rerr == nil {
			rerr = errors.New("no runner for this step")
		}
		run.Result, run.Detail = RunVerifyFailed, run.Outcome.Detail+"; verify failed: could not check: "+rerr.Error()
	} else {
		cctx, cancel := context.WithTimeout(ctx, e.cfg.EffectTimeout)
		_ = d.InProgress()
		e.check(cctx, rec, runner, &run)
		cancel()
	}
	val, _ := json.Marshal(run)
	if _, err := e.runs.Update(context.WithoutCancel(ctx), vt.Run, val, ent.Revision); errors.Is(err, bus.ErrRevisionMismatch) {
		return nil // another probe got there first and went on
	} else if err != nil {
		return fmt.Errorf("record the check of %s %s: %w", run.Incident, run.Step, err)
	}
	if rec == nil || rec.ID != run.Incident {
		return nil
	}
	return e.finish(ctx, rec, vt.Run, run)
}

// finish does what follows a result recorded in an action key, each part
// idempotent (a redelivered job or a second replica does it again): arm
// the next probe of a verifying run, report the result to the record,
// count a failure against the runbook's breaker, and revert a failed
// check with revert: auto.
func (e *Engine) finish(ctx context.Context, rec *Record, key string, run actionRun) error {
	if run.Result == RunVerifying {
		if err := e.armProbe(ctx, rec, key, run); err != nil {
			return err
		}
	}
	in := resultInput(rec, run.Step, run.Plan.Hash, run.Result, run.Detail)
	if len(run.Outcome.Before) > 0 && run.Result != RunVerifying {
		in.Before, in.Target = string(run.Outcome.Before), run.Plan.Target
	}
	// The breaker first, so the card that shows the result shows it too.
	switch run.Result {
	case RunFailed, RunVerifyFailed:
		if err := e.breakerFailure(ctx, rec, key, run.Step, run.Result); err != nil {
			return err
		}
	}
	if err := e.applyResult(ctx, rec, in); err != nil {
		return err
	}
	if run.Revert == RevertAuto && (run.Result == RunVerifyFailed || run.Result == RunFailed && len(run.Outcome.Before) > 0) {
		return e.revert(ctx, rec, key, run, true)
	}
	return nil
}

// revert restores what the run recorded in origKey changed, exactly once:
// the revert's own action key is created before it runs. auto says it is
// the runbook's revert: auto (the incident escalates after it), not a
// person's revert-<id> request.
func (e *Engine) revert(ctx context.Context, rec *Record, origKey string, orig actionRun, auto bool) error {
	rid := RevertPrefix + orig.Step
	rkey := origKey + ".revert"
	plan := revertPlan(origKey, orig.Step, orig.Plan.Target, string(orig.Outcome.Before), orig.StartedAt)
	if ent, err := e.runs.Get(ctx, rkey); err == nil {
		return e.adoptRevert(ctx, rec, rkey, ent.Value)
	} else if !errors.Is(err, bus.ErrKeyNotFound) {
		return err
	}
	now := e.now()
	run := actionRun{Incident: rec.ID, Step: rid, Plan: plan, StartedAt: now, Deadline: now.Add(e.cfg.EffectTimeout),
		Auto: auto, Of: orig.Result}
	if len(orig.Outcome.Before) == 0 {
		run.Result, run.Detail = RunRevertFailed, "no state was recorded before the run: revert by hand"
	}
	if f, err := e.Frozen(ctx); err != nil {
		return err
	} else if f.On && run.Result == "" {
		if !auto {
			return e.report(ctx, rec, rid, plan.Hash, RunVoid, f.String()+": nothing runs; request it again once unfrozen")
		}
		run.Result, run.Detail = RunRevertFailed, f.String()+": not reverted; revert by hand"
	}
	var rv actions.Reverter
	if run.Result == "" && e.runner != nil {
		_, runner, err := e.runner.Resolve(ctx, rec, orig.Step)
		if r, ok := runner.(actions.Reverter); ok {
			rv = r
		} else {
			why := "its action cannot revert"
			if err != nil {
				why = err.Error()
			}
			run.Result, run.Detail = RunRevertFailed, "could not revert: "+why
		}
	} else if run.Result == "" {
		return nil // no runner on this replica: the job waits
	}
	val, _ := json.Marshal(run)
	rev, theirs, err := e.claim(ctx, rkey, val)
	if err != nil {
		return err
	}
	if theirs != nil {
		return e.adoptRevert(ctx, rec, rkey, theirs)
	}
	if run.Result == "" {
		// The key is ours: revert once.
		e.auditf(ctx, bus.AuditRecord{Kind: "remediation.revert_started", Incident: rec.ID, Detail: rid + ": " + plan.Text,
			Attrs: map[string]string{"step": rid, "action": orig.Plan.Action, "target": plan.Target, "hash": plan.Hash, "plan": plan.Text}})
		if !auto {
			if err := e.started(ctx, rec, rid, plan.Hash, now); err != nil {
				e.log.Warn("revert start not recorded on the card", "incident", rec.ID, "step", rid, "err", err)
			}
		}
		rctx, cancel := context.WithDeadline(ctx, run.Deadline)
		err := rv.Revert(rctx, e.actionEnv, orig.Plan, orig.Outcome)
		cancel()
		if err != nil {
			run.Result, run.Detail = RunRevertFailed, "revert failed: "+err.Error()
		} else {
			run.Result, run.Detail = RunReverted, "restored "+plan.Target+" as it was before the run: "+string(orig.Outcome.Before)
		}
		val, _ = json.Marshal(run)
		if _, err := e.runs.Update(context.WithoutCancel(ctx), rkey, val, rev); err != nil {
			return fmt.Errorf("record the revert of %s %s: %w", rec.ID, orig.Step, err)
		}
	}
	return e.finishRevert(ctx, rec, rkey, run)
}

// adoptRevert brings the record in line with a revert key found.
func (e *Engine) adoptRevert(ctx context.Context, rec *Record, rkey string, raw []byte) error {
	var run actionRun
	if err := json.Unmarshal(raw, &run); err != nil {
		return bus.Poison(fmt.Errorf("revert key %s: %w", rkey, err))
	}
	switch {
	case run.Result != "":
		return e.finishRevert(ctx, rec, rkey, run)
	case e.now().Before(run.Deadline.Add(LeaseMargin)):
		return bus.Later(errRunning, run.Deadline.Add(LeaseMargin).Sub(e.now()))
	}
	run.Result = RunUnknown
	run.Detail = fmt.Sprintf("the revert that began at %s did not record a result: check, then restore by hand", run.StartedAt.UTC().Format("15:04:05 UTC"))
	return e.finishRevert(ctx, rec, rkey, run)
}

// finishRevert reports a revert's result; after revert: auto the incident
// escalates, with the reason; a person's revert of a verified run counts
// against the breaker.
func (e *Engine) finishRevert(ctx context.Context, rec *Record, rkey string, run actionRun) error {
	if run.Result == RunReverted && run.Of == RunVerified {
		if err := e.breakerFailure(ctx, rec, rkey, run.Step, run.Result); err != nil {
			return err
		}
	}
	if err := e.report(ctx, rec, run.Step, run.Plan.Hash, run.Result, run.Detail); err != nil {
		return err
	}
	if !run.Auto {
		return nil
	}
	step := strings.TrimPrefix(run.Step, RevertPrefix)
	why := step + "'s check failed"
	if run.Of == RunFailed {
		why = step + " failed"
	}
	if run.Result == RunReverted {
		why += " and it was reverted (revert: auto)"
	} else {
		why += " and it could not be reverted: " + run.Detail
	}
	in := input.Input{Kind: input.Escalate, ID: "escalate." + rkey, Incident: rec.ID, At: e.now(), Actor: input.Bot, Text: why}
	ev := bus.Event{ID: in.ID, Source: "engine", Type: "engine." + string(in.Kind), Time: in.At, Subject: rec.GroupKey}
	return e.applyOne(ctx, in, ev, e.log.With("event", ev.ID))
}
