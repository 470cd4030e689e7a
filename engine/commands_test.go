package engine_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
)

// noScan fails the test on any listing of its bucket: lookups must be
// one read.
type noScan struct {
	bus.KV
	t     *testing.T
	gets  *atomic.Int32
	scans *atomic.Int32
}

func (k noScan) Get(ctx context.Context, key string) (bus.Entry, error) {
	k.gets.Add(1)
	return k.KV.Get(ctx, key)
}

func (k noScan) Keys(ctx context.Context) ([]string, error) {
	k.scans.Add(1)
	return k.KV.Keys(ctx)
}

var ada = input.Actor{ID: "U0ADA", Name: "Ada", Via: "slack"}

func TestCommandsChangeTheIncidentOnce(t *testing.T) {
	var gets, scans atomic.Int32
	e := newEnv(t, func(e *env) {
		e.kvs[engine.BucketIDs] = noScan{KV: e.kvs[engine.BucketIDs], t: t, gets: &gets, scans: &scans}
	})
	e.deliver(t, fixtureEvent(t, "webhook.firing.single.json"))
	id := e.rec.calls[0].inc.ID
	sender := command.NewSender(e.bus, e.eng)

	// Lookups by id, in any case and without the prefix, and by the
	// PagerDuty dedup key: one read each, no scan.
	for _, typed := range []string{id, strings.ToLower(id), strings.TrimPrefix(id, "INC-"), e.rec.pages[0].DedupKey} {
		before := gets.Load()
		ref, err := e.eng.Lookup(context.Background(), typed)
		if err != nil || ref.ID != id {
			t.Fatalf("lookup %q: %+v %v", typed, ref, err)
		}
		if n := gets.Load() - before; n != 1 {
			t.Fatalf("lookup %q took %d reads", typed, n)
		}
	}
	if _, err := e.eng.Lookup(context.Background(), "INC-NOPE"); !errors.Is(err, engine.ErrNoIncident) {
		t.Fatalf("unknown id: %v", err)
	}
	if _, err := sender.Send(context.Background(), command.Command{Verb: input.Ack, Incident: "INC-NOPE", By: ada, RequestID: "r0"}); !errors.Is(err, engine.ErrNoIncident) {
		t.Fatalf("ack of an unknown incident: %v", err)
	}

	// An ack, sent twice (a retried request) and handled twice (a
	// redelivery): one effect.
	ack := command.Command{Verb: input.Ack, Incident: strings.ToLower(id), By: ada, RequestID: "req-1", At: e.clock.Now()}
	for range 2 {
		if _, err := sender.Send(context.Background(), ack); err != nil {
			t.Fatal(err)
		}
	}
	e.idle(t)
	rec, err := e.eng.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != notify.StatusAcknowledged || rec.Ack == nil || rec.Ack.By != ada {
		t.Fatalf("after ack: %s %+v", rec.Status, rec.Ack)
	}
	acks := 0
	for _, u := range rec.Timeline {
		if u.Kind == "acknowledged" {
			acks++
		}
	}
	if acks != 1 {
		t.Fatalf("%d ack entries on the timeline, want 1", acks)
	}
	// The pager hears the ack once, with the incident's dedup key; the
	// card names who has it.
	if got := e.rec.pageActions(); len(got) != 2 || !strings.HasPrefix(got[1], "acknowledge:") {
		t.Fatalf("pages: %v", got)
	}
	if e.rec.pages[1].DedupKey != e.rec.pages[0].DedupKey {
		t.Fatal("ack sent with another dedup key")
	}
	var edited notify.Incident
	for _, c := range e.rec.calls {
		if c.op == "update" {
			edited = c.inc
		}
	}
	if edited.AcknowledgedBy != "Ada (slack)" || edited.Status != notify.StatusAcknowledged {
		t.Fatalf("card after ack: %q %s", edited.AcknowledgedBy, edited.Status)
	}
	if n := scans.Load(); n != 0 {
		t.Fatalf("the id index was scanned %d times", n)
	}

	// An ack made in PagerDuty is recorded but not echoed back.
	e.rec.mu.Lock()
	pagesBefore := len(e.rec.pages)
	e.rec.mu.Unlock()
	e.clock.Add(time.Minute)
	if _, err := sender.Send(context.Background(), command.Command{Verb: input.Unack, Incident: id, By: ada, RequestID: "req-2", At: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Minute)
	pd := input.Actor{ID: "PXYZ", Name: "Bob", Via: "pagerduty"}
	if _, err := sender.Send(context.Background(), command.Command{Verb: input.Ack, Incident: id, By: pd, RequestID: "pd-webhook-1", At: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	e.idle(t)
	if n := len(e.rec.pageActions()); n != pagesBefore {
		t.Fatalf("an ack made in PagerDuty was echoed back: %v", e.rec.pageActions())
	}

	// A resolve by hand resolves the page; the note lands in the thread.
	if _, err := sender.Send(context.Background(), command.Command{Verb: input.Note, Incident: id, By: ada, RequestID: "n1", Text: "rolled back the API", At: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := sender.Send(context.Background(), command.Command{Verb: input.Resolve, Incident: id, By: ada, RequestID: "r1", Text: "fixed", At: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	e.idle(t)
	if got := e.rec.pageActions(); !strings.HasPrefix(got[len(got)-1], "resolve:") {
		t.Fatalf("resolve by hand did not resolve the page: %v", got)
	}
	var replies []string
	for _, c := range e.rec.calls {
		if c.op == "reply" {
			replies = append(replies, c.update.Text)
		}
	}
	want := []string{"Acknowledged by Ada (slack)", "Unacknowledged by Ada (slack)", "Acknowledged by Bob (pagerduty)",
		"Ada (slack): rolled back the API", "Resolved by Ada (slack) while 1 alert(s) still fire in Alertmanager: fixed"}
	if strings.Join(replies, "|") != strings.Join(want, "|") {
		t.Fatalf("thread:\n got  %q\n want %q", replies, want)
	}
}
