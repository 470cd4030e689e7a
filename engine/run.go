package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/input"
)

// Running approved steps, exactly once. The action reconciler (consumer
// deliver-action, a job per record version like chat and pager) runs a
// step whose request is approved only after it created the step's action
// key — (incident, step, plan hash) — in the engine's bucket
// remediation_runs. KV.Create succeeds once, so a double click, a
// redelivered job, a second replica or a restart cannot run it twice. The
// key records the result once known; a key with no result after its
// deadline (its runner died mid-run) is reported as "outcome unknown" and
// never run again. The result comes back to the record as an input.

// SinkAction names the action reconciler in job subjects and metrics.
const SinkAction = "action"

// BucketRuns holds one entry per run: the action keys.
const BucketRuns = "remediation_runs"

// RunsBucket is the bucket's spec; it is among Buckets.
var RunsBucket = bus.BucketSpec{Name: BucketRuns, Description: "remediation runs: one key per incident, step and plan, created before the run", History: 1}

// StepRunner resolves an incident's step to what will run now.
type StepRunner interface {
	// Resolve returns the step's plan as it resolves now, and its runner.
	Resolve(ctx context.Context, rec *Record, step string) (actions.Plan, actions.Runner, error)
}

// Results of a run, as recorded in the action key and on the record.
const (
	RunVerified     = "verified"
	RunVerifyFailed = "verify_failed"
	RunFailed       = "failed"
	RunDryRun       = "dry_run"
	RunUnknown      = "unknown"
	RunVoid         = "void"
)

// actionRun is the value of an action key.
type actionRun struct {
	Incident  string          `json:"incident"`
	Step      string          `json:"step"`
	Plan      actions.Plan    `json:"plan"`
	StartedAt time.Time       `json:"started_at"`
	Deadline  time.Time       `json:"deadline"`
	Result    string          `json:"result,omitempty"`
	Detail    string          `json:"detail,omitempty"`
	Outcome   actions.Outcome `json:"outcome,omitzero"`
	// Within is the step's verify.within; VerifyUntil ends the check
	// window; Checked says the action's Verify passed, Waiting what its
	// latest ErrNotYet said. Revert is the step's revert mode.
	Within time.Duration `json:"within,omitempty"`
	// IgnoreIncident: only the action's check counts within Within.
	IgnoreIncident bool      `json:"ignore_incident,omitempty"`
	VerifyUntil    time.Time `json:"verify_until,omitzero"`
	Checked        bool      `json:"checked,omitempty"`
	Waiting        string    `json:"waiting,omitempty"`
	Revert         string    `json:"revert,omitempty"`
	// Auto and Of are set on a revert key: whether it was the runbook's
	// revert: auto, and the result of the run it reverts.
	Auto bool   `json:"auto,omitempty"`
	Of   string `json:"of,omitempty"`
}

// StepRun is what the record knows of a step's run.
type StepRun struct {
	Hash      string    `json:"hash"`
	StartedAt time.Time `json:"started_at"`
	// Result is empty while it runs.
	Result string    `json:"result,omitempty"`
	Detail string    `json:"detail,omitempty"`
	At     time.Time `json:"at,omitzero"`
	// Before is what the run replaced (Outcome.Before, as its action
	// encodes it) and Target what it touched: set when the run changed
	// something its revert step can restore.
	Before string `json:"before,omitempty"`
	Target string `json:"target,omitempty"`
}

func actionKey(incident, step, hash string) string {
	h := sha256.Sum256([]byte(incident + "\x00" + step + "\x00" + hash))
	return "run." + hex.EncodeToString(h[:16])
}

// wantsRun lists the steps of r approved and not yet run, by id.
func wantsRun(r *Record) []string {
	var out []string
	for _, id := range slices.Sorted(maps.Keys(r.Steps)) {
		q := r.Steps[id]
		if q.State == DecisionApproved && (q.Run == nil || q.Run.Hash != q.Hash || q.Run.Result == "") {
			out = append(out, id)
		}
	}
	return out
}

// queueActions queues a run job when a step waits to run.
func (e *Engine) queueActions(ctx context.Context, r *Record) error {
	if e.runs == nil || len(wantsRun(r)) == 0 {
		return nil
	}
	ev := bus.Event{ID: SinkAction + "." + r.ID + "." + fmt.Sprint(r.Version), Source: "engine", Type: jobEventType,
		Time: e.now(), Subject: r.Key, Data: []byte(r.Key)}
	if _, err := e.pub.PublishTo(ctx, JobSubject(SinkAction), ev); err != nil {
		return fmt.Errorf("queue run of %s: %w", r.ID, err)
	}
	return nil
}

var errRunning = errors.New("a run of this step is in flight on another worker")

// HandleAction is the action reconciler's job handler.
func (e *Engine) HandleAction(ctx context.Context, d *bus.Delivery) error {
	key, err := jobKey(d)
	if err != nil {
		return err
	}
	rec, _, err := e.load(ctx, key)
	if err != nil || rec == nil || e.runs == nil {
		return err
	}
	for _, step := range wantsRun(rec) {
		if err := e.runStep(ctx, d, rec, step); err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) runStep(ctx context.Context, d *bus.Delivery, rec *Record, step string) error {
	q := rec.Steps[step]
	if orig, ok := strings.CutPrefix(step, RevertPrefix); ok {
		return e.runRevert(ctx, rec, step, orig)
	}
	key := runKey(rec, step, q.Hash)
	// A run already begun (or done) for this plan: never a second.
	if ent, err := e.runs.Get(ctx, key); err == nil {
		return e.adopt(ctx, rec, step, ent.Value)
	} else if !errors.Is(err, bus.ErrKeyNotFound) {
		return err
	}
	if e.runner == nil {
		return nil
	}
	plan, runner, err := e.runner.Resolve(ctx, rec, step)
	if err == nil && runner == nil {
		err = errors.New("no runner for this step")
	}
	if err != nil {
		return e.report(ctx, rec, step, q.Hash, RunFailed, "could not resolve the plan: "+err.Error())
	}
	if plan.Hash != q.Hash {
		return e.report(ctx, rec, step, q.Hash, RunVoid,
			fmt.Sprintf("the plan changed since it was approved (plan %s, now %s): request it again", short(q.Hash), short(plan.Hash)))
	}
	if f, err := e.Frozen(ctx); err != nil {
		return err
	} else if f.On {
		return e.report(ctx, rec, step, q.Hash, RunVoid, f.String()+": nothing runs; request it again once unfrozen")
	}
	if why, err := e.BreakerOpen(ctx, rec.Runbook); err != nil {
		return err
	} else if why != "" {
		return e.report(ctx, rec, step, q.Hash, RunVoid, why+": nothing runs; request it again once it closes")
	}
	now := e.now()
	run := actionRun{Incident: rec.ID, Step: step, Plan: plan, StartedAt: now, Deadline: now.Add(e.cfg.EffectTimeout)}
	val, _ := json.Marshal(run)
	rev, theirs, err := e.claim(ctx, key, val)
	if err != nil {
		return err
	}
	if theirs != nil {
		return e.adopt(ctx, rec, step, theirs)
	}
	// The key is ours: run once.
	e.auditf(ctx, bus.AuditRecord{Kind: "remediation.ran", Incident: rec.ID, Detail: step + ": " + plan.Text,
		Attrs: map[string]string{"step": step, "action": plan.Action, "target": plan.Target, "hash": plan.Hash, "plan": plan.Text}})
	if err := e.started(ctx, rec, step, q.Hash, now); err != nil {
		e.log.Warn("run start not recorded on the card", "incident", rec.ID, "step", step, "err", err)
	}
	_ = d.InProgress()
	rctx, cancel := context.WithDeadline(ctx, run.Deadline)
	out, err := runner.Run(rctx, e.actionEnv, plan)
	pol := runPolicy(e.runbook(rec), step)
	run.Revert = pol.Revert
	switch {
	case errors.Is(err, actions.ErrDryRun):
		run.Result, run.Detail = RunDryRun, err.Error()
	case errors.Is(err, actions.ErrOutcomeUnknown):
		run.Result, run.Detail = RunUnknown, err.Error()
	case err != nil:
		run.Result, run.Detail = RunFailed, err.Error()
		if len(out.Before) > 0 {
			run.Outcome = out // a partial change, which a revert may restore
		}
	default:
		run.Outcome, run.Within, run.IgnoreIncident = out, pol.VerifyWithin, pol.IgnoreIncident
		window := pol.VerifyWithin
		if window <= 0 {
			window = e.cfg.EffectTimeout
		}
		run.VerifyUntil = now.Add(window)
		e.check(rctx, rec, runner, &run)
	}
	cancel()
	val, _ = json.Marshal(run)
	if _, err := e.runs.Update(context.WithoutCancel(ctx), key, val, rev); err != nil {
		return fmt.Errorf("record the result of %s %s: %w", rec.ID, step, err)
	}
	return e.finish(ctx, rec, key, run)
}

// runRevert runs a person's approved revert step (revert-<orig>): the
// plan must still be the one approved, and the run it reverts is read
// back from its action key.
func (e *Engine) runRevert(ctx context.Context, rec *Record, step, orig string) error {
	q := rec.Steps[step]
	plan, err := RevertPlan(rec, step)
	if err != nil {
		return e.report(ctx, rec, step, q.Hash, RunVoid, err.Error())
	}
	if plan.Hash != q.Hash {
		return e.report(ctx, rec, step, q.Hash, RunVoid,
			fmt.Sprintf("the plan changed since it was approved (plan %s, now %s): request it again", short(q.Hash), short(plan.Hash)))
	}
	origKey := runKey(rec, orig, rec.Steps[orig].Run.Hash)
	ent, err := e.runs.Get(ctx, origKey)
	if err != nil {
		return fmt.Errorf("read the run %s reverts: %w", step, err)
	}
	var run actionRun
	if err := json.Unmarshal(ent.Value, &run); err != nil {
		return bus.Poison(fmt.Errorf("action key of %s %s: %w", rec.ID, orig, err))
	}
	return e.revert(ctx, rec, origKey, run, false)
}

// claim creates an action key with val, once across replicas and
// restarts: the caller then runs it. When the key exists (another worker
// claimed it, or this run began before a crash) it returns that key's
// value instead, for the caller to adopt.
func (e *Engine) claim(ctx context.Context, key string, val []byte) (rev uint64, theirs []byte, err error) {
	rev, err = e.runs.Create(ctx, key, val)
	if !errors.Is(err, bus.ErrKeyExists) {
		return rev, nil, err
	}
	ent, err := e.runs.Get(ctx, key)
	if err != nil {
		return 0, nil, err
	}
	return 0, ent.Value, nil
}

// adopt brings the record in line with an action key found: its result,
// or, past its deadline with none, an unknown outcome; before its deadline
// the job waits for the worker that holds it.
func (e *Engine) adopt(ctx context.Context, rec *Record, step string, raw []byte) error {
	var run actionRun
	if err := json.Unmarshal(raw, &run); err != nil {
		return bus.Poison(fmt.Errorf("action key of %s %s: %w", rec.ID, step, err))
	}
	switch {
	case run.Result != "":
		return e.finish(ctx, rec, runKey(rec, step, run.Plan.Hash), run)
	case e.now().Before(run.Deadline.Add(LeaseMargin)):
		return bus.Later(errRunning, run.Deadline.Add(LeaseMargin).Sub(e.now()))
	}
	return e.report(ctx, rec, step, run.Plan.Hash, RunUnknown,
		fmt.Sprintf("the run that began at %s did not record a result: check, then retry by hand", run.StartedAt.UTC().Format("15:04:05 UTC")))
}

func (e *Engine) started(ctx context.Context, rec *Record, step, hash string, at time.Time) error {
	in := input.Input{Kind: input.ActionStarted, Incident: rec.ID, At: at, Actor: input.Bot, Step: step, Hash: hash}
	in.ID = "action_started." + runKey(rec, step, hash)
	ev := bus.Event{ID: in.ID, Source: "engine", Type: "engine." + string(in.Kind), Time: at, Subject: rec.GroupKey}
	return e.applyOne(ctx, in, ev, e.log.With("event", ev.ID))
}

func (e *Engine) report(ctx context.Context, rec *Record, step, hash, result, detail string) error {
	return e.applyResult(ctx, rec, resultInput(rec, step, hash, result, detail))
}

func resultInput(rec *Record, step, hash, result, detail string) input.Input {
	in := input.Input{Kind: input.ActionResult, Incident: rec.ID, Actor: input.Bot, Step: step, Hash: hash, Token: result, Text: detail}
	in.ID = "action_result." + runKey(rec, step, hash) + "." + result
	return in
}

func (e *Engine) applyResult(ctx context.Context, rec *Record, in input.Input) error {
	in.At = e.now()
	ev := bus.Event{ID: in.ID, Source: "engine", Type: "engine." + string(in.Kind), Time: in.At, Subject: rec.GroupKey}
	return e.applyOne(ctx, in, ev, e.log.With("event", ev.ID))
}

// actionStarted records that a run began (apply).
func actionStarted(r *Record, in input.Input, env applyEnv) Result {
	q := r.Steps[in.Step]
	if q == nil || q.Hash != in.Hash {
		return stale("no approved request for this plan")
	}
	if q.Run != nil && q.Run.Hash == in.Hash {
		return noop("already running")
	}
	q.Run = &StepRun{Hash: in.Hash, StartedAt: in.At}
	r.addUpdate(env.Now, "step_started", fmt.Sprintf("Running %s (plan %s)", in.Step, short(in.Hash)))
	return Result{change: stepChanged, step: in.Step}
}

// actionResult records a run's result (apply).
func actionResult(r *Record, in input.Input, env applyEnv) Result {
	q := r.Steps[in.Step]
	if q == nil && strings.HasPrefix(in.Step, RevertPrefix) && in.Token != RunVoid {
		// The runbook's revert: auto, which nobody requested.
		q = &StepRequest{Step: in.Step, Hash: in.Hash, Requested: Mark{By: in.Actor, At: in.At}, State: DecisionApproved,
			Reason: "revert: auto, after the step's check failed"}
		if r.Steps == nil {
			r.Steps = map[string]*StepRequest{}
		}
		r.Steps[in.Step] = q
	}
	if q == nil || q.Hash != in.Hash {
		return stale("no request for this plan")
	}
	if q.Run != nil && q.Run.Hash == in.Hash && q.Run.Result != "" && (q.Run.Result != RunVerifying || in.Token == RunVerifying) {
		return noop("result already recorded: " + q.Run.Result)
	}
	if in.Token == RunVoid {
		q.State, q.Reason = DecisionVoid, in.Text
		r.addUpdate(env.Now, "step_void", "The approval of "+in.Step+" is void: "+in.Text)
		return Result{change: stepChanged, step: in.Step}
	}
	if q.Run == nil || q.Run.Hash != in.Hash {
		q.Run = &StepRun{Hash: in.Hash}
	}
	q.Run.Result, q.Run.Detail, q.Run.At = in.Token, in.Text, in.At
	if in.Before != "" {
		q.Run.Before, q.Run.Target = in.Before, in.Target
	}
	text := map[string]string{
		RunVerified:     "✅ %s ran and is verified: %s",
		RunVerifyFailed: "⚠️ %s ran but its check failed: %s",
		RunVerifying:    "🔎 %s ran; checking it: %s",
		RunFailed:       "❌ %s failed: %s",
		RunDryRun:       "%s did not run (%s)",
		RunUnknown:      "❓ %s: outcome unknown — %s",
		RunReverted:     "↩️ %s: %s",
		RunRevertFailed: "❌ %s: %s",
	}[in.Token]
	if text == "" {
		text = "%s: %s"
	}
	kind := "step_result"
	switch in.Token {
	case RunVerified, RunVerifyFailed, RunVerifying, RunReverted, RunRevertFailed:
		kind = "step_" + in.Token
	}
	r.addUpdate(env.Now, kind, fmt.Sprintf(text, in.Step, in.Text))
	return Result{change: stepChanged, step: in.Step}
}

// ActionKey is the action key of a run of step for plan hash in incident
// (tests create one to stand for a runner that died mid-run).
func ActionKey(incident, step, hash string) string { return actionKey(incident, step, hash) }
