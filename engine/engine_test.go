package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/handlers/alertmanager"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/signal"
)

// testRunbook routes by the severity label: critical pages.
type testRunbook struct {
	name   string
	levels []notify.EscalationLevel
}

func (r testRunbook) Name() string { return r.name }
func (r testRunbook) Severity(l map[string]string) notify.Severity {
	return notify.Severity(l["severity"])
}
func (r testRunbook) Route(s notify.Severity) engine.Route {
	return engine.Route{Channel: "#" + string(s), Page: s == notify.SeverityCritical}
}
func (r testRunbook) Escalation() []notify.EscalationLevel { return r.levels }
func (r testRunbook) Render(_ context.Context, s signal.Signal) engine.Rendered {
	return engine.Rendered{Title: r.name + ": " + s.Annotations["summary"]}
}

// testCatalog has one runbook per alertname, each with the same ladder.
type testCatalog struct{ levels []notify.EscalationLevel }

func (c testCatalog) Match(s signal.Signal) (engine.Runbook, bool) {
	return testRunbook{s.Name(), c.levels}, true
}
func (c testCatalog) Get(n string) (engine.Runbook, bool) { return testRunbook{n, c.levels}, true }

type chatCall struct {
	op      string
	tag     notify.CardTag
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
	finds   int
	failErr error
	// hold, when set, blocks every chat call until it is closed.
	hold chan struct{}
	// pageHold blocks every page until it is closed.
	pageHold chan struct{}
}

func (r *recorder) fail() error {
	if r.failN > 0 {
		r.failN--
		return r.failErr
	}
	return nil
}

func (r *recorder) wait(ctx context.Context, page bool) error {
	r.mu.Lock()
	h := r.hold
	if page {
		h = r.pageHold
	}
	r.mu.Unlock()
	if h == nil {
		return nil
	}
	select {
	case <-h:
		return nil
	case <-ctx.Done():
		return &notify.Error{Op: "held", Retryable: true, Err: ctx.Err()}
	}
}

func (r *recorder) PostCard(ctx context.Context, ch string, inc notify.Incident, tag notify.CardTag) (notify.CardRef, error) {
	if err := r.wait(ctx, false); err != nil {
		return notify.CardRef{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.fail(); err != nil {
		return notify.CardRef{}, err
	}
	r.seq++
	ts := fmt.Sprintf("1700000000.%06d", r.seq)
	r.calls = append(r.calls, chatCall{op: "post", channel: ch, ts: ts, inc: inc, tag: tag})
	return notify.CardRef{Channel: ch, TS: ts}, nil
}

func (r *recorder) FindCard(_ context.Context, ch string, tag notify.CardTag, _ time.Time) (notify.CardRef, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finds++
	for _, c := range r.calls {
		if c.op == "post" && c.channel == ch && c.tag.IncidentID == tag.IncidentID {
			return notify.CardRef{Channel: c.channel, TS: c.ts}, true, nil
		}
	}
	return notify.CardRef{}, false, nil
}

func (r *recorder) UpdateCard(ctx context.Context, ref notify.CardRef, inc notify.Incident) error {
	if err := r.wait(ctx, false); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.fail(); err != nil {
		return err
	}
	r.calls = append(r.calls, chatCall{op: "update", channel: ref.Channel, ts: ref.TS, inc: inc})
	return nil
}

func (r *recorder) Reply(ctx context.Context, ref notify.CardRef, inc notify.Incident, u notify.Update) error {
	if err := r.wait(ctx, false); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.fail(); err != nil {
		return err
	}
	r.calls = append(r.calls, chatCall{op: "reply", channel: ref.Channel, ts: ref.TS, inc: inc, update: u})
	return nil
}

func (r *recorder) Page(ctx context.Context, p notify.Page) error {
	if err := r.wait(ctx, true); err != nil {
		return err
	}
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
	kvs   map[string]bus.KV
	rec   *recorder
	eng   *engine.Engine
	clock *clock
	cfg   engine.Config
	cat   engine.Catalog
}

type clock struct {
	mu   sync.Mutex
	t    time.Time
	real bool
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.real {
		return time.Now()
	}
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func openBus(t testing.TB, dir string) (*bus.Bus, map[string]bus.KV) {
	t.Helper()
	ctx := context.Background()
	cfg := bus.DefaultConfig()
	cfg.DataDir = dir
	b, err := bus.Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range engine.Streams {
		if err := b.EnsureStream(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	kvs := map[string]bus.KV{}
	for _, s := range engine.Buckets {
		if kvs[s.Name], err = b.EnsureBucket(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	return b, kvs
}

func newEnv(t *testing.T, edit ...func(*env)) *env {
	t.Helper()
	b, kvs := openBus(t, t.TempDir())
	t.Cleanup(b.Close)
	cfg := engine.DefaultConfig()
	cfg.RetryMax = 100 * time.Millisecond
	e := &env{bus: b, kvs: kvs, rec: &recorder{}, clock: &clock{t: time.Date(2025, 8, 13, 14, 10, 0, 0, time.UTC)}, cfg: cfg, cat: testCatalog{}}
	for _, f := range edit {
		f(e)
	}
	e.eng = e.start(t)
	return e
}

// newEngine builds an engine on the env's bus without consumers.
func (e *env) newEngine(t *testing.T) *engine.Engine {
	t.Helper()
	eng, err := engine.New(e.cfg, engine.Deps{Catalog: e.cat, Decoders: app.Decoders(),
		Incidents: e.kvs[engine.BucketIncidents], IDs: e.kvs[engine.BucketIDs], Deliveries: e.kvs[engine.BucketDeliveries],
		Archive: e.kvs[engine.BucketArchive],
		Chat:    e.rec, Pager: e.rec, Publisher: e.bus, Scheduler: e.bus, Audit: e.bus, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

// start builds an engine and runs its consumers until the test ends: one
// replica.
func (e *env) start(t *testing.T) *engine.Engine {
	t.Helper()
	eng := e.newEngine(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, c := range eng.Consumers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.bus.Consume(ctx, c.Config, c.Handler); err != nil && ctx.Err() == nil {
				t.Errorf("consume %s: %v", c.Config.Durable, err)
			}
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
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
	return bus.Event{ID: m.EventID(), Source: "alertmanager", Type: alertmanager.EventType, Subject: m.GroupKey, Data: body}
}

// deliver publishes ev as the receiver would and waits until every
// consumer is idle: the event, its deliveries and their retries are done.
func (e *env) deliver(t *testing.T, ev bus.Event) {
	t.Helper()
	if _, err := e.bus.Publish(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	e.idle(t)
}

// idle waits until no consumer has anything pending or in flight.
func (e *env) idle(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for quiet := 0; quiet < 3; {
		if time.Now().After(deadline) {
			t.Fatal("consumers did not go idle within 20s")
		}
		n := 0
		for _, c := range [][2]string{{"EVENTS", "engine"}, {bus.TimersStreamSpec().Name, "engine-timers"},
			{engine.DeliveriesStream.Name, "deliver-chat"}, {engine.DeliveriesStream.Name, "deliver-pager"}} {
			p, err := e.bus.Pending(ctx, c[0], c[1])
			if err != nil {
				t.Fatal(err)
			}
			n += p
		}
		if n == 0 {
			quiet++
		} else {
			quiet = 0
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestIncidentLifecycle(t *testing.T) {
	e := newEnv(t)
	firing := fixtureEvent(t, "webhook.firing.single.json")
	e.deliver(t, firing)
	if e.rec.count("post") != 1 || e.rec.count("reply") != 0 {
		t.Fatalf("after firing: %d posts %d replies", e.rec.count("post"), e.rec.count("reply"))
	}
	// Redelivery and Alertmanager's repeat: nothing new.
	for range 3 {
		if err := e.eng.Handle(context.Background(), &bus.Delivery{Event: firing, Attempt: 2}); err != nil {
			t.Fatal(err)
		}
	}
	e.idle(t)
	if e.rec.count("post") != 1 || e.rec.count("update") != 0 || e.rec.count("reply") != 0 {
		t.Fatalf("duplicates posted: %+v", e.rec.calls)
	}
	if got := e.rec.pageActions(); len(got) != 1 || got[0] != "trigger:HighErrorRate: High 5xx error rate on api" {
		t.Fatalf("pages after firing: %v", got)
	}
	e.clock.Add(10 * time.Minute)
	e.deliver(t, fixtureEvent(t, "webhook.resolved.single.json"))
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
	if inc := e.rec.calls[0].inc; inc.Key == "" || inc.Key == inc.ID || inc.Key[:4] != "inc." {
		t.Fatalf("the incident model's key %q is not the record key", inc.Key)
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
	e.deliver(t, fixtureEvent(t, "webhook.firing.single.json"))
	e.deliver(t, fixtureEvent(t, "webhook.resolved.single.json"))
	e.clock.Add(5 * time.Minute)
	e.deliver(t, refire(t, e.clock.Now()))
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
	e.deliver(t, ev)
	e.clock.Add(3 * time.Hour)
	e.deliver(t, refire(t, e.clock.Now()))
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
	e.deliver(t, fixtureEvent(t, "webhook.firing.grouped.json"))
	if n := e.rec.count("post"); n != 5 {
		t.Fatalf("posted %d cards, want 5 (one per runbook)", n)
	}
	// Four critical alerts page; the warning stays in chat.
	if n := len(e.rec.pageActions()); n != 4 {
		t.Fatalf("%d pages, want 4", n)
	}
	e.deliver(t, fixtureEvent(t, "webhook.firing.partially_resolved.json"))
	if n := e.rec.count("post"); n != 5 {
		t.Fatalf("partial resolve posted new cards: %d", n)
	}
	if n := e.rec.count("update"); n != 2 {
		t.Fatalf("partial resolve edited %d cards, want 2", n)
	}
}

func TestRetryableChatFailureRetriesWithoutDoubling(t *testing.T) {
	e := newEnv(t)
	e.rec.failN = 2
	e.rec.failErr = &notify.Error{Op: "slack chat.postMessage", Retryable: true, Err: errors.New("503")}
	e.deliver(t, fixtureEvent(t, "webhook.firing.single.json"))
	if n := e.rec.count("post"); n != 1 {
		t.Fatalf("posted %d cards, want 1", n)
	}
}

func TestPermanentChatFailureDoesNotBlockThePage(t *testing.T) {
	e := newEnv(t)
	e.rec.failN = 1
	e.rec.failErr = &notify.Error{Op: "slack chat.postMessage", Retryable: false, Err: errors.New("channel_not_found")}
	e.deliver(t, fixtureEvent(t, "webhook.firing.single.json"))
	if n := len(e.rec.pageActions()); n != 1 {
		t.Fatalf("%d pages, want 1", n)
	}
	if n := e.rec.count("post"); n != 0 {
		t.Fatalf("a permanent failure was retried: %d posts", n)
	}
}

// TestOneSinkDownDoesNotDelayTheOther holds every chat call: pages still go
// out; then holds every page: cards still go out.
func TestOneSinkDownDoesNotDelayTheOther(t *testing.T) {
	e := newEnv(t)
	e.rec.hold = make(chan struct{})
	if _, err := e.bus.Publish(context.Background(), fixtureEvent(t, "webhook.firing.grouped.json")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "4 pages while chat hangs", func() bool { return len(e.rec.pageActions()) == 4 })
	if n := e.rec.count("post"); n != 0 {
		t.Fatalf("%d cards posted while chat hangs", n)
	}
	e.rec.mu.Lock()
	close(e.rec.hold)
	e.rec.hold = nil
	e.rec.pageHold = make(chan struct{})
	e.rec.mu.Unlock()
	eventually(t, "5 cards once chat answers", func() bool { return e.rec.count("post") == 5 })
	if _, err := e.bus.Publish(context.Background(), fixtureEvent(t, "webhook.resolved.grouped.json")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "5 card edits while the pager hangs", func() bool { return e.rec.count("update") == 5 })
	if n := len(e.rec.pageActions()); n != 4 {
		t.Fatalf("resolves went out while the pager hangs: %v", e.rec.pageActions())
	}
	if n := e.rec.count("update"); n != 5 {
		t.Fatalf("%d card edits while the pager hangs, want 5", n)
	}
	e.rec.mu.Lock()
	close(e.rec.pageHold)
	e.rec.pageHold = nil
	e.rec.mu.Unlock()
	eventually(t, "4 resolves once the pager answers", func() bool { return len(e.rec.pageActions()) == 8 })
}

func TestConcurrentReplicasPostOneCard(t *testing.T) {
	e := newEnv(t)
	e.start(t)
	e.start(t)
	ev := fixtureEvent(t, "webhook.firing.grouped.json")
	// Three replicas handle the same event at once (a redelivery racing
	// the first delivery), each with its own sinks' consumers.
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = e.newEngine(t).Handle(context.Background(), &bus.Delivery{Event: ev, Attempt: 2})
		}()
	}
	wg.Wait()
	e.deliver(t, ev)
	if n := e.rec.count("post"); n != 5 {
		t.Fatalf("3 replicas posted %d cards, want 5", n)
	}
	if n := len(e.rec.pageActions()); n != 4 {
		t.Fatalf("3 replicas sent %d pages, want 4", n)
	}
}

func TestResolveForUnknownIncidentIsIgnored(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, fixtureEvent(t, "webhook.resolved.single.json"))
	if len(e.rec.calls) != 0 || len(e.rec.pages) != 0 {
		t.Fatalf("resolve of unknown alert notified: %+v", e.rec.calls)
	}
}

func TestPoisonEvent(t *testing.T) {
	e := newEnv(t)
	handle := func(ev bus.Event) error {
		return e.eng.Handle(context.Background(), &bus.Delivery{Event: ev, Attempt: 1})
	}
	if err := handle(bus.Event{ID: "x", Source: "alertmanager", Type: alertmanager.EventType, Data: []byte("{")}); !bus.IsPoison(err) {
		t.Fatalf("undecodable event: %v, want poison", err)
	}
	if err := handle(bus.Event{ID: "y", Source: "solana", Type: "solana.rpc.unhealthy", Data: []byte(`{"status":"maybe"}`)}); !bus.IsPoison(err) {
		t.Fatalf("invalid signal: %v, want poison", err)
	}
	if err := handle(bus.Event{ID: "z", Source: "mystery", Type: "mystery.thing", Data: []byte(`{}`)}); !bus.IsPoison(err) {
		t.Fatalf("an event nobody decodes: %v, want poison", err)
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
	return countingRunbook{testRunbook{name: s.Name()}, c.renders}, true
}
func (c countingCatalog) Get(n string) (engine.Runbook, bool) {
	return countingRunbook{testRunbook{name: n}, c.renders}, true
}

func TestDuplicateEventRendersNothing(t *testing.T) {
	var renders atomic.Int32
	e := newEnv(t, func(e *env) { e.cat = countingCatalog{&renders} })
	ev := fixtureEvent(t, "webhook.firing.single.json")
	e.deliver(t, ev)
	// One render for the card, one for the page (their own workers).
	if n := renders.Load(); n != 2 {
		t.Fatalf("first delivery rendered %d times, want 2", n)
	}
	for range 3 {
		if err := e.eng.Handle(context.Background(), &bus.Delivery{Event: ev, Attempt: 1}); err != nil {
			t.Fatal(err)
		}
	}
	e.idle(t)
	if n := renders.Load(); n != 2 {
		t.Fatalf("duplicates rendered %d more times, want none", n-2)
	}
}

func TestEveryDecisionAndEffectIsAudited(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, fixtureEvent(t, "webhook.firing.single.json"))
	e.clock.Add(time.Minute)
	e.deliver(t, fixtureEvent(t, "webhook.resolved.single.json"))
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
	slices.Sort(kinds) // chat and pager run apart: their order varies
	want := []string{"incident.opened", "incident.resolved", "notify.chat.posted", "notify.chat.replied", "notify.chat.updated",
		"notify.pager.resolve", "notify.pager.trigger"}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("audit trail %v, want %v", kinds, want)
	}
}

// TestOpenIncidentsGaugeAfterRestart: the gauge comes from the stored
// records, so a process that starts on existing data (or any replica)
// reports the open incidents at once, and it follows the changes another
// replica makes.
func TestOpenIncidentsGaugeAfterRestart(t *testing.T) {
	e := newEnv(t)
	e.deliver(t, fixtureEvent(t, "webhook.firing.grouped.json"))
	reg := prometheus.NewRegistry()
	restarted, err := engine.New(e.cfg, engine.Deps{Catalog: e.cat, Decoders: app.Decoders(),
		Incidents: e.kvs[engine.BucketIncidents], IDs: e.kvs[engine.BucketIDs], Deliveries: e.kvs[engine.BucketDeliveries],
		Chat: e.rec, Pager: e.rec, Publisher: e.bus, Scheduler: e.bus, Now: e.clock.Now, Metrics: engine.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	swept := make(chan error, 1)
	go func() { swept <- restarted.Sweep(ctx) }()
	defer func() {
		cancel()
		if err := <-swept; err != nil {
			t.Error(err)
		}
	}()
	gauge := func(critical, warning int) string {
		return fmt.Sprintf(`
# HELP incidentbot_open_incidents Incidents not resolved, by severity.
# TYPE incidentbot_open_incidents gauge
incidentbot_open_incidents{severity="critical"} %d
incidentbot_open_incidents{severity="info"} 0
incidentbot_open_incidents{severity="warning"} %d
`, critical, warning)
	}
	var last error
	eventually(t, "the gauge read from the records", func() bool {
		last = testutil.GatherAndCompare(reg, strings.NewReader(gauge(4, 1)), "incidentbot_open_incidents")
		return last == nil
	})
	e.deliver(t, fixtureEvent(t, "webhook.firing.single.json"))
	eventually(t, "the gauge after the other replica opened one more", func() bool {
		last = testutil.GatherAndCompare(reg, strings.NewReader(gauge(5, 1)), "incidentbot_open_incidents")
		return last == nil
	})
	e.clock.Add(time.Minute)
	e.deliver(t, fixtureEvent(t, "webhook.resolved.single.json"))
	eventually(t, "the gauge after the other replica resolved it", func() bool {
		last = testutil.GatherAndCompare(reg, strings.NewReader(gauge(4, 1)), "incidentbot_open_incidents")
		return last == nil
	})
}
