package engine

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/notify"
)

// TestIndexCountsOpenAndKeepsRecentChanges: the index counts the open
// incidents by severity from the changes it sees (a resolve, a reopen, a
// purge), publishes only once ready, and names the keys changed within
// the recent window (open ones changed before it stay counted, resolved
// ones are forgotten), which the sweep's passes between full ones check.
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
	if _, ready := x.recent(since); ready || len(published) != 0 {
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
	keys, ready := x.recent(since)
	slices.Sort(keys)
	if !ready || fmt.Sprint(keys) != "[b]" {
		t.Fatalf("recent %v (ready %v), want [b]", keys, ready)
	}
	if keys, _ := x.recent(now.Add(time.Second)); len(keys) != 0 || len(x.keys) != 1 {
		t.Fatalf("a window later: recent %v, %d kept; want none recent and the open one kept", keys, len(x.keys))
	}
}
