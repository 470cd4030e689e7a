package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/handlers/alertmanager"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/signal"
)

// testRunbook routes by the severity label: critical pages.
type testRunbook struct{ name string }

func (r testRunbook) Name() string { return r.name }
func (r testRunbook) Severity(l map[string]string) notify.Severity {
	return notify.Severity(l["severity"])
}
func (r testRunbook) Route(s notify.Severity) engine.Route {
	return engine.Route{Channel: "#" + string(s), Page: s == notify.SeverityCritical}
}
func (r testRunbook) Render(_ context.Context, s signal.Signal) engine.Rendered {
	return engine.Rendered{Title: r.name + ": " + s.Annotations["summary"]}
}

// testCatalog has one runbook per alertname.
type testCatalog struct{}

func (testCatalog) Match(s signal.Signal) (engine.Runbook, bool) { return testRunbook{s.Name()}, true }
func (testCatalog) Get(n string) (engine.Runbook, bool)          { return testRunbook{n}, true }

type chatCall struct {
	op      string
	channel string
	ts      string
	inc     notify.Incident
	update  notify.Update
}

// recorder is a Chat and Pager that records calls and can fail on demand.
type recorder struct {
	mu      sync.Mutex
	calls   []chatCall
	pages   []notify.Page
	failN   int
	seq     int
	failErr error
}

func (r *recorder) fail() error {
	if r.failN > 0 {
		r.failN--
		return r.failErr
	}
	return nil
}

func (r *recorder) PostCard(_ context.Context, ch string, inc notify.Incident, _ notify.CardTag) (notify.CardRef, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.fail(); err != nil {
		return notify.CardRef{}, err
	}
	r.seq++
	ts := fmt.Sprintf("1700000000.%06d", r.seq)
	r.calls = append(r.calls, chatCall{op: "post", channel: ch, ts: ts, inc: inc})
	return notify.CardRef{Channel: ch, TS: ts}, nil
}

func (r *recorder) FindCard(context.Context, string, notify.CardTag, time.Time) (notify.CardRef, bool, error) {
	return notify.CardRef{}, false, nil
}

func (r *recorder) UpdateCard(_ context.Context, ref notify.CardRef, inc notify.Incident) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.fail(); err != nil {
		return err
	}
	r.calls = append(r.calls, chatCall{op: "update", channel: ref.Channel, ts: ref.TS, inc: inc})
	return nil
}

func (r *recorder) Reply(_ context.Context, ref notify.CardRef, inc notify.Incident, u notify.Update) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.fail(); err != nil {
		return err
	}
	r.calls = append(r.calls, chatCall{op: "reply", channel: ref.Channel, ts: ref.TS, inc: inc, update: u})
	return nil
}

func (r *recorder) Page(_ context.Context, p notify.Page) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pages = append(r.pages, p)
	return nil
}

func (r *recorder) count(op string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		if c.op == op {
			n++
		}
	}
	return n
}

func (r *recorder) pageActions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.pages {
		out = append(out, string(p.Action)+":"+p.Incident.Title)
	}
	return out
}

type env struct {
	bus   *bus.Bus
	kv    bus.KV
	rec   *recorder
	eng   *engine.Engine
	clock *clock
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	cfg := bus.DefaultConfig()
	cfg.DataDir = t.TempDir()
	b, err := bus.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	kv, err := b.KV(context.Background(), bus.BucketIncidents)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{bus: b, kv: kv, rec: &recorder{}, clock: &clock{t: time.Date(2025, 8, 13, 14, 10, 0, 0, time.UTC)}}
	e.eng = e.newEngine(t)
	return e
}

func (e *env) newEngine(t *testing.T) *engine.Engine {
	eng, err := engine.New(engine.DefaultConfig(), engine.Deps{Catalog: testCatalog{}, KV: e.kv, Chat: e.rec, Pager: e.rec, Audit: e.bus, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

func fixtureEvent(t *testing.T, name string) bus.Event {
	t.Helper()
	body, err := os.ReadFile("../handlers/alertmanager/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	m, err := alertmanager.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	return bus.Event{ID: m.EventID(), Source: "alertmanager", Type: "alertmanager.notification", Subject: m.GroupKey, Data: body}
}

func (e *env) handle(t *testing.T, eng *engine.Engine, ev bus.Event) error {
	t.Helper()
	return eng.Handle(context.Background(), &bus.Delivery{Event: ev, Attempt: 1})
}

func TestIncidentLifecycle(t *testing.T) {
	e := newEnv(t)
	firing := fixtureEvent(t, "webhook.firing.single.json")
	if err := e.handle(t, e.eng, firing); err != nil {
		t.Fatal(err)
	}
	if e.rec.count("post") != 1 || e.rec.count("reply") != 0 {
		t.Fatalf("after firing: %d posts %d replies", e.rec.count("post"), e.rec.count("reply"))
	}
	// Redelivery and Alertmanager's repeat: nothing new.
	for range 3 {
		if err := e.handle(t, e.eng, firing); err != nil {
			t.Fatal(err)
		}
	}
	if e.rec.count("post") != 1 || e.rec.count("update") != 0 || e.rec.count("reply") != 0 {
		t.Fatalf("duplicates posted: %+v", e.rec.calls)
	}
	if got := e.rec.pageActions(); len(got) != 1 || got[0] != "trigger:HighErrorRate: High 5xx error rate on api" {
		t.Fatalf("pages after firing: %v", got)
	}
	e.clock.Add(10 * time.Minute)
	if err := e.handle(t, e.eng, fixtureEvent(t, "webhook.resolved.single.json")); err != nil {
		t.Fatal(err)
	}
	if e.rec.count("post") != 1 || e.rec.count("update") != 1 || e.rec.count("reply") != 1 {
		t.Fatalf("after resolve: %+v", e.rec.calls)
	}
	last := e.rec.calls[len(e.rec.calls)-2] // update, then reply
	if last.op != "update" || last.inc.Status != notify.StatusResolved || last.ts != e.rec.calls[0].ts {
		t.Fatalf("card not edited in place to resolved: %+v", last)
	}
	if got := e.rec.pageActions(); len(got) != 2 || got[1][:8] != "resolve:" {
		t.Fatalf("pages after resolve: %v", got)
	}
	if e.rec.pages[0].DedupKey != e.rec.pages[1].DedupKey {
		t.Fatal("trigger and resolve used different dedup keys")
	}
}

// refire makes a firing event for the single fixture with a new start.
func refire(t *testing.T, starts time.Time) bus.Event {
	ev := fixtureEvent(t, "webhook.firing.single.json")
	var m map[string]any
	_ = json.Unmarshal(ev.Data, &m)
	m["alerts"].([]any)[0].(map[string]any)["startsAt"] = starts.Format(time.RFC3339Nano)
	ev.Data, _ = json.Marshal(m)
	dm, err := alertmanager.Decode(ev.Data)
	if err != nil {
		t.Fatal(err)
	}
	ev.ID = dm.EventID()
	return ev
}

func TestFlappingReopensSameIncident(t *testing.T) {
	e := newEnv(t)
	_ = e.handle(t, e.eng, fixtureEvent(t, "webhook.firing.single.json"))
	_ = e.handle(t, e.eng, fixtureEvent(t, "webhook.resolved.single.json"))
	e.clock.Add(5 * time.Minute)
	if err := e.handle(t, e.eng, refire(t, e.clock.Now())); err != nil {
		t.Fatal(err)
	}
	if n := e.rec.count("post"); n != 1 {
		t.Fatalf("re-fire within window posted %d cards, want the one card", n)
	}
	last := e.rec.calls[len(e.rec.calls)-1]
	if last.op != "reply" || last.update.Kind != "reopened" || last.inc.Reopened != 1 || last.inc.Status != notify.StatusFiring {
		t.Fatalf("last call %+v, want reopened reply", last)
	}
	pages := e.rec.pageActions()
	if len(pages) != 3 || pages[2][:8] != "trigger:" {
		t.Fatalf("pages %v, want trigger, resolve, trigger", pages)
	}
	// Resolve again, then fire long after the window: a new incident.
	ev := fixtureEvent(t, "webhook.resolved.single.json")
	var m map[string]any
	_ = json.Unmarshal(ev.Data, &m)
	a := m["alerts"].([]any)[0].(map[string]any)
	a["startsAt"] = e.clock.Now().Format(time.RFC3339Nano)
	a["endsAt"] = e.clock.Now().Add(time.Minute).Format(time.RFC3339Nano)
	ev.Data, _ = json.Marshal(m)
	dm, _ := alertmanager.Decode(ev.Data)
	ev.ID = dm.EventID()
	if err := e.handle(t, e.eng, ev); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(3 * time.Hour)
	if err := e.handle(t, e.eng, refire(t, e.clock.Now())); err != nil {
		t.Fatal(err)
	}
	if n := e.rec.count("post"); n != 2 {
		t.Fatalf("re-fire after window posted %d cards total, want 2", n)
	}
	first, second := e.rec.calls[0].inc.ID, e.rec.calls[len(e.rec.calls)-1].inc.ID
	if first == second {
		t.Fatalf("new incident reused id %s", first)
	}
}

func TestGroupedNotificationMakesOneIncidentPerRunbook(t *testing.T) {
	e := newEnv(t)
	if err := e.handle(t, e.eng, fixtureEvent(t, "webhook.firing.grouped.json")); err != nil {
		t.Fatal(err)
	}
	if n := e.rec.count("post"); n != 5 {
		t.Fatalf("posted %d cards, want 5 (one per runbook)", n)
	}
	// Four critical alerts page; the warning stays in chat.
	if n := len(e.rec.pageActions()); n != 4 {
		t.Fatalf("%d pages, want 4", n)
	}
	if err := e.handle(t, e.eng, fixtureEvent(t, "webhook.firing.partially_resolved.json")); err != nil {
		t.Fatal(err)
	}
	if n := e.rec.count("post"); n != 5 {
		t.Fatalf("partial resolve posted new cards: %d", n)
	}
	if n := e.rec.count("update"); n != 2 {
		t.Fatalf("partial resolve edited %d cards, want 2", n)
	}
}

func TestRetryableChatFailureRetriesWithoutDoubling(t *testing.T) {
	e := newEnv(t)
	e.rec.failN = 1
	e.rec.failErr = &notify.Error{Op: "slack chat.postMessage", Retryable: true, Err: errors.New("503")}
	ev := fixtureEvent(t, "webhook.firing.single.json")
	if err := e.handle(t, e.eng, ev); err == nil {
		t.Fatal("first attempt: want a retry error")
	}
	if err := e.handle(t, e.eng, ev); err != nil {
		t.Fatalf("second attempt: %v", err)
	}
	if err := e.handle(t, e.eng, ev); err != nil {
		t.Fatal(err)
	}
	if n := e.rec.count("post"); n != 1 {
		t.Fatalf("posted %d cards, want 1", n)
	}
}

func TestPermanentChatFailureDoesNotBlockThePage(t *testing.T) {
	e := newEnv(t)
	e.rec.failN = 1
	e.rec.failErr = &notify.Error{Op: "slack chat.postMessage", Retryable: false, Err: errors.New("channel_not_found")}
	if err := e.handle(t, e.eng, fixtureEvent(t, "webhook.firing.single.json")); err != nil {
		t.Fatalf("permanent failure should be recorded, not retried: %v", err)
	}
	if n := len(e.rec.pageActions()); n != 1 {
		t.Fatalf("%d pages, want 1", n)
	}
}

func TestConcurrentReplicasPostOneCard(t *testing.T) {
	e := newEnv(t)
	engines := []*engine.Engine{e.eng, e.newEngine(t), e.newEngine(t)}
	ev := fixtureEvent(t, "webhook.firing.grouped.json")
	var wg sync.WaitGroup
	for _, eng := range engines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A replica that finds another's claim asks for a retry.
			for range 50 {
				if err := eng.Handle(context.Background(), &bus.Delivery{Event: ev, Attempt: 1}); err == nil {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	if n := e.rec.count("post"); n != 5 {
		t.Fatalf("3 replicas posted %d cards, want 5", n)
	}
}

func TestResolveForUnknownIncidentIsIgnored(t *testing.T) {
	e := newEnv(t)
	if err := e.handle(t, e.eng, fixtureEvent(t, "webhook.resolved.single.json")); err != nil {
		t.Fatal(err)
	}
	if len(e.rec.calls) != 0 || len(e.rec.pages) != 0 {
		t.Fatalf("resolve of unknown alert notified: %+v", e.rec.calls)
	}
}

func TestPoisonEvent(t *testing.T) {
	e := newEnv(t)
	err := e.handle(t, e.eng, bus.Event{ID: "x", Source: "alertmanager", Type: "alertmanager.notification", Data: []byte("{")})
	if !bus.IsPoison(err) {
		t.Fatalf("undecodable event: %v, want poison", err)
	}
	err = e.handle(t, e.eng, bus.Event{ID: "y", Source: "solana", Type: "solana.rpc.unhealthy", Data: []byte(`{"status":"maybe"}`)})
	if !bus.IsPoison(err) {
		t.Fatalf("invalid signal: %v, want poison", err)
	}
}

// countingRunbook counts renders.
type countingRunbook struct {
	testRunbook
	renders *atomic.Int32
}

func (r countingRunbook) Render(ctx context.Context, s signal.Signal) engine.Rendered {
	r.renders.Add(1)
	return r.testRunbook.Render(ctx, s)
}

type countingCatalog struct{ renders *atomic.Int32 }

func (c countingCatalog) Match(s signal.Signal) (engine.Runbook, bool) {
	return countingRunbook{testRunbook{s.Name()}, c.renders}, true
}
func (c countingCatalog) Get(n string) (engine.Runbook, bool) {
	return countingRunbook{testRunbook{n}, c.renders}, true
}

func TestDuplicateEventRendersNothing(t *testing.T) {
	e := newEnv(t)
	var renders atomic.Int32
	eng, err := engine.New(engine.DefaultConfig(), engine.Deps{Catalog: countingCatalog{&renders}, KV: e.kv, Chat: e.rec, Pager: e.rec, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ev := fixtureEvent(t, "webhook.firing.single.json")
	if err := e.handle(t, eng, ev); err != nil {
		t.Fatal(err)
	}
	// One render serves the card post and the page.
	if n := renders.Load(); n != 1 {
		t.Fatalf("first delivery rendered %d times, want 1", n)
	}
	for range 3 {
		if err := e.handle(t, eng, ev); err != nil {
			t.Fatal(err)
		}
	}
	if n := renders.Load(); n != 1 {
		t.Fatalf("duplicates rendered %d more times, want none", n-1)
	}
}

func TestSweepRepairsDeliveriesAfterTheEventWasGivenUp(t *testing.T) {
	e := newEnv(t)
	e.rec.failN = 100
	e.rec.failErr = &notify.Error{Op: "slack chat.postMessage", Retryable: true, Err: errors.New("503")}
	ev := fixtureEvent(t, "webhook.firing.single.json")
	// The last attempt fails too: the bus terminates the event.
	if err := e.eng.Handle(context.Background(), &bus.Delivery{Event: ev, Attempt: 10, Last: true}); err == nil {
		t.Fatal("want the last attempt to fail")
	}
	e.rec.mu.Lock()
	e.rec.failN = 0
	e.rec.mu.Unlock()
	e.eng.SweepOnce(context.Background())
	if n := e.rec.count("post"); n != 0 {
		t.Fatalf("sweep acted on a fresh change (%d posts); it must leave it to its event", n)
	}
	e.clock.Add(engine.DefaultConfig().ClaimTimeout + time.Second)
	e.eng.SweepOnce(context.Background())
	e.eng.SweepOnce(context.Background())
	if n := e.rec.count("post"); n != 1 {
		t.Fatalf("after the claim timeout the sweep posted %d cards, want 1", n)
	}
}

func TestEveryDecisionAndEffectIsAudited(t *testing.T) {
	e := newEnv(t)
	_ = e.handle(t, e.eng, fixtureEvent(t, "webhook.firing.single.json"))
	e.clock.Add(time.Minute)
	_ = e.handle(t, e.eng, fixtureEvent(t, "webhook.resolved.single.json"))
	recs, err := e.bus.AuditTrail(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, r := range recs {
		if r.Incident == "" || r.Actor == "" {
			t.Errorf("audit record without incident or actor: %+v", r)
		}
		kinds = append(kinds, r.Kind)
	}
	want := []string{"incident.opened", "notify.chat.posted", "notify.pager.trigger",
		"incident.resolved", "notify.chat.updated", "notify.chat.replied", "notify.pager.resolve"}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("audit trail %v, want %v", kinds, want)
	}
}
