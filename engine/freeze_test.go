package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/input"
)

// TestFreezeCommands: freeze and unfreeze are commands on the bus with no
// incident; two replicas apply them once each, the later one given wins
// whatever order they arrive in, and the open incident is told.
func TestFreezeCommands(t *testing.T) {
	e := newRunEnv(t)
	e.replica(t)
	id := e.open(t)
	ada := input.Actor{ID: "U0ADA", Name: "ada", Via: "slack"}
	at := time.Now()
	send := func(verb input.Kind, reqID string, at time.Time) {
		t.Helper()
		if _, err := e.sender.Send(context.Background(), command.Command{Verb: verb, By: ada, Text: "bad deploy", RequestID: reqID, At: at}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.sender.Send(context.Background(), command.Command{Verb: input.Freeze, Incident: id, By: ada, RequestID: "x"}); err == nil {
		t.Fatal("a freeze addressed to an incident was sent")
	}
	send(input.Freeze, "f1", at)
	eventually(t, "frozen", func() bool { f, _ := e.eng.Frozen(context.Background()); return f.On })
	eventually(t, "the card", func() bool { return strings.Contains(e.lastCard().Freeze, "Remediation frozen by ada (slack)") })
	// An unfreeze given later is applied before a freeze given earlier.
	send(input.Unfreeze, "u1", at.Add(2*time.Second))
	eventually(t, "unfrozen", func() bool { f, _ := e.eng.Frozen(context.Background()); return !f.On })
	send(input.Freeze, "f2", at.Add(time.Second))
	eventually(t, "the stale freeze ignored", func() bool {
		all, err := e.bus.AuditTrail(context.Background(), 10000)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range all {
			if r.Kind == "input.ignored" && r.Detail == "freeze: a later freeze or unfreeze was applied" {
				return true
			}
		}
		return false
	})
	if f, _ := e.eng.Frozen(context.Background()); f.On {
		t.Fatalf("frozen after the later unfreeze: %+v", f)
	}
	if n, m := countAudit(t, e.bus, "remediation.freeze"), countAudit(t, e.bus, "remediation.unfreeze"); n != 1 || m != 1 {
		t.Fatalf("%d freezes and %d unfreezes audited, want 1 and 1", n, m)
	}
}
