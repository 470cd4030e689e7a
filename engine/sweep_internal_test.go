package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/signal"
)

// TestIndexCountsOpenAndKeepsRecentChanges: the index counts the open
// incidents by severity from the changes it sees (a resolve, a reopen, a
// purge), publishes only once ready, and names the keys changed between
// two passes of the sweep (open ones changed before stay counted,
// resolved ones are forgotten), which the passes between full ones check.
func TestIndexCountsOpenAndKeepsRecentChanges(t *testing.T) {
	now := time.Date(2025, 8, 13, 14, 0, 0, 0, time.UTC)
	since := now.Add(-10 * time.Minute)
	var published []string
	x := newIncidentIndex(func(open map[notify.Severity]int) {
		published = append(published, fmt.Sprint(open[notify.SeverityCritical], open[notify.SeverityWarning]))
	})
	put := func(key string, st notify.Status, sev notify.Severity, updated time.Time) {
		b, err := json.Marshal(Record{Status: st, Severity: sev, UpdatedAt: updated})
		if err != nil {
			t.Fatal(err)
		}
		x.apply(bus.Change{Entry: bus.Entry{Key: key, Value: b}}, since)
	}
	old := since.Add(-time.Hour)
	put("a", notify.StatusFiring, notify.SeverityCritical, old)
	put("b", notify.StatusFiring, notify.SeverityWarning, old)
	put("c", notify.StatusResolved, notify.SeverityCritical, old)
	if _, ready := x.changed(since, now); ready || len(published) != 0 {
		t.Fatalf("before Ready: ready %v, published %v; want neither", ready, published)
	}
	x.apply(bus.Change{Ready: true}, since)
	put("b", notify.StatusResolved, notify.SeverityWarning, now)                      // resolved now: recent
	put("d", notify.StatusAcknowledged, notify.SeverityCritical, now)                 // opened now
	put("a", notify.StatusFiring, notify.SeverityWarning, old)                        // severity changed
	x.apply(bus.Change{Entry: bus.Entry{Key: "d"}, Deleted: true}, since)             // purged
	put("e", notify.StatusResolved, notify.SeverityCritical, since.Add(-time.Second)) // resolved long ago
	want := []string{"1 1", "1 0", "2 0", "1 1", "0 1", "0 1"}
	if fmt.Sprint(published) != fmt.Sprint(want) {
		t.Fatalf("published (critical warning) %v, want %v", published, want)
	}
	put("f", notify.StatusFiring, notify.SeverityInfo, now.Add(time.Second)) // not settled yet
	keys, ready := x.changed(since, now)
	slices.Sort(keys)
	if !ready || fmt.Sprint(keys) != "[b]" {
		t.Fatalf("changed %v (ready %v), want [b]", keys, ready)
	}
	if keys, _ := x.changed(now, now.Add(time.Second)); fmt.Sprint(keys) != "[f]" || len(x.keys) != 2 {
		t.Fatalf("the next pass: changed %v, %d kept; want [f], and the open ones kept", keys, len(x.keys))
	}
}

type sweepPub struct {
	mu   sync.Mutex
	jobs []string
}

func (p *sweepPub) PublishTo(_ context.Context, subject string, ev bus.Event) (bus.PublishResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.jobs = append(p.jobs, subject+" "+ev.Subject)
	return bus.PublishResult{}, nil
}

func (p *sweepPub) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	j := p.jobs
	p.jobs = nil
	slices.Sort(j)
	return j
}

type noCatalog struct{}

func (noCatalog) Match(signal.Signal) (Runbook, bool) { return nil, false }
func (noCatalog) Get(string) (Runbook, bool)          { return nil, false }

// TestSweepChecksEachChangeOnceThenInFullPasses: between full passes the
// sweep checks each change once, after it settled (its own jobs had time
// to run), and queues the jobs of an incident whose deliveries lag; the
// next full pass, sweepSlices intervals after the previous one, checks
// every incident again.
func TestSweepChecksEachChangeOnceThenInFullPasses(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	now := time.Date(2025, 8, 13, 14, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	incidents, pub := bus.NewMemKV(), &sweepPub{}
	e, err := New(Config{}, Deps{Catalog: noCatalog{}, Decoders: &input.Decoders{}, Incidents: incidents, IDs: bus.NewMemKV(),
		Deliveries: bus.NewMemKV(), Chat: struct{ notify.Chat }{}, Pager: struct{ notify.Pager }{}, Publisher: pub,
		Scheduler: struct{ Scheduler }{}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	go e.watchIncidents(ctx)
	waitIndex := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			e.known.mu.Lock()
			ok := e.known.ready && cond()
			e.known.mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("index: %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitIndex("ready", func() bool { return true })
	e.SweepOnce(ctx) // the first pass is a full one: nothing stored yet

	advance(time.Minute)
	b, _ := json.Marshal(Record{ID: "INC-1", Key: "k1", Runbook: "gone", Status: notify.StatusFiring, Severity: notify.SeverityCritical,
		Version: 1, UpdatedAt: clock()})
	if _, err := incidents.Put(ctx, "k1", b); err != nil {
		t.Fatal(err)
	}
	waitIndex("k1 indexed", func() bool { _, ok := e.known.keys["k1"]; return ok })
	e.SweepOnce(ctx)
	if jobs := pub.take(); len(jobs) != 0 {
		t.Fatalf("a change not settled yet: queued %v, want nothing", jobs)
	}
	want := fmt.Sprint([]string{JobSubject(SinkChat) + " k1", JobSubject(SinkPager) + " k1"})
	advance(time.Minute)
	e.SweepOnce(ctx)
	if jobs := pub.take(); fmt.Sprint(jobs) != want {
		t.Fatalf("the settled change, nothing delivered: queued %v, want %s", jobs, want)
	}
	for range sweepSlices - 3 {
		advance(time.Minute)
		e.SweepOnce(ctx)
		if jobs := pub.take(); len(jobs) != 0 {
			t.Fatalf("a change already checked: queued %v, want nothing until the next full pass", jobs)
		}
	}
	advance(time.Minute)
	e.SweepOnce(ctx) // sweepSlices intervals after the first: a full pass
	if jobs := pub.take(); fmt.Sprint(jobs) != want {
		t.Fatalf("the full pass: queued %v, want %s", jobs, want)
	}
}
