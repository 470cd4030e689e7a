//go:build soak

package e2e

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/config"
)

// TestMemoryProfile is the in-process companion of
// TestMemoryPerOpenIncident: it runs the bot in this process on console
// sinks, opens N distinct incidents, waits past the store's cache expiry
// and a sweep, and writes a heap profile after three runtime.GC to
// $E2E_MEMPROFILE (default memory.pprof in the test's temp dir, logged).
// Read it with: go tool pprof -sample_index=inuse_space -top FILE
//
// E2E_PROBE_INTERVAL sets bus.probe_interval, E2E_MEMORY_IDLE the wait
// before the profile.
//
//	E2E_MEMORY=10000 E2E_MEMPROFILE=/tmp/heap.pprof go test -tags soak -run TestMemoryProfile ./e2e/
func TestMemoryProfile(t *testing.T) {
	n := envInt(t, "E2E_MEMORY", 10000)
	idle := envDuration(t, "E2E_MEMORY_IDLE", 40*time.Second)
	path := os.Getenv("E2E_MEMPROFILE")
	if path == "" {
		path = t.TempDir() + "/memory.pprof"
	}
	p := serveInProcess(t, slog.LevelWarn, func(c *config.Config) {
		c.Slack.Token, c.PagerDuty.RoutingKey = "", "" // console sinks: no fake holds what it was sent
		if d, err := time.ParseDuration(os.Getenv("E2E_PROBE_INTERVAL")); err == nil {
			c.Bus.ProbeInterval = d // to see what the store probe's writes keep cached
		}
	})
	addr := p.srv.Addr()
	base := fixture(t, "webhook.firing.single.json")
	openDistinct(t, addr, base, 0, n)
	eventually(t, 10*time.Minute, fmt.Sprintf("%d open incidents", n), func() bool { return openIncidents(t, addr) >= n })
	time.Sleep(idle)
	// Three collections: the first leaves what sync.Pools hold (the
	// store's idle block buffers) in their victim caches and returns the
	// buffers of caches it collected to the pools; two more free all that,
	// so the profile shows what is in use, not what a pool could hand out.
	var pooled runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&pooled)
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("after one GC: heap in use %s; after two more (pools emptied): %s", mib(pooled.HeapInuse), mib(ms.HeapInuse))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d open, after GC: heap in use %s (%d B per incident incl. fixed), heap sys %s, released %s; profile %s",
		n, mib(ms.HeapInuse), ms.HeapInuse/uint64(n), mib(ms.HeapSys), mib(ms.HeapReleased), path)
}
