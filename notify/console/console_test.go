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
		Assessment:      []notify.Step{{Text: "Check dashboard", Link: "https://grafana.example.com"}},
		Remediation:     []notify.Proposal{{Title: "Switch RPC", Action: "kubernetes.set_env", Plan: "set X=b", Approval: "one approver"}},
		Escalation:      []notify.EscalationLevel{{Name: "L1", Who: "@oncall"}},
		RunbookURL:      "https://runbooks.example.com/rpc",
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
	if err := c.Page(ctx, notify.Page{Action: notify.PageTrigger, DedupKey: "dk", RoutingKey: "R0UTINGKEYSECRET", Incident: incident()}); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{
		"card #incidents console-1 (new)", "🔴 INC-1 · RPC down", "FIRING · critical", "rpc-a is behind\n┃ by 212 slots",
		"Alertmanager left out 2 more", "1. Check dashboard <https://grafana.example.com>", "Switch RPC [kubernetes.set_env]",
		"(updated)", "RESOLVED", "resolved after 42m", "↳ #incidents console-1 INC-1: [resolved] all clear",
		"PAGE TRIGGER dedup_key=dk routing_key=<page's own>",
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
