package engine_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
)

// summarize renders what the simulator saw of one incident in one line
// per fact, times relative to start.
func summarize(inc engine.SimIncident, start time.Time) string {
	rel := func(t time.Time) string { return t.Sub(start).String() }
	var b strings.Builder
	r := inc.Record
	fmt.Fprintf(&b, "%s %s %s %s in %s\n", r.ID, r.Runbook, r.Severity, r.Status, inc.Channel)
	for _, p := range inc.Pages {
		fmt.Fprintf(&b, "page %s at %s\n", p.Action, rel(p.At))
	}
	for _, e := range inc.Escalations {
		fmt.Fprintf(&b, "escalated %s at %s\n", e.Level.Name, rel(e.At))
	}
	for _, c := range inc.Chat {
		fmt.Fprintf(&b, "chat %s %s at %s\n", c.Op, c.Update.Kind, rel(c.At))
	}
	return b.String()
}

// TestSimulatorRunsTheEngine: the simulator drives the engine's own
// decoders, apply, timers and reconcilers on a fake clock: escalation
// levels are called at their due times, an ack stops them and an unack
// resumes them with the same gap, the pager follows, and a duplicate
// notification changes nothing.
func TestSimulatorRunsTheEngine(t *testing.T) {
	ctx := context.Background()
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	sim, err := engine.NewSimulator(engine.DefaultConfig(), shippedCatalog(t), app.Decoders(), start)
	if err != nil {
		t.Fatal(err)
	}
	at := func(d time.Duration) time.Time { return start.Add(d) }
	step := func(d time.Duration, f func() error) {
		t.Helper()
		if err := sim.Advance(ctx, at(d)); err != nil {
			t.Fatal(err)
		}
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	send := command.NewSender(sim, sim)
	cmd := func(verb input.Kind, d time.Duration) func() error {
		return func() error {
			_, err := send.Send(ctx, command.Command{Verb: verb, Incident: "inc-0001", By: input.Actor{Name: "Ada", Via: "slack"},
				RequestID: fmt.Sprint(verb, d), At: at(d)})
			return err
		}
	}
	firing := rpcDown(t, "primary", at(-2*time.Minute), time.Time{})
	step(0, func() error { return sim.Deliver(ctx, firing) })
	step(time.Minute, func() error { return sim.Deliver(ctx, firing) }) // a duplicate
	step(40*time.Minute, cmd(input.Ack, 40*time.Minute))
	step(2*time.Hour, cmd(input.Unack, 2*time.Hour))
	step(3*time.Hour, func() error { return sim.Deliver(ctx, rpcDown(t, "primary", at(-2*time.Minute), at(3*time.Hour))) })
	if err := sim.Advance(ctx, at(5*time.Hour)); err != nil {
		t.Fatal(err)
	}

	incs := sim.Incidents()
	if len(incs) != 1 {
		t.Fatalf("%d incidents, want 1", len(incs))
	}
	got := summarize(incs[0], start)
	want := `INC-0001 rpc-endpoint-down critical resolved in #solana-dapps-alerts
page trigger at 0s
page acknowledge at 40m0s
page resolve at 3h0m0s
escalated L1 (On-Call) at 0s
escalated L2 (Senior Engineer) at 30m0s
escalated L3 (Architect) at 2h30m0s
chat post  at 0s
chat update  at 30m0s
chat reply escalated at 30m0s
chat update  at 40m0s
chat reply acknowledged at 40m0s
chat update  at 2h0m0s
chat reply unacknowledged at 2h0m0s
chat update  at 2h30m0s
chat reply escalated at 2h30m0s
chat update  at 3h0m0s
chat reply resolved at 3h0m0s
`
	if got != want {
		t.Errorf("simulation:\n%s\nwant:\n%s", got, want)
	}
	if c := incs[0].Card; c.Status != notify.StatusResolved || c.EscalationState != "stopped: resolved" || len(c.Remediation) == 0 {
		t.Errorf("card as last edited: status %s, escalation %q, %d steps", c.Status, c.EscalationState, len(c.Remediation))
	}
	if _, _, ok := incs[0].NextEscalation(); ok {
		t.Error("a resolved incident has an escalation armed")
	}
	// A command for an incident that does not exist is refused before it
	// is sent, as in serve.
	if _, err := send.Send(ctx, command.Command{Verb: input.Ack, Incident: "INC-9999", By: input.Actor{Name: "Ada", Via: "slack"}, RequestID: "x"}); err == nil {
		t.Error("ack of an unknown incident accepted")
	}
}
