//go:build soak

package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/internal/testenv"
)

// TestMemoryPerOpenIncident is a soak measurement, not a check: it runs
// the built bot on its embedded default (console sinks), opens N distinct
// critical incidents through the webhook, waits until they are all open
// and the bot is idle, and reports the process's resident memory and Go
// heap before and after, per open incident; then it restarts the bot on
// that data and reports its idle memory before any traffic.
//
// It is built only with the soak tag, so it is never part of make test:
//
//	make memory N=10000      (go test -tags soak; E2E_MEMORY=N)
//	make memory N=10000 LIMIT=67108864   (memory_limit; E2E_MEMORY_LIMIT)
func TestMemoryPerOpenIncident(t *testing.T) {
	n := envInt(t, "E2E_MEMORY", 10000)
	idle := 40 * time.Second // past the store's 10 s cache expiry and a sweep
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
	rss0, heap0 := memory(t, b, addr)

	base := fixture(t, "webhook.firing.single.json")
	start := time.Now()
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
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	eventually(t, 10*time.Minute, fmt.Sprintf("%d open incidents", n), func() bool { return openIncidents(t, addr) >= n })
	took := time.Since(start)
	time.Sleep(idle)
	rss1, heap1 := memory(t, b, addr)
	du := dirSize(t, data)
	t.Logf("%d incidents opened in %s (%.0f/s)", n, took.Round(time.Millisecond), float64(n)/took.Seconds())
	t.Logf("idle before: RSS %s, Go heap in use %s", mib(rss0), mib(heap0))
	t.Logf("idle with %d open: RSS %s, Go heap in use %s; on disk %s", n, mib(rss1), mib(heap1), mib(du))
	t.Logf("per open incident: RSS %d B, Go heap %d B, disk %d B", (rss1-rss0)/uint64(n), (heap1-heap0)/uint64(n), du/uint64(n))

	_ = b.cmd.Process.Signal(os.Interrupt)
	_ = b.cmd.Wait()
	again := startBot(t, env...)
	waitReady(t, addr)
	time.Sleep(idle)
	rss2, heap2 := memory(t, again, addr)
	t.Logf("restarted on that data, idle: RSS %s, Go heap in use %s", mib(rss2), mib(heap2))
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
