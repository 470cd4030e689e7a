package console_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/notify/console"
)

func incident() notify.Incident {
	t0 := time.Date(2025, 8, 13, 14, 2, 11, 0, time.UTC)
	return notify.Incident{
		ID: "INC-1", Title: "RPC down", Summary: "rpc-a is behind\nby 212 slots", Severity: notify.SeverityCritical,
		Status: notify.StatusFiring, Labels: map[string]string{"service": "api"}, StartedAt: t0,
		Alerts:          []notify.Alert{{Name: "SolanaRPCDown", Status: notify.StatusFiring, Summary: "behind"}},
		TruncatedAlerts: 2,
		Assessment: []notify.Step{{Text: "Check dashboard", Link: "https://grafana.example.com"},
			{Text: "Cause — RPC Endpoint Issues: timeouts\nCheck: solana cluster-version --url rpc-a"}},
		Remediation: []notify.Proposal{{Title: "Switch RPC", Action: "kubernetes.set_env", Plan: "set X=b", Approval: "one approver"}},
		Escalation:  []notify.EscalationLevel{{Name: "L1", Who: "@oncall"}},
		RunbookURL:  "https://runbooks.example.com/rpc",
	}
}

// syncBuffer is a strings.Builder safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestConsoleFlow(t *testing.T) {
	var out syncBuffer
	c := console.New(&out)
	c.Now = func() time.Time { return time.Date(2025, 8, 13, 14, 5, 0, 0, time.UTC) }
	ctx := t.Context()
	tag := notify.CardTag{IncidentID: "INC-1", Nonce: "n1"}
	ref, err := c.PostCard(ctx, "#incidents", incident(), tag)
	if err != nil || ref != (notify.CardRef{Channel: "#incidents", TS: "console-1"}) {
		t.Fatalf("ref %+v err %v", ref, err)
	}
	if got, found, err := c.FindCard(ctx, "#incidents", tag, time.Time{}); found || err != nil {
		t.Fatalf("FindCard = %+v, %v, %v; the console finds nothing", got, found, err)
	}
	inc := incident()
	inc.Status = notify.StatusResolved
	inc.ResolvedAt = inc.StartedAt.Add(42 * time.Minute)
	if err := c.UpdateCard(ctx, ref, inc); err != nil {
		t.Fatal(err)
	}
	if err := c.Reply(ctx, ref, inc, notify.Update{Kind: "resolved", Text: "all clear"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Page(ctx, notify.Page{Action: notify.PageTrigger, DedupKey: "dk", RoutingKeyRef: "payments", Incident: incident()}); err != nil {
		t.Fatal(err)
	}
	if err := c.Page(ctx, notify.Page{Action: notify.PageResolve, DedupKey: "dk"}); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{
		// Each card starts after a blank line with the time it was printed,
		// and ends with a rule and a blank line: apart from log lines.
		"\n┏━━ 2025-08-13 14:05:00 UTC ━━ card #incidents console-1 (new) ━",
		"\n┗━━━━━━━━━━", "━━━━━━━━━━\n\n",
		"🔴 INC-1 · RPC down", "FIRING · critical", "rpc-a is behind\n┃ by 212 slots",
		"Alertmanager left out 2 more", "1. Check dashboard <https://grafana.example.com>",
		// A step's lines render apart, under its number.
		"┃   2. Cause — RPC Endpoint Issues: timeouts\n┃      Check: solana cluster-version --url rpc-a\n",
		"Switch RPC [kubernetes.set_env]",
		"card #incidents console-1 (updated)", "RESOLVED", "resolved after 42m",
		"↳ 2025-08-13 14:05:00 UTC · reply to card #incidents console-1 · INC-1: [resolved] all clear",
		"\n☎  2025-08-13 14:05:00 UTC ━━ PAGE TRIGGER · dedup_key=dk\n   to the runbook's own PagerDuty service: routing key \"payments\" (pagerduty.routing_keys; key not shown)\n",
		"PAGE RESOLVE · dedup_key=dk\n   to the default PagerDuty service (pagerduty.routing_key)\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "R0UTINGKEYSECRET") {
		t.Errorf("routing key printed:\n%s", s)
	}
}

func TestConsoleConcurrent(t *testing.T) {
	var out syncBuffer
	c := console.New(&out)
	var wg sync.WaitGroup
	refs := make(chan notify.CardRef, 50)
	for range 50 {
		wg.Go(func() {
			ref, err := c.PostCard(t.Context(), "#c", incident(), notify.CardTag{IncidentID: "INC-1"})
			if err != nil {
				t.Error(err)
			}
			refs <- ref
		})
	}
	wg.Wait()
	close(refs)
	seen := map[string]bool{}
	for r := range refs {
		if seen[r.TS] {
			t.Errorf("duplicate ts %s", r.TS)
		}
		seen[r.TS] = true
	}
	if n := strings.Count(out.String(), "┗━"); n != 50 {
		t.Errorf("%d cards printed, want 50", n)
	}
	for i := 1; i <= 50; i++ {
		if !seen[fmt.Sprintf("console-%d", i)] {
			t.Errorf("console-%d missing", i)
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestConsoleWriteErrorIsPermanent(t *testing.T) {
	err := console.New(failWriter{}).Page(t.Context(), notify.Page{Action: notify.PageResolve, DedupKey: "k"})
	if err == nil || notify.IsRetryable(err) {
		t.Fatalf("err = %v", err)
	}
}

func TestConsoleCardSaysWhatJoined(t *testing.T) {
	inc := incident()
	inc.Joined = []string{"joined from RPCEndpointDown (Alertmanager, runbook rpc-endpoint-down)"}
	if card := console.Card(inc); !strings.Contains(card, "  ⇢ joined from RPCEndpointDown (Alertmanager, runbook rpc-endpoint-down)\n") {
		t.Errorf("card:\n%s", card)
	}
}
