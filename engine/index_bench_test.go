package engine

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/notify"
)

// BenchmarkIncidentIndexMemory: what the open-incidents index (the
// gauge's and the sweep's view of the records, kept on every replica)
// holds per open incident, after a collection: B/incident.
func BenchmarkIncidentIndexMemory(b *testing.B) {
	const n = 10000
	now := time.Date(2025, 8, 13, 14, 0, 0, 0, time.UTC)
	changes := make([]bus.Change, n)
	for i := range changes {
		v, err := json.Marshal(Record{ID: fmt.Sprintf("INC-%06X", i), Status: notify.StatusFiring, Severity: notify.SeverityCritical,
			UpdatedAt: now.Add(-time.Hour)})
		if err != nil {
			b.Fatal(err)
		}
		changes[i] = bus.Change{Entry: bus.Entry{Value: v, Revision: uint64(i + 1)}}
	}
	var per float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range changes { // the watch hands each change a key of its own
			changes[i].Key = fmt.Sprintf("inc.%024x", i) // as incidentKey makes them
		}
		x := newIncidentIndex(nil)
		for _, c := range changes {
			x.apply(c, now.Add(-10*time.Minute))
		}
		for i := range changes {
			changes[i].Key = "" // the index's copy of the key is all that is left
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if len(x.keys) != n {
			b.Fatalf("%d indexed, want %d", len(x.keys), n)
		}
		per = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
		runtime.KeepAlive(x)
	}
	b.ReportMetric(per, "B/incident")
}
