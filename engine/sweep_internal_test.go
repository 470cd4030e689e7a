package engine

import (
	"fmt"
	"testing"
	"time"
)

// TestSweepChecksEveryIdleIncidentOnceInTenPasses: the repair guarantee of
// the sliced sweep. The first pass checks every incident; afterwards an
// incident changed in the last ten intervals is checked on every pass, and
// an idle one on exactly one pass of any ten in a row, so a lagging
// delivery is repaired within ten intervals.
func TestSweepChecksEveryIdleIncidentOnceInTenPasses(t *testing.T) {
	const interval = time.Minute
	idle, recent := 10*interval, 10*interval-time.Second
	perPass := make([]int, sweepSlices)
	for i := range 1000 {
		key := fmt.Sprintf("alertmanager.%016x", i)
		if !checkDeliveries(0, key, 24*time.Hour, interval) {
			t.Fatalf("the first pass skips %s", key)
		}
		for start := uint64(1); start <= 25; start += 7 {
			n := 0
			for pass := start; pass < start+sweepSlices; pass++ {
				if !checkDeliveries(pass, key, recent, interval) {
					t.Fatalf("pass %d skips %s, changed %s ago", pass, key, recent)
				}
				if checkDeliveries(pass, key, idle, interval) {
					n++
					perPass[pass%sweepSlices]++
				}
			}
			if n != 1 {
				t.Fatalf("%s idle: checked on %d of passes %d..%d, want 1", key, n, start, start+sweepSlices-1)
			}
		}
	}
	for slice, n := range perPass { // 4 windows × 1000 keys spread over 10 slices
		if n < 200 || n > 600 {
			t.Errorf("slice %d checks %d of 4000 idle incident-windows: not spread", slice, n)
		}
	}
}
