package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/handlers/alertmanager"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/notify/console"
	"github.com/incidentbot/incidentbot/report"
	"github.com/incidentbot/incidentbot/runbooks"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// amEvent is the shipped single-alert fixture with its alert starting at
// start (and ending at end when resolved), as the receiver publishes it.
func amEvent(t *testing.T, name string, start, end time.Time) bus.Event {
	t.Helper()
	body, err := os.ReadFile("../../handlers/alertmanager/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	a := m["alerts"].([]any)[0].(map[string]any)
	a["startsAt"] = start.Format(time.RFC3339Nano)
	if !end.IsZero() {
		a["endsAt"] = end.Format(time.RFC3339Nano)
	}
	body, _ = json.Marshal(m)
	msg, err := alertmanager.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	return bus.Event{ID: msg.EventID(), Source: "alertmanager", Type: alertmanager.EventType, Time: start, Subject: msg.GroupKey, Data: body}
}

// recordIncidents runs an engine on an embedded bus in dir with a fake
// clock and drives incidents through it: for each, it fires at start,
// acknowledges at start+tta (when tta > 0) and resolves at start+ttr.
// The first is also escalated by hand a minute in. It returns their ids
// and what the console sink printed.
func recordIncidents(t *testing.T, dir string, starts []time.Time, ttas, ttrs []time.Duration) ([]string, string) {
	t.Helper()
	ctx := context.Background()
	bcfg := bus.DefaultConfig()
	bcfg.DataDir = dir
	b, err := bus.Open(ctx, bcfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, s := range engine.Streams {
		if err := b.EnsureStream(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	kvs := map[string]bus.KV{}
	for _, s := range engine.Buckets {
		if kvs[s.Name], err = b.EnsureBucket(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	set, _, err := runbooks.LoadDefault("", actions.Default())
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{t: starts[0]}
	var out syncBuffer
	con := console.New(&out)
	eng, err := engine.New(engine.DefaultConfig(), engine.Deps{Catalog: app.Catalog{Set: set, DefaultChannel: "#incidents"}, Decoders: app.Decoders(),
		Incidents: kvs[engine.BucketIncidents], IDs: kvs[engine.BucketIDs], Deliveries: kvs[engine.BucketDeliveries],
		Archive: kvs[engine.BucketArchive], Chat: con, Pager: con, Publisher: b, Scheduler: b, Audit: b, Now: clk.Now,
		Reports: report.New(engine.NewReader(kvs)),
		NewID:   func() string { return fmt.Sprintf("INC-%X", clk.Now().Unix()) }})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, c := range eng.Consumers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.Consume(runCtx, c.Config, c.Handler); err != nil && runCtx.Err() == nil {
				t.Errorf("consume %s: %v", c.Config.Durable, err)
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	sender := command.NewSender(b, eng)
	ada := input.Actor{ID: "U0ADA", Name: "Ada", Via: "slack"}
	waitFor := func(id, what string, cond func(*engine.Record) bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if r, err := eng.Get(ctx, id); err == nil && cond(r) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: timed out waiting until %s", id, what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	send := func(c command.Command) {
		t.Helper()
		if _, err := sender.Send(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for i, start := range starts {
		clk.Set(start)
		if _, err := b.Publish(ctx, amEvent(t, "webhook.firing.single.json", start, time.Time{})); err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("INC-%X", start.Unix())
		ids = append(ids, id)
		waitFor(id, "paged and posted", func(r *engine.Record) bool {
			chat, _ := eng.Delivery(ctx, engine.SinkChat, r)
			pager, _ := eng.Delivery(ctx, engine.SinkPager, r)
			return chat.TS != "" && pager.State == notify.PageTrigger
		})
		if i == 0 {
			clk.Set(start.Add(time.Minute))
			send(command.Command{Verb: input.Escalate, Incident: id, By: ada, RequestID: id + "-esc", At: clk.Now()})
			waitFor(id, "escalated", func(r *engine.Record) bool { return r.Escalation.Next == 2 })
		}
		if ttas[i] > 0 {
			clk.Set(start.Add(ttas[i]))
			send(command.Command{Verb: input.Ack, Incident: id, By: ada, RequestID: id + "-ack", At: clk.Now()})
			waitFor(id, "acknowledged", func(r *engine.Record) bool { return r.Status == notify.StatusAcknowledged })
		}
		clk.Set(start.Add(ttrs[i]))
		if _, err := b.Publish(ctx, amEvent(t, "webhook.resolved.single.json", start, start.Add(ttrs[i]))); err != nil {
			t.Fatal(err)
		}
		waitFor(id, "resolved, its report posted", func(r *engine.Record) bool {
			chat, _ := eng.Delivery(ctx, engine.SinkChat, r)
			return r.Status == notify.StatusResolved && chat.RepliedSeq == r.Timeline[len(r.Timeline)-1].Seq
		})
	}
	// Each report posted is audited, once, with when.
	trail, err := b.AuditTrail(ctx, 100000)
	if err != nil {
		t.Fatal(err)
	}
	posted := map[string]int{}
	for _, r := range trail {
		if r.Kind == "report.posted" && !r.Time.IsZero() {
			posted[r.Incident]++
		}
	}
	for _, id := range ids {
		if posted[id] != 1 {
			t.Fatalf("report.posted audited %d times for %s, want once", posted[id], id)
		}
	}
	return ids, out.String()
}

// TestReportOfARecordedIncident: an incident fired at T, escalated by hand
// at T+1m, acknowledged at T+3m and resolved at T+20m reports TTA 3m, TTR
// 20m and one escalation, with its timeline; the same report was posted
// in its thread when it resolved, and the resolution is audited.
func TestReportOfARecordedIncident(t *testing.T) {
	dir := t.TempDir()
	// The fake clock runs ahead of the real one, so the escalation timers
	// (real message schedules) never come due during the test.
	T := time.Now().UTC().Truncate(time.Second).Add(time.Hour)
	ids, console := recordIncidents(t, dir, []time.Time{T}, []time.Duration{3 * time.Minute}, []time.Duration{20 * time.Minute})
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"report", "--data-dir", dir, strings.ToLower(ids[0])}, nil, &out, &errb, nil); err != nil {
		t.Fatalf("report: %v\n%s", err, errb.String())
	}
	md := out.String()
	at := func(d time.Duration) string { return T.Add(d).Format("15:04:05") }
	want := []string{
		"## Incident report " + ids[0] + ": HighErrorRate: High 5xx error rate on api",
		"- Runbook: high-error-rate · Severity: critical · Status: resolved",
		"- TTA: 3m (first acknowledged by Ada (slack))",
		"- TTR: 20m",
		"- Escalations: 1",
		"### Timeline (UTC)",
		T.Format("2006-01-02") + " " + at(0) + " · fired · first alert fired: HighErrorRate (alertmanager)",
		"- " + at(0) + " · opened",
		"- " + at(0) + " · posted · card posted in #",
		"- " + at(0) + " · paged · PagerDuty paged (dedup key " + ids[0] + ")",
		"- " + at(time.Minute) + " · escalated · Ada (slack) escalated to L2",
		"- " + at(3*time.Minute) + " · acknowledged · Acknowledged by Ada (slack)",
		"- " + at(20*time.Minute) + " · resolved · Resolved after 20m.",
	}
	last := -1
	for _, w := range want {
		i := strings.Index(md, w)
		if i < 0 || i < last {
			t.Fatalf("report lacks %q (in this order):\n%s", w, md)
		}
		last = i
	}
	// Posted in the thread on resolution, once.
	if n := strings.Count(console, "## Incident report "+ids[0]); n != 1 {
		t.Fatalf("report posted %d times in the thread, want once:\n%s", n, console)
	}
	if !strings.Contains(console, "TTA: 3m") {
		t.Fatalf("the posted report lacks the TTA:\n%s", console)
	}
	// An unknown id says so.
	out.Reset()
	if err := run(context.Background(), []string{"report", "--data-dir", dir, "INC-NOPE"}, nil, &out, &errb, nil); err == nil || !strings.Contains(err.Error(), "no such incident") {
		t.Fatalf("unknown id: %v", err)
	}
}

// TestReportSummary: over four incidents the summary counts them and
// gives the median and p90 of TTA and TTR.
func TestReportSummary(t *testing.T) {
	dir := t.TempDir()
	T := time.Now().UTC().Truncate(time.Second).Add(time.Hour)
	starts := []time.Time{T, T.Add(2 * time.Hour), T.Add(4 * time.Hour), T.Add(6 * time.Hour)}
	// TTA 3m, 1m, none, 10m; TTR 20m, 10m, 30m, 1h. The reopen window
	// (1h) is shorter than the gaps, so each is an incident of its own.
	ids, _ := recordIncidents(t, dir, starts, []time.Duration{3 * time.Minute, time.Minute, 0, 10 * time.Minute},
		[]time.Duration{20 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour})
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"report", "--data-dir", dir, "--since", "7d"}, nil, &out, &errb, nil); err != nil {
		t.Fatalf("report --since: %v\n%s", err, errb.String())
	}
	md := out.String()
	// TTA over 1m, 3m, 10m: median 3m, p90 10m. TTR over 10m, 20m, 30m,
	// 1h: median 25m (mean of 20m and 30m), p90 1h.
	for _, w := range []string{": 4\n", "- high-error-rate: 4", "- critical: 4",
		"- TTA: median 3m, p90 10m (over 3 acknowledged; 1 never acknowledged)",
		"- TTR: median 25m, p90 1h (over 4 resolved)"} {
		if !strings.Contains(md, w) {
			t.Fatalf("summary lacks %q:\n%s", w, md)
		}
	}
	// The first incident's key moved on to later ones; it reads from the
	// archive.
	out.Reset()
	if err := run(context.Background(), []string{"report", "--data-dir", dir, ids[0]}, nil, &out, &errb, nil); err != nil || !strings.Contains(out.String(), "- TTA: 3m") {
		t.Fatalf("report of a superseded incident: %v\n%s", err, out.String())
	}
	if err := run(context.Background(), []string{"report", "--data-dir", dir, "--since", "soon"}, nil, &out, &errb, nil); exitCode(err) != 2 {
		t.Fatalf("--since soon: %v, want a usage error", err)
	}
}
