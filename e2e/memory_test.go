//go:build soak

package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/internal/testenv"
)

// TestMemoryPerOpenIncident is a soak measurement, not a check: it runs
// the built bot on its embedded default (console sinks), opens distinct
// critical incidents through the webhook in steps (E2E_MEMORY, a list of
// cumulative counts such as 2000,10000), waits at each step until they are
// all open and the bot is idle, and reports the process's resident memory
// and Go heap in use (several readings, min–max) and the median per open
// incident, against the idle bot and against the previous step; then it
// restarts the bot on that data and reports its idle memory before any
// traffic.
//
// It is built only with the soak tag, so it is never part of make test:
//
//	make memory N=2000,10000      (go test -tags soak; E2E_MEMORY=N)
//	make memory N=10000 LIMIT=67108864   (memory_limit; E2E_MEMORY_LIMIT)
//	E2E_MEMORY_IDLE=150s make memory     (idle time before each reading)
func TestMemoryPerOpenIncident(t *testing.T) {
	steps := envInts(t, "E2E_MEMORY", []int{2000, 10000})
	// Past the store's 10 s cache expiry; E2E_MEMORY_IDLE=150s also lets
	// the sweep check the changes once they settled (40 s) and run a pass.
	idle := envDuration(t, "E2E_MEMORY_IDLE", 40*time.Second)
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	data := filepath.Join(t.TempDir(), "data")
	extra := []string{"INCIDENTBOT_SLACK_TOKEN=", "INCIDENTBOT_LOG_LEVEL=warn"}
	if v := os.Getenv("E2E_MEMORY_LIMIT"); v != "" { // memory_limit in bytes
		extra = append(extra, "INCIDENTBOT_MEMORY_LIMIT="+v)
	}
	env := botEnv(addr, data, extra...)
	b := startBot(t, env...)
	waitReady(t, addr)
	time.Sleep(idle)
	r0 := readings(t, b, addr)
	t.Logf("idle, none open: %s", r0)

	base := fixture(t, "webhook.firing.single.json")
	prev, rprev, opened := 0, r0, 0
	for _, n := range steps {
		start := time.Now()
		openDistinct(t, addr, base, opened, n)
		eventually(t, 10*time.Minute, fmt.Sprintf("%d open incidents", n), func() bool { return openIncidents(t, addr) >= n })
		took := time.Since(start)
		opened = n
		time.Sleep(idle)
		r := readings(t, b, addr)
		t.Logf("%d more incidents opened in %s (%.0f/s)", n-prev, took.Round(time.Millisecond), float64(n-prev)/took.Seconds())
		t.Logf("idle with %d open: %s; on disk %s (%d B per incident)", n, r, mib(dirSize(t, data)), dirSize(t, data)/uint64(n))
		t.Logf("per open incident over none open: RSS %d B, Go heap %d B", perIncident(r.rss, r0.rss, n), perIncident(r.heap, r0.heap, n))
		if prev > 0 {
			t.Logf("per open incident from %d to %d open: RSS %d B, Go heap %d B", prev, n,
				perIncident(r.rss, rprev.rss, n-prev), perIncident(r.heap, rprev.heap, n-prev))
		}
		prev, rprev = n, r
	}

	_ = b.cmd.Process.Signal(os.Interrupt)
	_ = b.cmd.Wait()
	again := startBot(t, env...)
	waitReady(t, addr)
	time.Sleep(idle)
	t.Logf("restarted on that data with %d open, idle: %s", prev, readings(t, again, addr))
}

// reading is several samples of the bot's memory, 5 s apart.
type reading struct{ rss, heap []uint64 }

func readings(t *testing.T, b *bot, addr string) reading {
	t.Helper()
	var r reading
	for i := range 5 {
		if i > 0 {
			time.Sleep(5 * time.Second)
		}
		rss, heap := memory(t, b, addr)
		r.rss, r.heap = append(r.rss, rss), append(r.heap, heap)
	}
	slices.Sort(r.rss)
	slices.Sort(r.heap)
	return r
}

func (r reading) String() string {
	return fmt.Sprintf("RSS %s–%s, Go heap in use %s–%s", mib(r.rss[0]), mib(r.rss[len(r.rss)-1]), mib(r.heap[0]), mib(r.heap[len(r.heap)-1]))
}

func median(v []uint64) uint64 { return v[len(v)/2] }

// perIncident is the difference of the medians over n incidents.
func perIncident(now, before []uint64, n int) int64 {
	return (int64(median(now)) - int64(median(before))) / int64(n)
}

// envInts reads a comma-separated list of increasing positive integers.
func envInts(t *testing.T, name string, def []int) []int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || len(out) > 0 && n <= out[len(out)-1] {
			t.Fatalf("%s=%q: want increasing positive integers, comma-separated", name, v)
		}
		out = append(out, n)
	}
	return out
}

// memory is the bot's resident set (from /proc) and Go heap in use (from
// /metrics).
func memory(t *testing.T, b *bot, addr string) (rss, heap uint64) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			rss = kb << 10
		}
	}
	return rss, uint64(metric(t, addr, "go_memstats_heap_inuse_bytes"))
}

func openIncidents(t *testing.T, addr string) int {
	return int(metric(t, addr, "incidentbot_open_incidents"))
}

// metric sums the samples of a metric on /metrics.
func metric(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

func dirSize(t *testing.T, dir string) uint64 {
	t.Helper()
	var n uint64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += uint64(fi.Size())
		}
		return nil
	})
	return n
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// openDistinct delivers alerts from to to-1, each its own incident
// (service api-<i>), with 8 clients, and returns when all were accepted.
func openDistinct(t *testing.T, addr string, base []byte, from, to int) {
	t.Helper()
	work := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				mustDeliver(t, addr, alertAs(t, base, fmt.Sprintf("api-%d", i), i))
			}
		}()
	}
	for i := from; i < to; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
}
