package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/internal/testenv"
	"github.com/incidentbot/incidentbot/notify/console"
	"github.com/incidentbot/incidentbot/runbooks"
)

// TestAuditTellsTheStory: an incident whose step disable-feature is
// requested by Ada, refused to nobody, approved by Bob and run against a
// real redis-server; `incidentbot audit --incident` prints the whole
// story, each remediation record with who, the plan and its hash.
func TestAuditTellsTheStory(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	rd := testenv.StartRedis(t)
	bcfg := bus.DefaultConfig()
	bcfg.DataDir = dir
	b, err := bus.Open(ctx, bcfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
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
	cat := app.Catalog{Set: set, DefaultChannel: "#incidents"}
	steps := app.Steps{Catalog: cat}
	con := console.New(&syncBuffer{})
	eng, err := engine.New(engine.DefaultConfig(), engine.Deps{Catalog: cat, Decoders: app.Decoders(),
		Incidents: kvs[engine.BucketIncidents], IDs: kvs[engine.BucketIDs], Deliveries: kvs[engine.BucketDeliveries],
		Chat: con, Pager: con, Publisher: b, Scheduler: b, Audit: b,
		Runs: kvs[engine.BucketRuns], Runner: app.StepRunner{Steps: steps}, ActionEnv: actions.Env{Redis: rd.Client},
		NewID: func() string { return "INC-A0D1" }})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, c := range eng.Consumers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = b.Consume(runCtx, c.Config, c.Handler)
		}()
	}
	now := time.Now().UTC()
	if _, err := b.Publish(ctx, amEvent(t, "webhook.firing.single.json", now, time.Time{})); err != nil {
		t.Fatal(err)
	}
	waitRec := func(what string, cond func(*engine.Record) bool) *engine.Record {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if r, err := eng.Get(ctx, "INC-A0D1"); err == nil && cond(r) {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	rec := waitRec("opened", func(*engine.Record) bool { return true })
	_, plan, err := steps.Resolve(ctx, rec, "disable-feature")
	if err != nil {
		t.Fatal(err)
	}
	sender := command.NewSender(b, eng)
	for _, c := range []command.Command{
		{Verb: input.Request, By: input.Actor{ID: "U0ADA", Name: "Ada", Via: "slack"}, RequestID: "r1"},
		{Verb: input.Approve, By: input.Actor{ID: "U0BOB", Name: "Bob", Via: "slack"}, As: "@solana-oncall", RequestID: "a1"},
	} {
		c.Incident, c.Step, c.Hash, c.Text, c.At = "INC-A0D1", "disable-feature", plan.Hash, plan.Text, time.Now()
		if _, err := sender.Send(ctx, c); err != nil {
			t.Fatal(err)
		}
		if c.Verb == input.Request { // vote on a request the card shows
			waitRec("the request", func(r *engine.Record) bool { return r.Steps["disable-feature"] != nil })
		}
	}
	waitRec("the result", func(r *engine.Record) bool {
		q := r.Steps["disable-feature"]
		return q != nil && q.Run != nil && q.Run.Result == engine.RunVerified
	})
	if v := rd.Client.Get(ctx, "feature:enable_escrow").Val(); v != "false" {
		t.Fatalf("feature:enable_escrow = %q", v)
	}
	// The step can be undone: its revert step, planned from the record
	// through the app's catalog, requested and approved, restores the
	// flag as it was (missing).
	rec = waitRec("the result", func(*engine.Record) bool { return true })
	pol, rplan, err := steps.Resolve(ctx, rec, "revert-disable-feature")
	if err != nil {
		t.Fatal(err)
	}
	if pol.Title != "Revert: Disable the affected feature" || !strings.Contains(rplan.Text, "restore redis feature:enable_escrow as it was before disable-feature ran at") {
		t.Fatalf("revert policy %+v, plan %+v", pol, rplan)
	}
	for _, c := range []command.Command{
		{Verb: input.Request, By: input.Actor{ID: "U0ADA", Name: "Ada", Via: "slack"}, RequestID: "r2"},
		{Verb: input.Approve, By: input.Actor{ID: "U0BOB", Name: "Bob", Via: "slack"}, As: "@solana-oncall", RequestID: "a2"},
	} {
		c.Incident, c.Step, c.Hash, c.Text, c.At = "INC-A0D1", "revert-disable-feature", rplan.Hash, rplan.Text, time.Now()
		if _, err := sender.Send(ctx, c); err != nil {
			t.Fatal(err)
		}
		if c.Verb == input.Request {
			waitRec("the revert request", func(r *engine.Record) bool { return r.Steps["revert-disable-feature"] != nil })
		}
	}
	waitRec("the revert", func(r *engine.Record) bool {
		q := r.Steps["revert-disable-feature"]
		return q != nil && q.Run != nil && q.Run.Result == engine.RunReverted
	})
	if n, err := rd.Client.Exists(ctx, "feature:enable_escrow").Result(); err != nil || n != 0 {
		t.Fatalf("feature:enable_escrow still exists after the revert (%d, %v)", n, err)
	}
	time.Sleep(200 * time.Millisecond) // the last audit records
	cancel()
	wg.Wait()
	b.Close()

	var out, errb bytes.Buffer
	if err := run(ctx, []string{"audit", "--data-dir", dir, "--incident", "a0d1"}, nil, &out, &errb, nil); err != nil {
		t.Fatalf("audit: %v\n%s", err, errb.String())
	}
	story := out.String()
	short := plan.Hash[:12]
	for _, want := range []string{
		"incident.opened",
		"remediation.requested    INC-A0D1     Ada (slack) — Ada (slack) requested disable-feature: redis: SET feature:enable_escrow false",
		"hash=\"" + plan.Hash + "\"",
		"remediation.approved     INC-A0D1     Bob (slack) — Bob (slack) approved disable-feature (plan " + short + "): approved by Bob (slack), ready to run",
		"remediation.ran          INC-A0D1     incidentbot — disable-feature: redis: SET feature:enable_escrow false",
		"remediation.started",
		"remediation.verified     INC-A0D1     incidentbot (incidentbot) — ✅ disable-feature ran and is verified: SET feature:enable_escrow false (was missing); verified",
		"result=\"verified\"",
		"remediation.revert_started INC-A0D1     incidentbot — revert-disable-feature: restore redis feature:enable_escrow",
		"remediation.reverted     INC-A0D1     incidentbot (incidentbot) — ↩️ revert-disable-feature: restored redis feature:enable_escrow as it was before the run: {\"missing\":true}",
	} {
		if !strings.Contains(story, want) {
			t.Errorf("audit misses %q:\n%s", want, story)
		}
	}
	if strings.Index(story, "remediation.requested") > strings.Index(story, "remediation.approved") ||
		strings.Index(story, "remediation.approved") > strings.Index(story, "remediation.ran") {
		t.Errorf("out of order:\n%s", story)
	}
	out.Reset()
	if err := run(ctx, []string{"audit", "--data-dir", dir, "--json", "--since", "1h"}, nil, &out, &errb, nil); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var r bus.AuditRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("--json line %q: %v", line, err)
		}
		if strings.HasPrefix(r.Kind, "remediation.") && r.Attrs["hash"] == plan.Hash {
			n++
		}
	}
	if n < 4 {
		t.Errorf("%d remediation records with the hash in --json, want at least 4:\n%s", n, out.String())
	}
}
