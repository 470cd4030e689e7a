package engine_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
)

// firingNow is the single-alert fixture, started now (so escalation timers
// are due in real time).
func firingNow(t *testing.T) bus.Event { return refire(t, time.Now()) }

func escalations(r *recorder) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.calls {
		if c.op == "reply" && c.update.Kind == "escalated" {
			out = append(out, c.update.Text)
		}
	}
	return out
}

func ladder(after ...time.Duration) []notify.EscalationLevel {
	out := []notify.EscalationLevel{{Name: "L1", After: 0, Who: "@oncall"}}
	for i, a := range after {
		out = append(out, notify.EscalationLevel{Name: "L" + string(rune('2'+i)), After: a, Who: "@level"})
	}
	return out
}

// TestEscalationFiresOnceAcrossReplicasAndARestart: three engines share the
// bus; the whole bus and every engine restart between arming L2 and its
// firing; L2 and then L3 are posted once each.
func TestEscalationFiresOnceAcrossReplicasAndARestart(t *testing.T) {
	dir := t.TempDir()
	rec := &recorder{}
	cfg := engine.DefaultConfig()
	cfg.RetryMax = 100 * time.Millisecond
	run := func() (*env, func()) {
		b, kvs := openBus(t, dir)
		e := &env{bus: b, kvs: kvs, rec: rec, clock: &clock{real: true}, cfg: cfg, cat: testCatalog{levels: ladder(2*time.Second, 4*time.Second)}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		var started int
		for range 3 {
			eng := e.newEngine(t)
			for _, c := range eng.Consumers() {
				started++
				go func() {
					defer func() { done <- struct{}{} }()
					_ = b.Consume(ctx, c.Config, c.Handler)
				}()
			}
		}
		e.eng = e.newEngine(t)
		return e, func() {
			cancel()
			for range started {
				<-done
			}
			b.Close()
		}
	}
	e, stop := run()
	if _, err := e.bus.Publish(context.Background(), firingNow(t)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the card", func() bool { return rec.count("post") == 1 })
	stop() // down before L2 is due (2s after the start)
	if n := len(escalations(rec)); n != 0 {
		t.Fatalf("escalated before the restart: %v", escalations(rec))
	}
	e, stop = run()
	defer stop()
	eventually(t, "L2 and L3", func() bool { return len(escalations(rec)) >= 2 })
	time.Sleep(time.Second) // a second firing would land here
	got := escalations(rec)
	if len(got) != 2 || !strings.Contains(got[0], "escalating to L2") || !strings.Contains(got[1], "escalating to L3") {
		t.Fatalf("escalations: %q", got)
	}
	r, err := e.eng.Get(context.Background(), rec.calls[0].inc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Escalation.Token != "" || r.Escalation.Next != 3 {
		t.Fatalf("after the last level: %+v", r.Escalation)
	}
}

// TestAckCancelsEscalation: after an ack nothing fires, and a fired timer
// whose token is stale does nothing.
func TestAckCancelsEscalation(t *testing.T) {
	e := newEnv(t, func(e *env) {
		e.clock.real = true
		e.cat = testCatalog{levels: ladder(1500 * time.Millisecond)}
	})
	e.deliver(t, firingNow(t))
	id := e.rec.calls[0].inc.ID
	r, err := e.eng.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	armed := r.Escalation.Token
	if armed == "" {
		t.Fatal("no escalation armed")
	}
	if _, err := command.NewSender(e.bus, e.eng).Send(context.Background(),
		command.Command{Verb: input.Ack, Incident: id, By: ada, RequestID: "ack", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	e.idle(t)
	time.Sleep(2500 * time.Millisecond) // past the cancelled due time
	e.idle(t)
	if got := escalations(e.rec); len(got) != 0 {
		t.Fatalf("escalated after an ack: %q", got)
	}
	// A timer that fires with the old token (a schedule purged too late)
	// is fenced.
	late := bus.Event{ID: "timer." + armed, Source: "engine", Type: engine.TimerEventType, Time: time.Now(), Subject: r.GroupKey,
		Data: []byte(`{"incident":"` + id + `","token":"` + armed + `","level":1}`)}
	if err := e.eng.Handle(context.Background(), &bus.Delivery{Event: late, Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	e.idle(t)
	if got := escalations(e.rec); len(got) != 0 {
		t.Fatalf("a stale timer escalated: %q", got)
	}
}

// TestALevelPagesOnItsOwn: a level with page: true pages PagerDuty under
// its own dedup key on its own service when called, and is acknowledged
// and resolved with the incident.
func TestALevelPagesOnItsOwn(t *testing.T) {
	levels := ladder(1500 * time.Millisecond)
	levels[1].Page, levels[1].PagerDutyKeyRef = true, "senior"
	e := newEnv(t, func(e *env) {
		e.clock.real = true
		e.cat = testCatalog{levels: levels}
	})
	e.deliver(t, firingNow(t))
	id := e.rec.calls[0].inc.ID
	eventually(t, "L2's own page", func() bool { return len(e.rec.pageActions()) == 2 })
	e.idle(t)
	levelPage := e.rec.pages[1]
	if levelPage.Action != notify.PageTrigger || levelPage.DedupKey != id+"/level-1" || levelPage.RoutingKeyRef != "senior" {
		t.Fatalf("level page %+v", levelPage)
	}
	if got := escalations(e.rec); len(got) != 1 || !strings.Contains(got[0], "(paging PagerDuty)") {
		t.Fatalf("escalation reply %q", got)
	}
	sender := command.NewSender(e.bus, e.eng)
	if _, err := sender.Send(context.Background(), command.Command{Verb: input.Ack, Incident: id, By: ada, RequestID: "a", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	e.idle(t)
	if _, err := sender.Send(context.Background(), command.Command{Verb: input.Resolve, Incident: id, By: ada, RequestID: "r", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	e.idle(t)
	byKey := map[string][]string{}
	for _, p := range e.rec.pages {
		byKey[p.DedupKey] = append(byKey[p.DedupKey], string(p.Action)+"@"+p.RoutingKeyRef)
	}
	if fmt.Sprint(byKey[id]) != "[trigger@ acknowledge@ resolve@]" || fmt.Sprint(byKey[id+"/level-1"]) != "[trigger@senior acknowledge@senior resolve@senior]" {
		t.Fatalf("pages by dedup key: %v", byKey)
	}
}
