package engine

import (
	"context"
	"fmt"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/input"
)

// Automatic steps. A runbook step with `automatic: true` runs without a
// person: when an incident opens or reopens, the pure apply lists the
// runbook's automatic steps on the record as due (Record.AutoDue), and
// the engine requests each as the bot, for the plan as the action
// reconciler's StepRunner resolves it now. The request is an input like
// a person's, so it is subject to the step's cooldown, is approved at once
// (automatic), and runs through the action reconciler: once (its action
// key), never while frozen, and under the circuit breaker. Its input id is
// derived from the incident, its opening and the step, and applying it
// takes the step off the due list, so a redelivery, a second replica or a
// restart requests it once per opening. A refusal (cooling down, frozen,
// no plan) is said in the thread and not tried again in that opening.

// AutoStepper is implemented by runbooks with automatic steps.
type AutoStepper interface {
	// AutomaticSteps lists the ids of the steps marked automatic.
	AutomaticSteps() []string
}

// requestAutomatic requests the first automatic step due on rec; applying
// it follows up with the next one. Without the runs bucket or a runner
// nothing runs, so nothing is requested.
func (e *Engine) requestAutomatic(ctx context.Context, rec *Record) error {
	if len(rec.AutoDue) == 0 || !rec.Open() || e.runs == nil || e.runner == nil {
		return nil
	}
	step := rec.AutoDue[0]
	in := input.Input{Kind: input.Request, ID: fmt.Sprintf("auto.%s.%d.%s", rec.ID, rec.Reopened, step), At: e.now(),
		Incident: rec.ID, Actor: input.Bot, Step: step}
	f, err := e.Frozen(ctx)
	if err != nil {
		return fmt.Errorf("read the freeze before the automatic step %s of %s: %w", step, rec.ID, err)
	}
	if f.On {
		in.Text = f.String()
	} else if plan, _, err := e.runner.Resolve(ctx, rec, step); err != nil {
		in.Text = "could not resolve its plan: " + err.Error()
	} else {
		in.Hash, in.Text = plan.Hash, plan.Text
	}
	ev := bus.Event{ID: in.ID, Source: "engine", Type: "engine.auto_request", Time: in.At, Subject: rec.GroupKey}
	return e.applyOne(ctx, in, ev, e.log.With("event", ev.ID))
}
