package engine_test

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/engine"
)

var stormTotal = regexp.MustCompile(`Alert storm (?:over )?in #storm · (\d+) incidents`)

// BenchmarkStormVisibility500 measures how long 500 new warnings in one
// channel take to be visible in Slack (each on its own card, or on the
// storm card, listed or counted), against the Slack test server paced at
// Slack's one call a second per channel (slack.channel_rate 1, burst 3),
// with storm mode off and on (threshold 20 in 1m). It reports the
// seconds until the last one is visible (and until the storm card is),
// and the Slack calls made. Run it
// with -run '^$' -bench StormVisibility -benchtime 1x: without storms it
// takes minutes.
func BenchmarkStormVisibility500(b *testing.B) {
	const n = 500
	for _, tt := range []struct {
		name      string
		threshold int
	}{{"storm=on", 20}, {"storm=off", 0}} {
		b.Run(tt.name, func(b *testing.B) {
			for range b.N {
				e := newStormEnv(b, 1, 1, engine.StormConfig{Threshold: tt.threshold, Window: time.Minute})
				start := time.Now()
				for i := range n {
					e.publish(b, stormAlert(b, i, "warning", false))
				}
				visible := func() int {
					cards, storms := e.slackCards(b)
					seen := len(cards)
					if len(storms) > 0 {
						for _, refs := range storms {
							if len(refs) != 1 {
								b.Fatalf("storm card posted %d times", len(refs))
							}
						}
						text, _ := e.stormCard(b)
						if m := stormTotal.FindStringSubmatch(text); m != nil {
							k, _ := strconv.Atoi(m[1])
							seen += k
						}
					}
					return seen
				}
				deadline := time.Now().Add(15 * time.Minute)
				var stormAt time.Duration
				for visible() < n {
					if _, storms := e.slackCards(b); stormAt == 0 && len(storms) > 0 {
						stormAt = time.Since(start)
					}
					if time.Now().After(deadline) {
						b.Fatalf("%d of %d visible after 15 minutes", visible(), n)
					}
					time.Sleep(100 * time.Millisecond)
				}
				took := time.Since(start)
				b.ReportMetric(took.Seconds(), "s-to-all-visible")
				b.ReportMetric(float64(len(e.slack.Posts())), "posts")
				if stormAt > 0 {
					b.ReportMetric(stormAt.Seconds(), "s-to-storm-card")
				}
				b.ReportMetric(float64(len(e.slack.Updates())), "updates")
				b.Logf("%s: %d incidents visible in Slack after %v; %d posts, %d edits", tt.name, n, took.Round(100*time.Millisecond),
					len(e.slack.Posts()), len(e.slack.Updates()))
			}
		})
	}
}
