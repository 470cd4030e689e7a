package engine_test

import (
	"context"
	"errors"
	"testing"

	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/engine"
)

// dyingKV is a bucket whose Put fails, as if the process died right
// before it.
type dyingKV struct{ bus.KV }

func (dyingKV) Put(context.Context, string, []byte) (uint64, error) {
	return 0, errors.New("process killed")
}

// TestRedeliveryAfterACrashFollowsUpEvenAsFirstAttempt: an attempt stores
// the new incident and dies before its follow-up (id index, escalation
// timer, delivery jobs). The event comes back as attempt 1, as it does
// after kill -9 of the embedded server, whose consumer state is written
// about ten times a second and so can forget the delivery. The change is
// then a no-op, yet the follow-up is done: the incident is found by its id,
// and its card and page go out.
func TestRedeliveryAfterACrashFollowsUpEvenAsFirstAttempt(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	dying, err := engine.New(e.cfg, engine.Deps{Catalog: e.cat, Decoders: app.Decoders(),
		Incidents: e.kvs[engine.BucketIncidents], IDs: dyingKV{e.kvs[engine.BucketIDs]}, Deliveries: e.kvs[engine.BucketDeliveries],
		Chat: e.rec, Pager: e.rec, Publisher: e.bus, Scheduler: e.bus, Audit: e.bus, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ev := fixtureEvent(t, "webhook.firing.single.json")
	if err := dying.Handle(ctx, &bus.Delivery{Event: ev, Attempt: 1}); err == nil {
		t.Fatal("the dying attempt succeeded")
	}
	recs, err := e.eng.Incidents(ctx)
	if err != nil || len(recs) != 1 {
		t.Fatalf("after the dying attempt: %d records, %v; want the one it stored", len(recs), err)
	}
	var id string
	for _, r := range recs {
		id = r.ID
	}
	e.idle(t)
	if n := e.rec.count("post"); n != 0 {
		t.Fatalf("%d cards before the redelivery, want none (no job was queued)", n)
	}

	if err := e.eng.Handle(ctx, &bus.Delivery{Event: ev, Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	e.idle(t)
	if _, err := e.eng.Lookup(ctx, id); err != nil {
		t.Errorf("lookup %s after the redelivery: %v", id, err)
	}
	if n, p := e.rec.count("post"), len(e.rec.pageActions()); n != 1 || p != 1 {
		t.Fatalf("after the redelivery: %d cards, %d pages; want 1 and 1", n, p)
	}
}
