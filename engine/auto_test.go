package engine_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/handlers/alertmanager"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/internal/testenv"
	"github.com/incidentbot/incidentbot/signal"
)

// autoRunbook's step disable-escrow is automatic: the bot runs it when an
// incident opens or reopens, within its cooldown.
type autoRunbook struct {
	stepRunbook
	cooldown time.Duration
}

func (r autoRunbook) Step(id string) (engine.StepPolicy, bool) {
	if id != "disable-escrow" {
		return engine.StepPolicy{}, false
	}
	return engine.StepPolicy{Title: "Disable escrow", Action: "featureflag.disable", Automatic: true, Cooldown: r.cooldown}, true
}

func (autoRunbook) AutomaticSteps() []string { return []string{"disable-escrow"} }

type autoCat struct{ cooldown time.Duration }

func (c autoCat) Match(signal.Signal) (engine.Runbook, bool) { return c.Get("rb") }
func (c autoCat) Get(n string) (engine.Runbook, bool) {
	return autoRunbook{stepRunbook{testRunbook{name: n}}, c.cooldown}, true
}

// newAutoEnv is a runEnv whose runbook's step is automatic, with two
// engines on one bus and a real redis-server.
func newAutoEnv(t *testing.T, cooldown time.Duration) *runEnv {
	t.Helper()
	b, kvs := openBus(t, t.TempDir())
	t.Cleanup(b.Close)
	cfg := engine.DefaultConfig()
	cfg.RetryMax = 100 * time.Millisecond
	cfg.EffectTimeout = 2 * time.Second
	e := &runEnv{env: &env{bus: b, kvs: kvs, rec: &recorder{}, clock: &clock{real: true}, cfg: cfg, cat: autoCat{cooldown}},
		redis: testenv.StartRedis(t), runner: &flagRunner{flag: "enable_escrow"}}
	e.eng = e.replica(t)
	e.replica(t)
	e.sender = command.NewSender(b, e.eng)
	return e
}

// timeline is the incident's timeline texts, one a line.
func (e *runEnv) timeline(t *testing.T, id string) string {
	t.Helper()
	r, err := e.eng.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, u := range r.Timeline {
		b.WriteString(u.Kind + ": " + u.Text + "\n")
	}
	return b.String()
}

// TestAutomaticStepRunsWhenTheIncidentOpens: with two engines on one bus,
// the automatic step runs once when the incident opens, as the bot, and a
// redelivered alert on either engine requests nothing more.
func TestAutomaticStepRunsWhenTheIncidentOpens(t *testing.T) {
	e := newAutoEnv(t, 0)
	other := e.replica(t)
	id := e.open(t)
	eventually(t, "the run", func() bool {
		q := e.step(t, id)
		return q != nil && q.Run != nil && q.Run.Result != ""
	})
	q := e.step(t, id)
	if q.Requested.By != input.Bot || q.State != engine.DecisionApproved || q.Run.Result != engine.RunVerified {
		t.Fatalf("step %+v, run %+v", q, q.Run)
	}
	if v := e.redis.Client.Get(context.Background(), "feature:enable_escrow").Val(); v != "false" {
		t.Fatalf("redis feature:enable_escrow = %q", v)
	}
	if tl := e.timeline(t, id); !strings.Contains(tl, "incidentbot (incidentbot) requested disable-escrow: redis: SET feature:enable_escrow false") ||
		!strings.Contains(tl, "automatic, no approval needed") {
		t.Fatalf("timeline:\n%s", tl)
	}
	// The alert again, redelivered, on both engines.
	ev := fixtureEvent(t, "webhook.firing.single.json")
	for _, eng := range []*engine.Engine{e.eng, other} {
		if err := eng.Handle(context.Background(), &bus.Delivery{Event: ev, Attempt: 2}); err != nil {
			t.Fatal(err)
		}
	}
	e.idle(t)
	time.Sleep(300 * time.Millisecond)
	if n := e.runner.runs.Load(); n != 1 {
		t.Fatalf("%d runs, want 1", n)
	}
	if n := countAudit(t, e.bus, "remediation.ran"); n != 1 {
		t.Fatalf("%d runs audited, want 1", n)
	}
	if n := countAudit(t, e.bus, "remediation.requested"); n != 1 {
		t.Fatalf("%d requests audited, want 1", n)
	}
}

// TestAutomaticStepWhileFrozen: a frozen bot does not run the automatic
// step, and the thread says why.
func TestAutomaticStepWhileFrozen(t *testing.T) {
	e := newAutoEnv(t, 0)
	if err := e.eng.SetFreeze(context.Background(), true, input.Actor{ID: "U0ADA", Name: "ada", Via: "slack"}, "bad deploy"); err != nil {
		t.Fatal(err)
	}
	id := e.open(t)
	eventually(t, "the refusal", func() bool {
		return strings.Contains(e.timeline(t, id), "step_not_run: The automatic step disable-escrow did not run: Remediation frozen by ada (slack)")
	})
	e.idle(t)
	time.Sleep(300 * time.Millisecond)
	if n := e.runner.runs.Load(); n != 0 {
		t.Fatalf("%d runs while frozen", n)
	}
	if q := e.step(t, id); q != nil {
		t.Fatalf("requested while frozen: %+v", q)
	}
	if n := e.redis.Client.Exists(context.Background(), "feature:enable_escrow").Val(); n != 0 {
		t.Fatal("the flag was set while frozen")
	}
}

// TestAutomaticStepOnReopen: a reopened incident runs its automatic step
// again (once per opening) unless the step is cooling down.
func TestAutomaticStepOnReopen(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cooldown time.Duration
		runs     int32
	}{
		{"within the cooldown", time.Hour, 1},
		{"without a cooldown", 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newAutoEnv(t, tc.cooldown)
			id := e.open(t)
			eventually(t, "the first run", func() bool {
				q := e.step(t, id)
				return q != nil && q.Run != nil && q.Run.Result == engine.RunVerified
			})
			e.deliver(t, resolvedNow(t))
			e.deliver(t, refire(t, time.Now()))
			r, err := e.eng.Get(context.Background(), id)
			if err != nil || r.Reopened != 1 {
				t.Fatalf("not reopened: %v %+v", err, r)
			}
			if tc.runs == 1 {
				eventually(t, "the refusal", func() bool {
					return strings.Contains(e.timeline(t, id), "The automatic step disable-escrow did not run: disable-escrow is cooling down after its run at")
				})
			} else {
				eventually(t, "the second run", func() bool {
					q := e.step(t, id)
					return q != nil && q.Opening == 1 && q.Run != nil && q.Run.Result == engine.RunVerified
				})
			}
			e.idle(t)
			time.Sleep(300 * time.Millisecond)
			if n := e.runner.runs.Load(); n != tc.runs {
				t.Fatalf("%d runs, want %d", n, tc.runs)
			}
		})
	}
}

// resolvedNow is the single fixture's alert resolving now (the engine's
// clock is real here: the reopen window counts from then).
func resolvedNow(t *testing.T) bus.Event {
	t.Helper()
	ev := fixtureEvent(t, "webhook.resolved.single.json")
	var m map[string]any
	if err := json.Unmarshal(ev.Data, &m); err != nil {
		t.Fatal(err)
	}
	m["alerts"].([]any)[0].(map[string]any)["endsAt"] = time.Now().Format(time.RFC3339Nano)
	ev.Data, _ = json.Marshal(m)
	dm, err := alertmanager.Decode(ev.Data)
	if err != nil {
		t.Fatal(err)
	}
	ev.ID = dm.EventID()
	return ev
}
