//go:build soak

package e2e

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/handlers/alertmanager"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
)

// TestSoakLatency is a soak measurement, not a check: it runs the bot in
// process against the Slack and PagerDuty test servers, which answer at
// once, with the per-channel pacing off (slack.channel_rate: 0, as
// serveInProcess sets), and reports
//
//   - webhook → Slack card latency (p50, p99, max) at a steady 250 and
//     1,000 alerts/s, each alert its own critical incident (card + page),
//     from the moment its webhook was due to be sent (an open loop: a
//     slow answer delays no later send) to the moment its card reached
//     the Slack server;
//   - the most new incidents per second: N alerts sent as fast as 64
//     clients can, until the last card is posted.
//
// The sender runs on the same machine as the bot; the load average is
// logged with each figure. Built only with the soak tag, never part of
// make test:
//
//	make soak-latency   (SOAK_SECONDS=10 per rate, SOAK_MAX=5000)
func TestSoakLatency(t *testing.T) {
	secs := envInt(t, "E2E_SOAK_SECONDS", 10)
	for _, rate := range []int{250, 1000} {
		t.Run(fmt.Sprintf("rate=%d", rate), func(t *testing.T) {
			bot := serveInProcess(t, slog.LevelError, nil)
			addr := bot.srv.Addr()
			warm(t, bot.slack, addr)
			n := rate * secs
			bodies := latencyAlerts(t, n)
			load0 := loadavg()
			start := time.Now().Add(50 * time.Millisecond)
			due := make([]time.Time, n)
			for i := range due {
				due[i] = start.Add(time.Duration(i) * time.Second / time.Duration(rate))
			}
			send(t, addr, bodies, due, 256)
			posted := waitCards(t, bot.slack, n, 2*time.Minute)
			lat := make([]time.Duration, n)
			for i := range n {
				lat[i] = posted[i].Sub(due[i])
			}
			slices.Sort(lat)
			t.Logf("%d alerts/s for %ds (%d incidents): webhook → Slack card p50 %s, p99 %s, max %s; load average %s → %s",
				rate, secs, n, ms(lat[n/2]), ms(lat[n*99/100]), ms(lat[n-1]), load0, loadavg())
		})
	}
	t.Run("max", func(t *testing.T) {
		n := envInt(t, "E2E_SOAK_MAX", 5000)
		bot := serveInProcess(t, slog.LevelError, nil)
		addr := bot.srv.Addr()
		warm(t, bot.slack, addr)
		bodies := latencyAlerts(t, n)
		load0 := loadavg()
		start := time.Now()
		due := make([]time.Time, n) // all due at once: as fast as the clients go
		for i := range due {
			due[i] = start
		}
		accepted := send(t, addr, bodies, due, 64)
		posted := waitCards(t, bot.slack, n, 5*time.Minute)
		last := slices.MaxFunc(posted, func(a, b time.Time) int { return a.Compare(b) })
		took := last.Sub(start)
		t.Logf("%d new incidents as fast as possible: all webhooks answered in %s (%.0f/s), all cards posted in %s (%.0f incidents/s); load average %s → %s",
			n, accepted.Sub(start).Round(time.Millisecond), float64(n)/accepted.Sub(start).Seconds(),
			took.Round(time.Millisecond), float64(n)/took.Seconds(), load0, loadavg())
	})
}

// warm opens one incident and waits for its card, so that the streams,
// consumers and connections exist before the clock starts.
func warm(t *testing.T, s *slacktestutil.Server, addr string) {
	t.Helper()
	mustDeliver(t, addr, fixture(t, "webhook.firing.single.json"))
	eventually(t, time.Minute, "the warm-up card", func() bool { return len(cards(s)) >= 1 })
}

// latencyAlerts builds n critical notifications, each its own group and
// incident, alert i with service latencyService(i).
func latencyAlerts(t *testing.T, n int) [][]byte {
	t.Helper()
	base := fixture(t, "webhook.firing.single.json")
	out := make([][]byte, n)
	for i := range n {
		out[i] = alertAs(t, base, latencyService(i), 0x1a70000000+i)
	}
	return out
}

func latencyService(i int) string { return fmt.Sprintf("lat-%07d", i) }

var latencyRE = regexp.MustCompile(`lat-(\d{7})\b`)

// send posts body i at due[i] (or as soon as one of c clients is free)
// and fails the test unless each is answered 200; it returns when the
// last was answered.
func send(t *testing.T, addr string, bodies [][]byte, due []time.Time, c int) time.Time {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	work := make(chan int, len(bodies))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed error
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				time.Sleep(time.Until(due[i]))
				req, _ := http.NewRequest(http.MethodPost, "http://"+addr+alertmanager.Path, bytes.NewReader(bodies[i]))
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := client.Do(req)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("alert %d: status %d", i, resp.StatusCode)
					}
				}
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
				}
			}
		}()
	}
	for i := range bodies {
		work <- i
	}
	close(work)
	wg.Wait()
	if failed != nil {
		t.Fatal(failed)
	}
	return time.Now()
}

// waitCards waits until alerts 0..n-1 each have a card and returns when
// each card reached the Slack server (its ts).
func waitCards(t *testing.T, s *slacktestutil.Server, n int, timeout time.Duration) []time.Time {
	t.Helper()
	posted := make([]time.Time, n)
	found, seen := 0, 0
	deadline := time.Now().Add(timeout)
	for found < n {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: %d of %d cards", timeout, found, n)
		}
		time.Sleep(200 * time.Millisecond)
		posts := s.Posts()
		for _, m := range posts[seen:] {
			if m.ThreadTS != "" {
				continue
			}
			sm := latencyRE.FindStringSubmatch(m.Text + string(m.Blocks))
			if sm == nil {
				continue
			}
			i, _ := strconv.Atoi(sm[1])
			if i < n && posted[i].IsZero() {
				posted[i] = slacktestutil.TSTime(m.TS)
				found++
			}
		}
		seen = len(posts)
	}
	return posted
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// loadavg is the 1-minute load average of the machine.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}
