package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
	"github.com/incidentbot/incidentbot/secret"
	"github.com/incidentbot/incidentbot/silence"
)

// TestSilenceAndWebhookStepsRun: a runbook's alertmanager.silence and
// webhook steps, requested by Ada and approved by Bob, each run once
// through the engine's action reconciler and are verified: the silence
// against a real Alertmanager, the POST against an allowed httptest server.
func TestSilenceAndWebhookStepsRun(t *testing.T) {
	am := testenv.StartAlertmanager(t, "http://127.0.0.1:9/unused", "unused-token")
	var mu sync.Mutex
	var posts [][]byte
	var auth string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts, auth = append(posts, b), r.Header.Get("Authorization")
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()

	dir := t.TempDir()
	rbDir := filepath.Join(dir, "runbooks")
	if err := os.MkdirAll(rbDir, 0o700); err != nil {
		t.Fatal(err)
	}
	rb := `name: high-error-rate
title: High error rate on {{ .Labels.service }}
priority: 10
match:
  matchers: ['alertname="HighErrorRate"']
remediation:
  - id: silence
    title: Silence the error rate alert while we look
    action: alertmanager.silence
    params:
      matchers: ['alertname="HighErrorRate"', 'service="{{ .Labels.service }}"']
      duration: 30m
      comment: 'looking at {{ .Labels.service }}'
    approval: {approvers: [U0BOB]}
  - id: kick
    title: Ask the deploy service to restart
    action: webhook
    params:
      url: '` + hook.URL + `/deploy/{{ .Labels.service }}'
      body: {service: '{{ .Labels.service }}', action: restart}
      secret_headers: {Authorization: deploy-token}
    approval: {approvers: [U0BOB]}
`
	if err := os.WriteFile(filepath.Join(rbDir, "high-error-rate.yaml"), []byte(rb), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bcfg := bus.DefaultConfig()
	bcfg.DataDir = filepath.Join(dir, "data")
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
	set, _, err := runbooks.LoadDefault(rbDir, actions.Default())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := silence.New(silence.Config{URL: am.URL})
	if err != nil {
		t.Fatal(err)
	}
	wh, err := actions.NewWebhooks(actions.WebhookConfig{Allow: []string{hook.URL + "/deploy/"}, Secrets: map[string]secret.Secret{"deploy-token": "Bearer d3pl0y"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	env := actions.Env{Silences: sc, Webhooks: wh}
	cat := app.Catalog{Set: set, DefaultChannel: "#incidents"}
	steps := app.Steps{Catalog: cat, Env: env}
	con := console.New(&syncBuffer{})
	eng, err := engine.New(engine.DefaultConfig(), engine.Deps{Catalog: cat, Decoders: app.Decoders(),
		Incidents: kvs[engine.BucketIncidents], IDs: kvs[engine.BucketIDs], Deliveries: kvs[engine.BucketDeliveries],
		Chat: con, Pager: con, Publisher: b, Scheduler: b, Audit: b,
		Runs: kvs[engine.BucketRuns], Runner: app.StepRunner{Steps: steps}, ActionEnv: env,
		NewID: func() string { return "INC-5E1F" }})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for _, c := range eng.Consumers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = b.Consume(runCtx, c.Config, c.Handler)
		}()
	}
	if _, err := b.Publish(ctx, amEvent(t, "webhook.firing.single.json", time.Now().UTC(), time.Time{})); err != nil {
		t.Fatal(err)
	}
	waitRec := func(what string, cond func(*engine.Record) bool) *engine.Record {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if r, err := eng.Get(ctx, "INC-5E1F"); err == nil && cond(r) {
				return r
			}
			if time.Now().After(deadline) {
				r, _ := eng.Get(ctx, "INC-5E1F")
				j, _ := json.Marshal(r)
				t.Fatalf("timed out waiting until %s: %s", what, j)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	rec := waitRec("opened", func(*engine.Record) bool { return true })
	sender := command.NewSender(b, eng)
	for _, step := range []string{"silence", "kick"} {
		_, plan, err := steps.Resolve(ctx, rec, step)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []command.Command{
			{Verb: input.Request, By: input.Actor{ID: "U0ADA", Name: "Ada", Via: "slack"}, RequestID: "r-" + step},
			{Verb: input.Approve, By: input.Actor{ID: "U0BOB", Name: "Bob", Via: "slack"}, As: "U0BOB", RequestID: "a-" + step},
		} {
			c.Incident, c.Step, c.Hash, c.Text, c.At = "INC-5E1F", step, plan.Hash, plan.Text, time.Now()
			if _, err := sender.Send(ctx, c); err != nil {
				t.Fatal(err)
			}
			if c.Verb == input.Request {
				waitRec("the request of "+step, func(r *engine.Record) bool { return r.Steps[step] != nil })
			}
		}
		r := waitRec(step+" verified", func(r *engine.Record) bool {
			q := r.Steps[step]
			return q != nil && q.Run != nil && q.Run.Result != ""
		})
		if got := r.Steps[step].Run.Result; got != engine.RunVerified {
			t.Fatalf("%s: result %s (%s), want verified", step, got, r.Steps[step].Run.Detail)
		}
	}

	resp, err := http.Get(am.URL + "/api/v2/silences")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sils []struct {
		Status    struct{ State string } `json:"status"`
		CreatedBy string                 `json:"createdBy"`
		Comment   string                 `json:"comment"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&sils); err != nil {
		t.Fatal(err)
	}
	if len(sils) != 1 || sils[0].Status.State != "active" || sils[0].CreatedBy != actions.SilenceCreatedBy || sils[0].Comment != "looking at api" {
		t.Errorf("silences in Alertmanager: %+v, want one active by incidentbot", sils)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 1 || string(posts[0]) != `{"action":"restart","service":"api"}` || auth != "Bearer d3pl0y" {
		t.Errorf("webhook got %q (auth %q), want one POST of the rendered body with the secret header", posts, auth)
	}
}
