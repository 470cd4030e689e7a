package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/input"
)

// The kill switch. `/incident freeze [reason]` stops every remediation
// run on every replica at once: it is one key in the engine's
// remediation_runs bucket, read by the action reconciler before it creates
// an action key and by the Slack handler before it takes a request or a
// vote, and by every card render. Each open incident also gets a freeze
// input, so its card is edited and its thread says so.

const freezeKey = "freeze"

// Freeze is the kill switch's state.
type Freeze struct {
	On     bool        `json:"on"`
	By     input.Actor `json:"by"`
	At     time.Time   `json:"at"`
	Reason string      `json:"reason,omitempty"`
}

// String is the card's line while on, "" while off.
func (f Freeze) String() string {
	if !f.On {
		return ""
	}
	s := "Remediation frozen by " + f.By.String() + " since " + f.At.UTC().Format("15:04 UTC")
	if f.Reason != "" {
		s += ": " + f.Reason
	}
	return s + " (/incident unfreeze)"
}

// Frozen reads the kill switch: off when never set or without the bucket.
func (e *Engine) Frozen(ctx context.Context) (Freeze, error) {
	if e.runs == nil {
		return Freeze{}, nil
	}
	ent, err := e.runs.Get(ctx, freezeKey)
	if errors.Is(err, bus.ErrKeyNotFound) {
		return Freeze{}, nil
	}
	if err != nil {
		return Freeze{}, err
	}
	var f Freeze
	if err := json.Unmarshal(ent.Value, &f); err != nil {
		return Freeze{}, fmt.Errorf("freeze key: %w", err)
	}
	return f, nil
}

// SetFreeze turns the kill switch on or off, audits it, and tells every
// open incident (its card and thread).
func (e *Engine) SetFreeze(ctx context.Context, on bool, by input.Actor, reason string) error {
	if e.runs == nil {
		return errors.New("remediation is not configured on this bot")
	}
	f := Freeze{On: on, By: by, At: e.now(), Reason: reason}
	val, _ := json.Marshal(f)
	if _, err := e.runs.Put(ctx, freezeKey, val); err != nil {
		return fmt.Errorf("set the freeze: %w", err)
	}
	kind := input.Unfreeze
	if on {
		kind = input.Freeze
	}
	e.auditf(ctx, bus.AuditRecord{Kind: "remediation." + string(kind), Actor: by.String(), Detail: reason, Attrs: actorAttrs(nil, by)})
	recs, err := e.Incidents(ctx)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if !r.Open() {
			continue
		}
		in := input.Input{Kind: kind, ID: fmt.Sprintf("%s.%s.%d", kind, r.ID, f.At.UnixNano()), At: f.At, Incident: r.ID, Actor: by, Text: reason}
		ev := bus.Event{ID: in.ID, Source: "engine", Type: "engine." + string(kind), Time: in.At, Subject: r.GroupKey}
		if err := e.applyOne(ctx, in, ev, e.log.With("event", ev.ID)); err != nil {
			return err
		}
	}
	return nil
}

// freezeNote records a freeze or unfreeze on an incident's timeline
// (apply): its card is edited and its thread says so.
func freezeNote(r *Record, in input.Input, env applyEnv) Result {
	text := "🧊 Remediation frozen by " + in.Actor.String()
	if in.Kind == input.Unfreeze {
		text = "Remediation unfrozen by " + in.Actor.String()
	}
	if in.Text != "" {
		text += ": " + in.Text
	}
	r.addUpdate(env.Now, string(in.Kind), text)
	return Result{change: frozen}
}
