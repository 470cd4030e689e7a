package engine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/engine"
)

// TestResolvedIncidentsExpireAfterTheRetention: a resolved incident and
// everything kept for it (record, id, deliveries, archived copy) is
// removed by the sweep once the retention has passed since it resolved,
// not before; an open incident is kept however old.
func TestResolvedIncidentsExpireAfterTheRetention(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(e *env) { e.cfg.Retention = 24 * time.Hour })
	e.deliver(t, fixtureEvent(t, "webhook.firing.single.json"))
	e.deliver(t, fixtureEvent(t, "webhook.firing.grouped.json"))
	e.clock.Add(10 * time.Minute)
	e.deliver(t, fixtureEvent(t, "webhook.resolved.single.json"))
	resolved := e.rec.calls[0].inc.ID
	all, err := e.eng.AllIncidents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	open := 0
	for _, r := range all {
		if r.Open() {
			open++
		}
	}
	if open == 0 || len(all) != open+1 {
		t.Fatalf("before: %d incidents, %d open; want the resolved one and some open", len(all), open)
	}
	count := func(bucket string) int {
		keys, err := e.kvs[bucket].Keys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	}
	before := map[string]int{}
	for _, b := range []string{engine.BucketIncidents, engine.BucketIDs, engine.BucketDeliveries, engine.BucketArchive} {
		before[b] = count(b)
	}

	e.clock.Add(23 * time.Hour)
	e.eng.SweepOnce(ctx)
	if _, err := e.eng.Get(ctx, resolved); err != nil {
		t.Fatalf("inside the retention: %v; want the incident kept", err)
	}

	e.clock.Add(2 * time.Hour)
	e.eng.SweepOnce(ctx)
	if _, err := e.eng.Get(ctx, resolved); !errors.Is(err, engine.ErrNoIncident) {
		t.Fatalf("past the retention: %v; want ErrNoIncident", err)
	}
	want := map[string]int{
		engine.BucketIncidents:  before[engine.BucketIncidents] - 1,
		engine.BucketIDs:        before[engine.BucketIDs] - 1,
		engine.BucketDeliveries: before[engine.BucketDeliveries] - 2, // its card and its page
		engine.BucketArchive:    before[engine.BucketArchive] - 1,
	}
	for b, n := range want {
		if got := count(b); got != n {
			t.Errorf("bucket %s: %d keys after the retention, want %d (had %d)", b, got, n, before[b])
		}
	}

	// Open incidents stay, however old.
	e.clock.Add(365 * 24 * time.Hour)
	e.eng.SweepOnce(ctx)
	after, err := e.eng.AllIncidents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != open {
		t.Fatalf("a year on: %d incidents; want the %d open ones", len(after), open)
	}
}
