package engine_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/internal/testenv"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/signal"
)

// guardedRunbook has feature-flag steps (disable-escrow, disable-amm),
// a check and revert policy, a breaker and a two-level ladder.
type guardedRunbook struct {
	testRunbook
	pol engine.RunPolicy
	brk engine.BreakerPolicy
}

var guardedSteps = []string{"disable-escrow", "disable-amm"}

func (r guardedRunbook) Render(_ context.Context, s signal.Signal) engine.Rendered {
	var props []notify.Proposal
	for _, id := range guardedSteps {
		props = append(props, notify.Proposal{ID: id, Title: "Step " + id, Action: "featureflag.disable", Approval: "1 approval"})
	}
	return engine.Rendered{Title: r.name, Remediation: props}
}

func (guardedRunbook) Step(id string) (engine.StepPolicy, bool) {
	for _, s := range guardedSteps {
		if s == id {
			return engine.StepPolicy{Title: "Step " + id, Action: "featureflag.disable",
				Approval: engine.ApprovalPolicy{Approvers: []string{"U0ADA", "U0BOB"}, MinApprovals: 1, Expires: 15 * time.Minute}}, true
		}
	}
	return engine.StepPolicy{}, false
}

func (r guardedRunbook) RunPolicy(string) (engine.RunPolicy, bool) { return r.pol, true }
func (r guardedRunbook) Breaker() engine.BreakerPolicy             { return r.brk }

type guardedCatalog struct{ rb guardedRunbook }

func (c guardedCatalog) Match(signal.Signal) (engine.Runbook, bool) { return c.rb, true }
func (c guardedCatalog) Get(string) (engine.Runbook, bool)          { return c.rb, true }

// checkRunner resolves each step to the real featureflag.disable action
// of its flag, counts runs, checks and reverts, and lets a test decide
// what the check says before the action's own Verify reads Redis back.
type checkRunner struct {
	mu    sync.Mutex
	flags map[string]string
	// verify, when set, is asked first (n counts the checks from 1); a
	// nil answer goes on to the action's Verify.
	verify                  func(n int) error
	runs, verifies, reverts atomic.Int32
}

func (c *checkRunner) setVerify(f func(n int) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.verify = f
}

func (c *checkRunner) setFlag(step, flag string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flags[step] = flag
}

func (c *checkRunner) Resolve(ctx context.Context, _ *engine.Record, step string) (actions.Plan, actions.Runner, error) {
	c.mu.Lock()
	flag := c.flags[step]
	c.mu.Unlock()
	a, _ := actions.Default().Lookup("featureflag.disable")
	var n yaml.Node
	_ = yaml.Unmarshal([]byte("flag: "+flag+"\n"), &n)
	b, err := a.Load(n.Content[0], "remediation[0]")
	if err != nil {
		return actions.Plan{}, nil, err
	}
	r := b.(actions.Reverter)
	p, err := r.Resolve(ctx, actions.Env{}, actions.PlanData{})
	return p, checkedAction{r, c}, err
}

type checkedAction struct {
	actions.Reverter
	c *checkRunner
}

func (a checkedAction) Run(ctx context.Context, env actions.Env, p actions.Plan) (actions.Outcome, error) {
	a.c.runs.Add(1)
	return a.Reverter.Run(ctx, env, p)
}

func (a checkedAction) Verify(ctx context.Context, env actions.Env, p actions.Plan, o actions.Outcome) error {
	n := a.c.verifies.Add(1)
	a.c.mu.Lock()
	f := a.c.verify
	a.c.mu.Unlock()
	if f != nil {
		if err := f(int(n)); err != nil {
			return err
		}
	}
	return a.Reverter.Verify(ctx, env, p, o)
}

func (a checkedAction) Revert(ctx context.Context, env actions.Env, p actions.Plan, o actions.Outcome) error {
	a.c.reverts.Add(1)
	return a.Reverter.Revert(ctx, env, p, o)
}

// checkEnv is an engine (and its replicas) with the guarded runbook, a
// real redis-server and the check runner.
type checkEnv struct {
	*env
	redis  *testenv.Redis
	runner *checkRunner
	sender *command.Sender
}

func newCheckEnv(t *testing.T, pol engine.RunPolicy, brk engine.BreakerPolicy, edit ...func(*engine.Config)) *checkEnv {
	b, kvs := openBus(t, t.TempDir())
	t.Cleanup(b.Close)
	cfg := engine.DefaultConfig()
	cfg.RetryMax = 100 * time.Millisecond
	cfg.EffectTimeout = 2 * time.Second
	cfg.VerifyInterval = 200 * time.Millisecond
	for _, f := range edit {
		f(&cfg)
	}
	levels := []notify.EscalationLevel{{Name: "L1 (On-Call)"}, {Name: "L2 (Senior Engineer)", After: time.Hour}}
	cat := guardedCatalog{guardedRunbook{testRunbook: testRunbook{name: "rb", levels: levels}, pol: pol, brk: brk}}
	e := &checkEnv{env: &env{bus: b, kvs: kvs, rec: &recorder{}, clock: &clock{real: true}, cfg: cfg, cat: cat},
		redis: testenv.StartRedis(t), runner: &checkRunner{flags: map[string]string{"disable-escrow": "enable_escrow", "disable-amm": "enable_amm"}}}
	e.eng = e.replica(t)
	e.sender = command.NewSender(b, e.eng)
	return e
}

func (e *checkEnv) replica(t *testing.T) *engine.Engine {
	t.Helper()
	return startReplica(t, e.env, e.runner, e.redis)
}

func (e *checkEnv) open(t *testing.T) string {
	t.Helper()
	e.deliver(t, fixtureEvent(t, "webhook.firing.single.json"))
	all, err := e.eng.AllIncidents(context.Background())
	if err != nil || len(all) != 1 {
		t.Fatalf("%d incidents, %v", len(all), err)
	}
	return all[0].ID
}

func (e *checkEnv) record(t *testing.T, id string) *engine.Record {
	t.Helper()
	r, err := e.eng.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// plan is the plan a person sees for step now: the step's own, or for a
// revert step the one the record gives.
func (e *checkEnv) plan(t *testing.T, id, step string) actions.Plan {
	t.Helper()
	if strings.HasPrefix(step, engine.RevertPrefix) {
		p, err := engine.RevertPlan(e.record(t, id), step)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p, _, err := e.runner.Resolve(context.Background(), nil, step)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *checkEnv) send(t *testing.T, verb input.Kind, id, step, who, reqID string) {
	t.Helper()
	p := e.plan(t, id, step)
	c := command.Command{Verb: verb, Incident: id, By: input.Actor{ID: who, Name: who, Via: "slack"}, Step: step,
		Hash: p.Hash, Text: p.Text, As: who, RequestID: reqID, At: time.Now()}
	if _, err := e.sender.Send(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

// requestApproved requests step as Ada, waits for the request, and has
// Bob approve it.
func (e *checkEnv) requestApproved(t *testing.T, id, step, reqID string) {
	t.Helper()
	before := time.Now()
	e.send(t, input.Request, id, step, "U0ADA", "r."+reqID)
	eventually(t, "the request of "+step, func() bool {
		q := e.record(t, id).Steps[step]
		return q != nil && !q.Requested.At.Before(before)
	})
	e.send(t, input.Approve, id, step, "U0BOB", "a."+reqID)
}

// result waits for step's run to have a final result.
func (e *checkEnv) result(t *testing.T, id, step string) *engine.StepRun {
	t.Helper()
	var run *engine.StepRun
	eventually(t, "the result of "+step, func() bool {
		q := e.record(t, id).Steps[step]
		if q != nil && q.Run != nil && q.Run.Result != "" && q.Run.Result != engine.RunVerifying {
			run = q.Run
			return true
		}
		return false
	})
	return run
}

func (e *checkEnv) card(id string) notify.Incident {
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	for i := len(e.rec.calls) - 1; i >= 0; i-- {
		if c := e.rec.calls[i]; (c.op == "post" || c.op == "update") && c.inc.ID == id {
			return c.inc
		}
	}
	return notify.Incident{}
}

func proposal(inc notify.Incident, id string) (notify.Proposal, bool) {
	for _, p := range inc.Remediation {
		if p.ID == id {
			return p, true
		}
	}
	return notify.Proposal{}, false
}

func (e *checkEnv) flag(t *testing.T, key string) string {
	t.Helper()
	v, err := e.redis.Client.Get(context.Background(), key).Result()
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return v
}

// actionJob is a redelivered action job for the incident.
func actionJob(rec *engine.Record) *bus.Delivery {
	return &bus.Delivery{Event: bus.Event{ID: "x." + rec.ID, Source: "engine", Type: "engine.deliver", Data: []byte(rec.Key)}, Attempt: 2}
}

// TestVerifyFailsAutoRevertsAndEscalates: the check fails; with revert:
// auto the flag in the real Redis is restored to what it was, once,
// however many engines and redelivered jobs see the result; the card
// shows the revert step's result, the incident escalates with the
// reason, and the audit trail has verify_failed and reverted.
func TestVerifyFailsAutoRevertsAndEscalates(t *testing.T) {
	e := newCheckEnv(t, engine.RunPolicy{Revert: engine.RevertAuto}, engine.BreakerPolicy{Failures: 5, Window: time.Hour})
	e.replica(t)
	e.runner.setVerify(func(int) error { return errors.New("the app still serves escrow") })
	if err := e.redis.Client.Set(context.Background(), "feature:enable_escrow", "true", 0).Err(); err != nil {
		t.Fatal(err)
	}
	id := e.open(t)
	e.requestApproved(t, id, "disable-escrow", "1")
	run := e.result(t, id, "disable-escrow")
	if run.Result != engine.RunVerifyFailed || !strings.Contains(run.Detail, "verify failed: the app still serves escrow") {
		t.Fatalf("run %+v", run)
	}
	rv := e.result(t, id, "revert-disable-escrow")
	if rv.Result != engine.RunReverted || !strings.Contains(rv.Detail, "restored redis feature:enable_escrow") {
		t.Fatalf("revert %+v", rv)
	}
	if v := e.flag(t, "feature:enable_escrow"); v != "true" {
		t.Fatalf("feature:enable_escrow = %q after the revert, want the value before the run, true", v)
	}
	eventually(t, "the escalation", func() bool { return e.record(t, id).Escalation.Next == 2 })
	rec := e.record(t, id)
	if last := rec.Timeline[len(rec.Timeline)-1]; last.Kind != "escalated" ||
		!strings.Contains(last.Text, "escalated to L2 (Senior Engineer): disable-escrow's check failed and it was reverted (revert: auto)") {
		t.Fatalf("last update %+v", last)
	}
	eventually(t, "the card", func() bool {
		p, ok := proposal(e.card(id), "revert-disable-escrow")
		return ok && strings.Contains(p.Status, "reverted: restored redis feature:enable_escrow")
	})
	// Redelivered jobs on two more engines, and a person asking for the
	// revert again: it never runs twice.
	for range 2 {
		if err := e.replica(t).HandleAction(context.Background(), actionJob(rec)); err != nil {
			t.Fatal(err)
		}
	}
	e.send(t, input.Request, id, "revert-disable-escrow", "U0ADA", "r2")
	e.idle(t)
	if n := e.runner.reverts.Load(); n != 1 {
		t.Fatalf("%d reverts, want 1", n)
	}
	if n := e.runner.runs.Load(); n != 1 {
		t.Fatalf("%d runs, want 1", n)
	}
	for kind, want := range map[string]int{"remediation.verify_failed": 1, "remediation.reverted": 1, "incident.escalated": 1} {
		if n := countAudit(t, e.bus, kind); n != want {
			t.Errorf("%d %s audited, want %d", n, kind, want)
		}
	}
}

// TestVerifyNotYetThenPasses: the check says "not yet" twice, then
// passes: the step is "verifying" on the card and in the audit trail
// while no action worker holds it (the probes come from durable timers),
// then verified.
func TestVerifyNotYetThenPasses(t *testing.T) {
	e := newCheckEnv(t, engine.RunPolicy{Revert: engine.RevertManual}, engine.BreakerPolicy{},
		func(c *engine.Config) { c.EffectTimeout = 30 * time.Second }) // the default window
	var ready atomic.Bool
	e.runner.setVerify(func(n int) error {
		if !ready.Load() {
			return fmt.Errorf("the rollout is at 1 of 3 pods: %w", actions.ErrNotYet)
		}
		return nil
	})
	id := e.open(t)
	e.requestApproved(t, id, "disable-escrow", "1")
	eventually(t, "verifying", func() bool {
		q := e.record(t, id).Steps["disable-escrow"]
		return q != nil && q.Run != nil && q.Run.Result == engine.RunVerifying
	})
	eventually(t, "the card says verifying", func() bool {
		p, _ := proposal(e.card(id), "disable-escrow")
		return strings.Contains(p.Status, "verifying: SET feature:enable_escrow false (was missing); verifying until") &&
			strings.Contains(p.Status, "the rollout is at 1 of 3 pods")
	})
	// No action job is pending or in flight: nothing holds a worker.
	eventually(t, "the action workers idle", func() bool {
		n, err := e.bus.Pending(context.Background(), engine.DeliveriesStream.Name, "deliver-"+engine.SinkAction)
		return err == nil && n == 0
	})
	// Probes come on timers, while nothing else happens.
	before := e.runner.verifies.Load()
	eventually(t, "a probe", func() bool { return e.runner.verifies.Load() > before })
	ready.Store(true)
	readyAt, checks := time.Now(), e.runner.verifies.Load()
	run := e.result(t, id, "disable-escrow")
	t.Logf("verified %s after the check turned good (%d checks in all, %d before)", time.Since(readyAt).Round(time.Millisecond), e.runner.verifies.Load(), checks)
	if run.Result != engine.RunVerified || !strings.HasSuffix(run.Detail, "; verified") {
		t.Fatalf("run %+v", run)
	}
	if n := countAudit(t, e.bus, "remediation.verifying"); n != 1 {
		t.Errorf("%d remediation.verifying audited, want 1", n)
	}
	if n := countAudit(t, e.bus, "remediation.verified"); n != 1 {
		t.Errorf("%d remediation.verified audited, want 1", n)
	}
	if n := e.runner.runs.Load(); n != 1 {
		t.Fatalf("%d runs, want 1", n)
	}
}

// TestVerifyWithinNeedsTheIncidentResolved: with verify.within the run
// is verified only when the incident resolves within the window; the
// alerts still firing when it ends make it verify_failed. With revert:
// manual the card then offers the revert step, which, requested and
// approved, restores the flag once.
func TestVerifyWithinNeedsTheIncidentResolved(t *testing.T) {
	e := newCheckEnv(t, engine.RunPolicy{VerifyWithin: 2 * time.Second, Revert: engine.RevertManual}, engine.BreakerPolicy{Failures: 5, Window: time.Hour})
	e.replica(t)
	id := e.open(t)
	e.requestApproved(t, id, "disable-escrow", "1")
	run := e.result(t, id, "disable-escrow")
	if run.Result != engine.RunVerifyFailed || !strings.Contains(run.Detail, "verify failed: the alerts still fire 2s after the run") {
		t.Fatalf("run %+v", run)
	}
	if n := e.runner.reverts.Load(); n != 0 {
		t.Fatalf("revert: manual reverted by itself (%d)", n)
	}
	// The card offers the revert, saying what it restores.
	var offered notify.Proposal
	eventually(t, "the revert step on the card", func() bool {
		var ok bool
		offered, ok = proposal(e.card(id), "revert-disable-escrow")
		return ok
	})
	if !strings.Contains(offered.Plan, `restore redis feature:enable_escrow as it was before disable-escrow ran at`) ||
		!strings.Contains(offered.Plan, `{"missing":true}`) || offered.Approval != "1 approval" || offered.Status != "" {
		t.Fatalf("revert proposal %+v", offered)
	}
	if v := e.flag(t, "feature:enable_escrow"); v != "false" {
		t.Fatalf("flag %q before the revert", v)
	}
	// Ada requests it, Bob approves, and three more engines are handed
	// the job at the same moment as the engine's own worker.
	e.requestApproved(t, id, "revert-disable-escrow", "2")
	eventually(t, "the revert approved", func() bool {
		return e.record(t, id).Steps["revert-disable-escrow"].State == engine.DecisionApproved
	})
	racers := []*engine.Engine{e.replica(t), e.replica(t), e.replica(t)}
	job := actionJob(e.record(t, id))
	var wg sync.WaitGroup
	for _, r := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A racer that finds the revert in flight is told to retry.
			_ = r.HandleAction(context.Background(), job)
		}()
	}
	wg.Wait()
	rv := e.result(t, id, "revert-disable-escrow")
	if rv.Result != engine.RunReverted {
		t.Fatalf("revert %+v", rv)
	}
	if v := e.flag(t, "feature:enable_escrow"); !strings.Contains(v, "redis: nil") {
		t.Fatalf("feature:enable_escrow = %q after the revert, want it missing as before the run", v)
	}
	// Two engines given the job again, a double approval: one revert.
	rec := e.record(t, id)
	for range 2 {
		if err := e.replica(t).HandleAction(context.Background(), actionJob(rec)); err != nil {
			t.Fatal(err)
		}
	}
	e.send(t, input.Approve, id, "revert-disable-escrow", "U0BOB", "a.2")
	e.idle(t)
	if n := e.runner.reverts.Load(); n != 1 {
		t.Fatalf("%d reverts, want 1", n)
	}
	if rec.Escalation.Next != 1 {
		t.Errorf("a manual revert escalated: level %d", rec.Escalation.Next)
	}
	eventually(t, "the card", func() bool {
		p, _ := proposal(e.card(id), "revert-disable-escrow")
		return strings.Contains(p.Status, "approved: requested by U0ADA (slack)") && strings.Contains(p.Status, "reverted: restored")
	})
}

// TestVerifyWithinIncidentResolves: the incident resolving within the
// window verifies the run.
func TestVerifyWithinIncidentResolves(t *testing.T) {
	e := newCheckEnv(t, engine.RunPolicy{VerifyWithin: time.Minute, Revert: engine.RevertAuto}, engine.BreakerPolicy{})
	id := e.open(t)
	e.requestApproved(t, id, "disable-escrow", "1")
	eventually(t, "verifying", func() bool {
		q := e.record(t, id).Steps["disable-escrow"]
		return q != nil && q.Run != nil && q.Run.Result == engine.RunVerifying
	})
	if q := e.record(t, id).Steps["disable-escrow"]; !strings.Contains(q.Run.Detail, "the change is live; waiting for the incident to resolve") {
		t.Fatalf("detail %q", q.Run.Detail)
	}
	e.deliver(t, fixtureEvent(t, "webhook.resolved.single.json"))
	run := e.result(t, id, "disable-escrow")
	if run.Result != engine.RunVerified || !strings.Contains(run.Detail, "verified: the incident resolved") {
		t.Fatalf("run %+v", run)
	}
	if n := e.runner.reverts.Load(); n != 0 {
		t.Fatalf("%d reverts of a verified run", n)
	}
}

// TestBreakerOpensAndRefuses: two failed checks of the runbook's steps
// within its window open the breaker: a step approved meanwhile is void
// with the reason, a new request is refused, the card says why, and the
// opening is audited once.
func TestBreakerOpensAndRefuses(t *testing.T) {
	e := newCheckEnv(t, engine.RunPolicy{Revert: engine.RevertNever}, engine.BreakerPolicy{Failures: 2, Window: time.Hour})
	e.runner.setVerify(func(int) error { return errors.New("still broken") })
	id := e.open(t)
	e.requestApproved(t, id, "disable-escrow", "1")
	if r := e.result(t, id, "disable-escrow"); r.Result != engine.RunVerifyFailed {
		t.Fatalf("run 1 %+v", r)
	}
	// disable-amm is requested (not yet approved) before the second
	// failure.
	e.send(t, input.Request, id, "disable-amm", "U0ADA", "r.amm")
	eventually(t, "the amm request", func() bool { return e.record(t, id).Steps["disable-amm"] != nil })
	e.runner.setFlag("disable-escrow", "enable_escrow_v2") // another plan
	e.requestApproved(t, id, "disable-escrow", "2")
	eventually(t, "run 2", func() bool {
		q := e.record(t, id).Steps["disable-escrow"]
		return q.Run != nil && q.Run.Hash == q.Hash && q.Run.Result == engine.RunVerifyFailed
	})
	why, err := e.eng.BreakerOpen(context.Background(), "rb")
	if err != nil || !strings.HasPrefix(why, "circuit breaker open: 2 failed runs of runbook rb since ") || !strings.Contains(why, "; closes at ") {
		t.Fatalf("breaker %q, %v", why, err)
	}
	// Approved while open: void, with the reason; nothing runs.
	e.send(t, input.Approve, id, "disable-amm", "U0BOB", "a.amm")
	eventually(t, "void", func() bool { return e.record(t, id).Steps["disable-amm"].State == engine.DecisionVoid })
	if q := e.record(t, id).Steps["disable-amm"]; !strings.Contains(q.Reason, why+": nothing runs") {
		t.Fatalf("reason %q", q.Reason)
	}
	// A new request is refused.
	e.runner.setFlag("disable-escrow", "enable_escrow_v3")
	e.send(t, input.Request, id, "disable-escrow", "U0ADA", "r.3")
	e.idle(t)
	if q := e.record(t, id).Steps["disable-escrow"]; q.Hash == e.plan(t, id, "disable-escrow").Hash {
		t.Fatalf("a request went through while the breaker is open: %+v", q)
	}
	if n := e.runner.runs.Load(); n != 2 {
		t.Fatalf("%d runs, want 2", n)
	}
	eventually(t, "the card", func() bool { return e.card(id).Breaker == why })
	if n := countAudit(t, e.bus, "remediation.breaker_open"); n != 1 {
		t.Errorf("%d remediation.breaker_open audited, want 1", n)
	}
	all, err := e.bus.AuditTrail(context.Background(), 10000)
	if err != nil {
		t.Fatal(err)
	}
	refused := false
	for _, r := range all {
		refused = refused || r.Kind == "input.ignored" && strings.Contains(r.Detail, "request: "+why+": disable-escrow cannot be requested until it closes")
	}
	if !refused {
		t.Error("the refused request is not in the audit trail with the reason")
	}
}

// TestVerifyWithinCanIgnoreTheIncident: with verify.incident_resolves:
// false (an on-chain event's incident never resolves by itself), the run
// is verified by the action's check alone, inside the window, though the
// incident stays open.
func TestVerifyWithinCanIgnoreTheIncident(t *testing.T) {
	e := newCheckEnv(t, engine.RunPolicy{VerifyWithin: 2 * time.Second, IgnoreIncident: true, Revert: engine.RevertManual}, engine.BreakerPolicy{Failures: 5, Window: time.Hour})
	e.replica(t)
	id := e.open(t)
	e.requestApproved(t, id, "disable-escrow", "1")
	run := e.result(t, id, "disable-escrow")
	if run.Result != engine.RunVerified || !e.record(t, id).Open() {
		t.Fatalf("run %+v (incident open: %v); want verified while the incident stays open", run, e.record(t, id).Open())
	}
}
