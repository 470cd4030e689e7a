package e2e

import (
	"sync"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/internal/testenv"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
)

// TestOneSinkDownDoesNotDelayTheOther shows that an outage of Slack does
// not hold back PagerDuty, and the reverse. The built bot runs with default
// settings (it is not built with -race, so its delays are the product's
// even under `go test -race`); one sink goes down (answering 500, or
// hanging until the client gives up), a burst of distinct critical alerts
// arrives, and the sink stays down for the outage. Every alert's delivery
// to the other sink must arrive while the outage lasts; the delay from the
// webhook's 200 to the page (or the card) is logged as median, 90th
// percentile and max (issue 7 wants pages within a second). Once the sink
// is back, every alert gets exactly one card and one trigger, and the time
// the recovered sink took to catch up is logged.
//
// Each outage has its own bot. The bursts are sent one after the other,
// each once the previous bot's deliveries to its healthy sink are all in,
// so that no two bursts compete for the CPU. Each sink stays down for the
// outage from its burst and until all four bursts are measured; then the
// four bots catch up together.
//
// Settings, from the environment: E2E_SINK_OUTAGE (default 10s; issue 7
// measures 40s) and E2E_SINK_ALERTS (default 100). `make sink-outage
// OUTAGE=40s` runs the long version.
func TestOneSinkDownDoesNotDelayTheOther(t *testing.T) {
	if testing.Short() {
		t.Skip("four sink outages of 10s; about 30s")
	}
	outage := envDuration(t, "E2E_SINK_OUTAGE", 10*time.Second)
	bodies := criticalAlerts(t, envInt(t, "E2E_SINK_ALERTS", 100))
	if _, err := buildBot(); err != nil {
		t.Fatalf("build incidentbot: %v", err)
	}
	type sinks struct {
		slack *slacktestutil.Server
		pd    *testenv.PagerDuty
	}
	slackDown := func(f slacktestutil.Failure) func(sinks) func() {
		return func(s sinks) func() { s.slack.Down(f); return s.slack.Up }
	}
	pagerDown := func(f testenv.PagerDutyFailure) func(sinks) func() {
		return func(s sinks) func() { s.pd.Down(f); return s.pd.Up }
	}
	cases := []struct {
		name  string
		down  func(sinks) func() // starts the outage, returns its end
		pages bool               // the pager is the sink that stays up
	}{
		{"slack answers 500", slackDown(slacktestutil.Failure{Status: 500}), true},
		{"slack hangs", slackDown(slacktestutil.Failure{Hang: true}), true},
		{"pagerduty answers 500", pagerDown(testenv.PagerDutyFailure{Status: 500}), false},
		{"pagerduty hangs", pagerDown(testenv.PagerDutyFailure{Hang: true}), false},
	}
	var wg, measured sync.WaitGroup
	measured.Add(len(cases))
	turn := make(chan struct{}, 1) // held by the outage being measured
	for _, tc := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(tc.name, func(t *testing.T) {
				done := sync.OnceFunc(measured.Done)
				defer done()
				turn <- struct{}{}
				release := sync.OnceFunc(func() { <-turn })
				defer release()
				s := sinks{slacktestutil.Start(t), testenv.StartPagerDuty(t)}
				env, addr, natsAddr := sinkBot(t, s.slack, s.pd)
				startBot(t, env...)
				waitReady(t, addr)
				up := tc.down(s)
				downAt := measureOutage(t, addr, s.slack, s.pd, bodies, outage, tc.pages)
				release()
				done()
				measured.Wait()
				time.Sleep(time.Until(downAt.Add(outage)))
				up()
				catchUp(t, natsAddr, s.slack, s.pd, len(bodies))
			})
		}()
	}
	wg.Wait()
}

// measureOutage sends the burst to the bot at addr with a sink down and
// waits until the sink that stayed up got every alert (pages when pages is
// set, else cards), or until outage has passed, when it fails for each
// alert missing. It returns when the outage began.
func measureOutage(t *testing.T, addr string, slackSrv *slacktestutil.Server, pd *testenv.PagerDuty, bodies [][]byte, outage time.Duration, pages bool) time.Time {
	t.Helper()
	downAt := time.Now()
	answered := sendAll(addr, bodies)
	what := "card"
	if pages {
		what = "page"
	}
	delivered := func() map[int]time.Time {
		if pages {
			_, _, got, _ := triggersByAlert(pd)
			return got
		}
		_, got, _ := cardsByAlert(slackSrv)
		return got
	}
	got := delivered()
	for len(got) < len(bodies) && time.Since(downAt) < outage {
		time.Sleep(20 * time.Millisecond)
		got = delivered()
	}
	var delays []time.Duration
	for i, at := range answered {
		if at.IsZero() {
			t.Fatalf("%s: webhook not answered 200", alertService(i))
		}
		g, ok := got[i]
		if !ok {
			t.Errorf("%s: no %s during the %s outage", alertService(i), what, outage)
			continue
		}
		delays = append(delays, g.Sub(at))
	}
	t.Logf("%d %ss while the other sink was down; webhook 200 to %s: median %s, p90 %s, max %s", len(delays), what, what,
		percentile(delays, 0.5).Round(time.Millisecond), percentile(delays, 0.9).Round(time.Millisecond),
		percentile(delays, 1).Round(time.Millisecond))
	return downAt
}

// catchUp waits until the bot delivered every alert to both sinks once the
// outage is over and has no work left, and checks that each alert got
// exactly one card and one trigger.
func catchUp(t *testing.T, natsAddr string, slackSrv *slacktestutil.Server, pd *testenv.PagerDuty, n int) {
	t.Helper()
	start := time.Now()
	eventually(t, 90*time.Second, "every card and page after the outage", func() bool {
		c, _, _ := cardsByAlert(slackSrv)
		p, _, _, _ := triggersByAlert(pd)
		return len(c) == n && len(p) == n
	})
	caughtUp := time.Since(start)
	if !waitQuiet(t, natsAddr, 60*time.Second) {
		t.Errorf("the bot still had work 60s after catching up")
	}
	cardN, _, _ := cardsByAlert(slackSrv)
	pageN, _, _, _ := triggersByAlert(pd)
	for i := range n {
		if cardN[i] != 1 || pageN[i] != 1 {
			t.Errorf("%s: %d cards, %d triggers; want 1 and 1", alertService(i), cardN[i], pageN[i])
		}
	}
	t.Logf("the recovered sink caught up %s after the outage ended", caughtUp.Round(100*time.Millisecond))
}
