package engine_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/internal/testenv"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/signal"
)

// stepRunbook is a test runbook with one remediation step, disable-escrow.
type stepRunbook struct{ testRunbook }

func (r stepRunbook) Render(_ context.Context, s signal.Signal) engine.Rendered {
	return engine.Rendered{Title: r.name, Remediation: []notify.Proposal{{ID: "disable-escrow", Title: "Disable escrow", Action: "featureflag.disable"}}}
}

func (stepRunbook) Step(id string) (engine.StepPolicy, bool) {
	if id != "disable-escrow" {
		return engine.StepPolicy{}, false
	}
	return engine.StepPolicy{Title: "Disable escrow", Action: "featureflag.disable",
		Approval: engine.ApprovalPolicy{Approvers: []string{"U0ADA", "U0BOB"}, MinApprovals: 1, Expires: 15 * time.Minute}}, true
}

type stepCatalog struct{}

func (stepCatalog) Match(s signal.Signal) (engine.Runbook, bool) {
	return stepRunbook{testRunbook{name: "rb"}}, true
}
func (stepCatalog) Get(n string) (engine.Runbook, bool) {
	return stepRunbook{testRunbook{name: n}}, true
}

// flagRunner resolves disable-escrow to the real featureflag.disable
// action and counts its runs; flag is the flag it plans for.
type flagRunner struct {
	runs atomic.Int32
	mu   sync.Mutex
	flag string
	// block, when set, holds Run until closed.
	block chan struct{}
}

func (f *flagRunner) Resolve(ctx context.Context, _ *engine.Record, step string) (actions.Plan, actions.Runner, error) {
	f.mu.Lock()
	flag := f.flag
	f.mu.Unlock()
	a, _ := actions.Default().Lookup("featureflag.disable")
	var n yaml.Node
	_ = yaml.Unmarshal([]byte("flag: "+flag+"\n"), &n)
	b, err := a.Load(n.Content[0], "remediation[0]")
	if err != nil {
		return actions.Plan{}, nil, err
	}
	r := b.(actions.Runner)
	p, err := r.Resolve(ctx, actions.Env{}, actions.PlanData{})
	return p, countingRunner{r, f}, err
}

type countingRunner struct {
	actions.Runner
	f *flagRunner
}

func (c countingRunner) Run(ctx context.Context, env actions.Env, p actions.Plan) (actions.Outcome, error) {
	c.f.runs.Add(1)
	if c.f.block != nil {
		<-c.f.block
	}
	return c.Runner.Run(ctx, env, p)
}

// runEnv is an engine with the action reconciler, replicas of it sharing
// one bus, and a real redis-server the flag action changes.
type runEnv struct {
	*env
	redis  *testenv.Redis
	runner *flagRunner
	sender *command.Sender
}

func newRunEnv(t *testing.T) *runEnv {
	b, kvs := openBus(t, t.TempDir())
	t.Cleanup(b.Close)
	cfg := engine.DefaultConfig()
	cfg.RetryMax = 100 * time.Millisecond
	cfg.EffectTimeout = 2 * time.Second
	e := &runEnv{env: &env{bus: b, kvs: kvs, rec: &recorder{}, clock: &clock{real: true}, cfg: cfg, cat: stepCatalog{}},
		redis: testenv.StartRedis(t), runner: &flagRunner{flag: "enable_escrow"}}
	e.eng = e.replica(t)
	e.sender = command.NewSender(b, e.eng)
	return e
}

// replica starts one more engine, with its consumers, on the shared bus.
func (e *runEnv) replica(t *testing.T) *engine.Engine {
	t.Helper()
	return startReplica(t, e.env, e.runner, e.redis)
}

// startReplica starts one more engine running steps with runner against
// redis, with its consumers, on e's bus.
func startReplica(t *testing.T, e *env, runner engine.StepRunner, redis *testenv.Redis) *engine.Engine {
	t.Helper()
	eng, err := engine.New(e.cfg, engine.Deps{Catalog: e.cat, Decoders: app.Decoders(),
		Incidents: e.kvs[engine.BucketIncidents], IDs: e.kvs[engine.BucketIDs], Deliveries: e.kvs[engine.BucketDeliveries],
		Chat: e.rec, Pager: e.rec, Publisher: e.bus, Scheduler: e.bus, Audit: e.bus, Now: e.clock.Now,
		Runs: e.kvs[engine.BucketRuns], Runner: runner, ActionEnv: actions.Env{Redis: redis.Client}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, c := range eng.Consumers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = e.bus.Consume(ctx, c.Config, c.Handler)
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return eng
}

func (e *runEnv) send(t *testing.T, verb input.Kind, id, who, reqID string) {
	t.Helper()
	p, _, _ := e.runner.Resolve(context.Background(), nil, "disable-escrow")
	c := command.Command{Verb: verb, Incident: id, By: input.Actor{ID: who, Name: who, Via: "slack"}, Step: "disable-escrow",
		Hash: p.Hash, Text: p.Text, As: who, RequestID: reqID, At: time.Now()}
	if _, err := e.sender.Send(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

// request sends a request and waits until the card shows it, as people
// vote on a request they see.
func (e *runEnv) request(t *testing.T, id, who, reqID string) {
	t.Helper()
	before := time.Now()
	e.send(t, input.Request, id, who, reqID)
	eventually(t, "the request recorded", func() bool {
		q := e.step(t, id)
		return q != nil && !q.Requested.At.Before(before)
	})
}

func (e *runEnv) step(t *testing.T, id string) *engine.StepRequest {
	t.Helper()
	r, err := e.eng.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r.Steps["disable-escrow"]
}

func (e *runEnv) open(t *testing.T) string {
	t.Helper()
	e.deliver(t, fixtureEvent(t, "webhook.firing.single.json"))
	all, err := e.eng.AllIncidents(context.Background())
	if err != nil || len(all) != 1 {
		t.Fatalf("%d incidents, %v", len(all), err)
	}
	return all[0].ID
}

// TestApprovedStepRunsOnce: request, approve by a second person: one
// run, the flag set in the real Redis and verified, the result on the
// record; double clicks, redelivered jobs and three replicas run nothing
// more.
func TestApprovedStepRunsOnce(t *testing.T) {
	e := newRunEnv(t)
	e.replica(t)
	e.replica(t)
	id := e.open(t)
	// The vote is sent right after the request, without waiting: with
	// three replicas it may be applied first, and still counts.
	e.send(t, input.Request, id, "U0ADA", "r1")
	e.send(t, input.Approve, id, "U0BOB", "a1")
	e.send(t, input.Approve, id, "U0BOB", "a1") // a double click
	e.send(t, input.Approve, id, "U0BOB", "a2") // a second click with its own id
	eventually(t, "the result", func() bool {
		q := e.step(t, id)
		return q != nil && q.Run != nil && q.Run.Result != ""
	})
	q := e.step(t, id)
	if q.Run.Result != engine.RunVerified || !strings.Contains(q.Run.Detail, "SET feature:enable_escrow false (was missing); verified") {
		t.Fatalf("run %+v", q.Run)
	}
	if v := e.redis.Client.Get(context.Background(), "feature:enable_escrow").Val(); v != "false" {
		t.Fatalf("redis feature:enable_escrow = %q", v)
	}
	// Redelivered jobs, on every replica, and a new request for the same
	// plan: nothing runs again.
	rec, _ := e.eng.Get(context.Background(), id)
	job := &bus.Delivery{Event: bus.Event{ID: "x", Source: "engine", Type: "engine.deliver", Data: []byte(rec.Key)}, Attempt: 2}
	for range 3 {
		if err := e.replica(t).HandleAction(context.Background(), job); err != nil {
			t.Fatal(err)
		}
	}
	e.send(t, input.Request, id, "U0ADA", "r2")
	e.idle(t)
	time.Sleep(300 * time.Millisecond)
	if n := e.runner.runs.Load(); n != 1 {
		t.Fatalf("%d runs, want 1", n)
	}
	if n := countAudit(t, e.bus, "remediation.ran"); n != 1 {
		t.Fatalf("%d runs audited, want 1", n)
	}
}

// TestCrashMidRunIsOutcomeUnknown: an action key created with no result
// recorded (its runner died between the create and the result) is shown
// as "outcome unknown" once its deadline passed, and never run again.
func TestCrashMidRunIsOutcomeUnknown(t *testing.T) {
	e := newRunEnv(t)
	e.runner.block = make(chan struct{}) // no run may get through
	defer close(e.runner.block)
	id := e.open(t)
	p, _, _ := e.runner.Resolve(context.Background(), nil, "disable-escrow")
	// What a runner that died mid-run leaves: the key, no result.
	rec, _ := e.eng.Get(context.Background(), id)
	key := engine.ActionKey(rec.ID, "disable-escrow", p.Hash)
	val, _ := json.Marshal(map[string]any{"incident": id, "step": "disable-escrow", "plan": p,
		"started_at": time.Now().Add(-time.Minute), "deadline": time.Now().Add(-50 * time.Second)})
	if _, err := e.kvs[engine.BucketRuns].Create(context.Background(), key, val); err != nil {
		t.Fatal(err)
	}
	e.request(t, id, "U0ADA", "r1")
	e.send(t, input.Approve, id, "U0BOB", "a1")
	eventually(t, "the result", func() bool {
		q := e.step(t, id)
		return q != nil && q.Run != nil && q.Run.Result != ""
	})
	q := e.step(t, id)
	if q.Run.Result != engine.RunUnknown || !strings.Contains(q.Run.Detail, "did not record a result: check, then retry by hand") {
		t.Fatalf("run %+v", q.Run)
	}
	if n := e.runner.runs.Load(); n != 0 {
		t.Fatalf("%d runs, want none", n)
	}
	// The card says so.
	eventually(t, "the card", func() bool {
		return strings.Contains(e.lastCard().Remediation[0].Status, "❓ outcome unknown: check, then retry by hand")
	})
}

// lastCard is the incident as the latest card post or edit showed it.
func (e *runEnv) lastCard() notify.Incident {
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	for i := len(e.rec.calls) - 1; i >= 0; i-- {
		if c := e.rec.calls[i]; c.op == "post" || c.op == "update" {
			return c.inc
		}
	}
	return notify.Incident{}
}

// TestChangedPlanVoidsTheApproval: the plan resolves to another hash
// before it runs: the approval is void, the card says why, nothing runs.
func TestChangedPlanVoidsTheApproval(t *testing.T) {
	e := newRunEnv(t)
	e.runner.block = make(chan struct{})
	defer close(e.runner.block)
	id := e.open(t)
	e.send(t, input.Request, id, "U0ADA", "r1")
	eventually(t, "the request", func() bool { return e.step(t, id) != nil })
	p, _, _ := e.runner.Resolve(context.Background(), nil, "disable-escrow")
	e.runner.mu.Lock()
	e.runner.flag = "enable_amm" // the plan changes after the approver looked
	e.runner.mu.Unlock()
	c := command.Command{Verb: input.Approve, Incident: id, By: input.Actor{ID: "U0BOB", Name: "bob", Via: "slack"}, Step: "disable-escrow",
		Hash: p.Hash, As: "U0BOB", RequestID: "a1", At: time.Now()}
	if _, err := e.sender.Send(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	eventually(t, "void", func() bool { q := e.step(t, id); return q.State == engine.DecisionVoid })
	if q := e.step(t, id); !strings.Contains(q.Reason, "the plan changed since it was approved") {
		t.Fatalf("reason %q", q.Reason)
	}
	if n := e.runner.runs.Load(); n != 0 {
		t.Fatalf("%d runs, want none", n)
	}
}

func countAudit(t *testing.T, b *bus.Bus, kind string) int {
	t.Helper()
	all, err := b.AuditTrail(context.Background(), 10000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range all {
		if r.Kind == kind {
			n++
		}
	}
	return n
}

// TestFreezeBlocksEverything: with the kill switch on, an approved step
// does not run (on any replica: it is one KV key) and its approval is
// void with the reason; the card says remediation is frozen; once
// unfrozen, a new request runs.
func TestFreezeBlocksEverything(t *testing.T) {
	e := newRunEnv(t)
	e.replica(t)
	id := e.open(t)
	ada := input.Actor{ID: "U0ADA", Name: "ada", Via: "slack"}
	if err := e.eng.SetFreeze(context.Background(), true, ada, "bad deploy"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the card", func() bool {
		return strings.Contains(e.lastCard().Freeze, "Remediation frozen by ada (slack) since") && strings.Contains(e.lastCard().Freeze, ": bad deploy")
	})
	e.send(t, input.Request, id, "U0ADA", "r1")
	eventually(t, "the request", func() bool { q := e.step(t, id); return q != nil && q.State == engine.DecisionPending })
	e.send(t, input.Approve, id, "U0BOB", "a1")
	eventually(t, "void", func() bool { q := e.step(t, id); return q != nil && q.State == engine.DecisionVoid })
	if q := e.step(t, id); !strings.Contains(q.Reason, "Remediation frozen by ada (slack)") || !strings.Contains(q.Reason, "nothing runs") {
		t.Fatalf("reason %q", q.Reason)
	}
	if n := e.runner.runs.Load(); n != 0 {
		t.Fatalf("%d runs while frozen", n)
	}
	if err := e.eng.SetFreeze(context.Background(), false, ada, ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the card unfrozen", func() bool { return e.lastCard().Freeze == "" })
	e.send(t, input.Request, id, "U0ADA", "r2")
	eventually(t, "the new request", func() bool { q := e.step(t, id); return q != nil && q.State == engine.DecisionPending })
	e.send(t, input.Approve, id, "U0BOB", "a2")
	eventually(t, "the run", func() bool {
		q := e.step(t, id)
		return q.Run != nil && q.Run.Result == engine.RunVerified
	})
	if n := e.runner.runs.Load(); n != 1 {
		t.Fatalf("%d runs, want 1", n)
	}
}
