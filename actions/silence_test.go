package actions

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/incidentbot/incidentbot/internal/testenv"
	"github.com/incidentbot/incidentbot/silence"
)

// amSilence is a silence as Alertmanager's own API v2 lists it.
type amSilence struct {
	ID        string                 `json:"id"`
	Status    struct{ State string } `json:"status"`
	Comment   string                 `json:"comment"`
	CreatedBy string                 `json:"createdBy"`
	Matchers  []struct {
		Name, Value      string
		IsRegex, IsEqual bool
	} `json:"matchers"`
}

func listSilences(t *testing.T, am *testenv.Alertmanager) []amSilence {
	t.Helper()
	resp, err := http.Get(am.URL + "/api/v2/silences")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []amSilence
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSilenceAlertmanager resolves, runs, verifies and reverts
// alertmanager.silence against a real Alertmanager: the silence it posts
// carries the rendered matchers (every operator), the comment and the bot
// as creator; Verify reads it back; Revert expires it.
func TestSilenceAlertmanager(t *testing.T) {
	am := testenv.StartAlertmanager(t, "http://127.0.0.1:9/unused", "unused-token")
	c, err := silence.New(silence.Config{URL: am.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	env := Env{Silences: c}
	r := loadRunner(t, "alertmanager.silence", `matchers:
  - alertname="{{ .Labels.alertname }}"
  - '{namespace="{{ .Labels.namespace }}", env!="dev", pod=~"api-.*", zone!~"eu-.*"}'
duration: 90m
comment: 'scaling {{ .Labels.namespace }}'
`)
	data := PlanData{Labels: map[string]string{"alertname": "HighLatency", "namespace": "solana-dapps"}}
	p, err := r.Resolve(ctx, env, data)
	if err != nil {
		t.Fatal(err)
	}
	wantText := `alertmanager: silence {alertname="HighLatency", namespace="solana-dapps", env!="dev", pod=~"api-.*", zone!~"eu-.*"} for 1h30m0s ("scaling solana-dapps")`
	if p.Text != wantText || p.Hash == "" {
		t.Fatalf("plan text %q, want %q (hash %q)", p.Text, wantText, p.Hash)
	}
	if p2, _ := r.Resolve(ctx, env, data); p2.Hash != p.Hash {
		t.Error("the same incident resolved to another hash")
	}
	if b, _ := r.Plan(ctx, data); b != p.Text {
		t.Errorf("dry-run plan %q differs from the resolved text %q", b, p.Text)
	}

	out, err := r.Run(ctx, env, p)
	if err != nil {
		t.Fatal(err)
	}
	var st silenceState
	if err := json.Unmarshal(out.After, &st); err != nil || st.ID == "" {
		t.Fatalf("outcome after %s: no silence id", out.After)
	}
	if !strings.Contains(out.Detail, st.ID) {
		t.Errorf("detail %q does not name silence %s", out.Detail, st.ID)
	}
	got := listSilences(t, am)
	if len(got) != 1 || got[0].ID != st.ID || got[0].Status.State != "active" || got[0].CreatedBy != SilenceCreatedBy ||
		got[0].Comment != "scaling solana-dapps" || len(got[0].Matchers) != 5 {
		t.Fatalf("silences in Alertmanager: %+v, want one active by %s with 5 matchers", got, SilenceCreatedBy)
	}
	ops := map[string]string{}
	for _, m := range got[0].Matchers {
		op := map[[2]bool]string{{true, false}: "=", {false, false}: "!=", {true, true}: "=~", {false, true}: "!~"}[[2]bool{m.IsEqual, m.IsRegex}]
		ops[m.Name] = op + m.Value
	}
	for name, want := range map[string]string{"alertname": "=HighLatency", "namespace": "=solana-dapps", "env": "!=dev", "pod": "=~api-.*", "zone": "!~eu-.*"} {
		if ops[name] != want {
			t.Errorf("matcher %s: %q, want %q", name, ops[name], want)
		}
	}
	if err := r.Verify(ctx, env, p, out); err != nil {
		t.Fatalf("verify: %v", err)
	}

	// A silence with other matchers under the recorded id fails the check.
	other, err := r.Resolve(ctx, env, PlanData{Labels: map[string]string{"alertname": "Other", "namespace": "solana-dapps"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(ctx, env, other, out); err == nil || !strings.Contains(err.Error(), "matches") {
		t.Errorf("verify against other matchers: %v, want a mismatch", err)
	}

	if err := r.Revert(ctx, env, p, out); err != nil {
		t.Fatal(err)
	}
	got = listSilences(t, am)
	if len(got) != 1 || got[0].Status.State != "expired" {
		t.Fatalf("after revert: %+v, want the silence expired", got)
	}
	if err := r.Verify(ctx, env, p, out); err == nil || errors.Is(err, ErrNotYet) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("verify after revert: %v, want expired", err)
	}
	// Reverting twice is not an error: the silence stays expired.
	if err := r.Revert(ctx, env, p, out); err != nil {
		t.Errorf("second revert: %v", err)
	}
}

// TestSilenceDryRun: without alertmanager.url the action resolves but
// runs as a dry run, changing nothing.
func TestSilenceDryRun(t *testing.T) {
	r := loadRunner(t, "alertmanager.silence", "matchers: ['alertname=\"X\"']\nduration: 1h\n")
	p, err := r.Resolve(context.Background(), Env{}, PlanData{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(context.Background(), Env{}, p); !errors.Is(err, ErrDryRun) || !strings.Contains(err.Error(), "alertmanager.url") {
		t.Errorf("run without alertmanager: %v, want a dry run naming alertmanager.url", err)
	}
	if !slices.Contains(Default().Names(), "alertmanager.silence") || !Runs(Silence) {
		t.Error("alertmanager.silence does not run")
	}
}
