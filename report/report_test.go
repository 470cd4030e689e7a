package report_test

import (
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/report"
	"github.com/incidentbot/incidentbot/signal"
)

var t0 = time.Date(2025, 8, 13, 14, 0, 0, 0, time.UTC)

func durp(d time.Duration) *time.Duration { return &d }

func TestSummaryMedianAndP90(t *testing.T) {
	// TTAs 1..10 minutes over ten incidents, TTRs 10, 20, ... 100 minutes
	// for the first nine; the tenth is open and never acknowledged.
	var reps []report.Incident
	for i := 1; i <= 10; i++ {
		r := report.Incident{Runbook: "rpc-down", Severity: notify.SeverityCritical}
		if i%3 == 0 {
			r.Runbook, r.Severity = "high-latency", notify.SeverityWarning
		}
		if i < 10 {
			r.TTA = durp(time.Duration(i) * time.Minute)
			r.TTR = durp(time.Duration(10*i) * time.Minute)
		}
		reps = append(reps, r)
	}
	s := report.Summarize(t0, reps)
	// TTA over 1..9 minutes: median 5m (the middle), p90 9m (nearest
	// rank: ceil(0.9 × 9) = 9th). TTR over 10..90m: median 50m, p90 90m.
	if s.Count != 10 || s.ByRunbook["rpc-down"] != 7 || s.ByRunbook["high-latency"] != 3 || s.BySeverity["critical"] != 7 {
		t.Fatalf("counts %+v", s)
	}
	if s.TTA != (report.Stats{N: 9, Median: 5 * time.Minute, P90: 9 * time.Minute}) {
		t.Fatalf("TTA %+v", s.TTA)
	}
	if s.TTR != (report.Stats{N: 9, Median: 50 * time.Minute, P90: 90 * time.Minute}) {
		t.Fatalf("TTR %+v", s.TTR)
	}
	md := s.Markdown()
	for _, want := range []string{"## Incidents since 2025-08-13 14:00 UTC: 10", "- rpc-down: 7\n- high-latency: 3", "- critical: 7",
		"- TTA: median 5m, p90 9m (over 9 acknowledged; 1 never acknowledged)", "- TTR: median 50m, p90 1h30m (over 9 resolved; 1 still open)"} {
		if !strings.Contains(md, want) {
			t.Errorf("summary lacks %q:\n%s", want, md)
		}
	}
	// An even count: the median is the mean of the two middle values;
	// p90 of 4 values is the 4th (ceil 3.6).
	even := report.Summarize(t0, []report.Incident{{TTR: durp(time.Minute)}, {TTR: durp(2 * time.Minute)}, {TTR: durp(4 * time.Minute)}, {TTR: durp(40 * time.Minute)}})
	if even.TTR != (report.Stats{N: 4, Median: 3 * time.Minute, P90: 40 * time.Minute}) {
		t.Fatalf("even TTR %+v", even.TTR)
	}
	if md := report.Summarize(t0, nil).Markdown(); !strings.Contains(md, ": 0") {
		t.Fatalf("empty summary %q", md)
	}
}

func TestBuildFromRecord(t *testing.T) {
	ada := input.Actor{ID: "U0ADA", Name: "Ada", Via: "slack"}
	rec := &engine.Record{ID: "INC-1", Runbook: "high-error-rate", Source: "alertmanager", Severity: notify.SeverityCritical,
		Status: notify.StatusResolved, StartedAt: t0, ResolvedAt: t0.Add(20 * time.Minute),
		Alerts: map[string]*engine.AlertState{"f": {Fingerprint: "f", Status: signal.Resolved, StartsAt: t0,
			Labels: map[string]string{"alertname": "HighErrorRate"}, Annotations: map[string]string{"summary": "5xx on api"}}},
		FirstAck: &engine.Mark{By: ada, At: t0.Add(3 * time.Minute)},
		Timeline: []notify.Update{
			{Seq: 1, Kind: "opened", Text: "Incident opened: HighErrorRate", At: t0.Add(5 * time.Second)},
			{Seq: 2, Kind: "escalated", Text: "No acknowledgement after 2m: escalating to L2", At: t0.Add(2 * time.Minute)},
			{Seq: 3, Kind: "acknowledged", Text: "Acknowledged by Ada (slack)", At: t0.Add(3 * time.Minute)},
			{Seq: 4, Kind: "resolved", Text: "Resolved after 20m.", At: t0.Add(20 * time.Minute)},
			{Seq: 5, Kind: engine.UpdateReport, Text: "Incident report", At: t0.Add(20 * time.Minute)},
		}}
	rep := report.Build(rec, map[string]*engine.Delivery{
		engine.SinkChat:  {Channel: "#critical", PostedAt: t0.Add(6 * time.Second)},
		engine.SinkPager: {PagedAt: t0.Add(7 * time.Second)},
	})
	if *rep.TTA != 3*time.Minute || *rep.TTR != 20*time.Minute || rep.Escalations != 1 || rep.AckedBy != "Ada (slack)" {
		t.Fatalf("report %+v", rep)
	}
	md := rep.Markdown()
	want := []string{
		"## Incident report INC-1: HighErrorRate: 5xx on api",
		"- TTA: 3m (first acknowledged by Ada (slack))",
		"- TTR: 20m",
		"- Escalations: 1",
		"- 2025-08-13 14:00:00 · fired · first alert fired: HighErrorRate (alertmanager)",
		"- 14:00:05 · opened",
		"- 14:00:06 · posted · card posted in #critical",
		"- 14:00:07 · paged · PagerDuty paged (dedup key INC-1)",
		"- 14:02:00 · escalated",
		"- 14:03:00 · acknowledged · Acknowledged by Ada (slack)",
		"- 14:20:00 · resolved",
	}
	last := -1
	for _, w := range want {
		i := strings.Index(md, w)
		if i < 0 || i < last {
			t.Fatalf("report lacks %q in order:\n%s", w, md)
		}
		last = i
	}
	if strings.Contains(md, "Incident report\n") || strings.Contains(md, "· report ·") {
		t.Fatalf("the report's own timeline entry is listed:\n%s", md)
	}
	// Acknowledged only after it resolved: no TTA.
	rec.FirstAck.At = t0.Add(time.Hour)
	if rep := report.Build(rec, nil); rep.TTA != nil {
		t.Fatalf("TTA of an ack after resolution: %v", *rep.TTA)
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0s", 30 * time.Second: "30s", 3 * time.Minute: "3m", time.Hour: "1h",
		90 * time.Minute: "1h30m", time.Hour + 5*time.Second: "1h0m5s", 26 * time.Hour: "26h"} {
		if got := report.Duration(d); got != want {
			t.Errorf("Duration(%s) = %q, want %q", d, got, want)
		}
	}
}
