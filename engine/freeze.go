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
// run on every replica at once. It is a command on the bus (it addresses
// no incident), applied by one replica to one key in the engine's
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
	// ID is the input (command) that set it, so a redelivery is known.
	ID string `json:"id,omitempty"`
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

// SetFreeze turns the kill switch on or off at once, as the freeze
// command does (people send that: command.Sender with verb freeze or
// unfreeze, applied by applyFreeze on whichever replica takes it).
func (e *Engine) SetFreeze(ctx context.Context, on bool, by input.Actor, reason string) error {
	if e.runs == nil {
		return errors.New("remediation is not configured on this bot")
	}
	kind := input.Unfreeze
	if on {
		kind = input.Freeze
	}
	now := e.now()
	in := input.Input{Kind: kind, ID: fmt.Sprintf("%s.%d", kind, now.UnixNano()), At: now, Actor: by, Text: reason}
	return e.applyFreeze(ctx, in, bus.Event{ID: in.ID, Source: "engine", Type: "engine." + string(kind), Time: now})
}

// applyFreeze applies a freeze or unfreeze command: it writes the freeze
// key (compare-and-set; the latest command by when it was given wins, so
// two arriving out of order end as given), audits it, and tells every
// open incident (its card and thread). A redelivered command writes and
// audits nothing again; its incidents' inputs are deduplicated by id.
func (e *Engine) applyFreeze(ctx context.Context, in input.Input, ev bus.Event) error {
	log := e.log.With("event", ev.ID, "kind", in.Kind)
	if e.runs == nil {
		log.Warn("freeze command dropped: remediation is not configured on this bot")
		e.auditf(ctx, bus.AuditRecord{Kind: "input.dropped", EventID: ev.ID, Actor: in.Actor.String(),
			Detail: string(in.Kind) + ": remediation is not configured on this bot", Attrs: actorAttrs(nil, in.Actor)})
		return nil
	}
	f := Freeze{On: in.Kind == input.Freeze, By: in.Actor, At: in.At, Reason: in.Text, ID: in.ID}
	val, _ := json.Marshal(f)
	fresh := true
	for attempt := 0; ; attempt++ {
		if attempt == 20 {
			return errors.New("set the freeze: too many concurrent changes")
		}
		ent, err := e.runs.Get(ctx, freezeKey)
		var cur Freeze
		switch {
		case errors.Is(err, bus.ErrKeyNotFound):
			ent = bus.Entry{}
		case err != nil:
			return fmt.Errorf("read the freeze: %w", err)
		default:
			if err := json.Unmarshal(ent.Value, &cur); err != nil {
				return bus.Poison(fmt.Errorf("freeze key: %w", err))
			}
		}
		if cur.ID == f.ID && f.ID != "" {
			fresh = false // applied before: redelivered
			break
		}
		if cur.At.After(f.At) {
			log.Info("freeze command changed nothing: a later one was applied", "by", in.Actor.String())
			e.auditf(ctx, bus.AuditRecord{Kind: "input.ignored", EventID: ev.ID, Actor: in.Actor.String(),
				Detail: string(in.Kind) + ": a later freeze or unfreeze was applied", Attrs: actorAttrs(nil, in.Actor)})
			return nil
		}
		if ent.Revision == 0 {
			_, err = e.runs.Create(ctx, freezeKey, val)
		} else {
			_, err = e.runs.Update(ctx, freezeKey, val, ent.Revision)
		}
		if errors.Is(err, bus.ErrRevisionMismatch) || errors.Is(err, bus.ErrKeyExists) {
			continue
		}
		if err != nil {
			return fmt.Errorf("set the freeze: %w", err)
		}
		break
	}
	if fresh {
		e.auditf(ctx, bus.AuditRecord{Kind: "remediation." + string(in.Kind), EventID: ev.ID, Actor: in.Actor.String(), Detail: in.Text,
			Attrs: actorAttrs(nil, in.Actor)})
	}
	recs, err := e.Incidents(ctx)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if !r.Open() {
			continue
		}
		note := input.Input{Kind: in.Kind, ID: in.ID + "." + r.ID, At: in.At, Incident: r.ID, Actor: in.Actor, Text: in.Text}
		nev := bus.Event{ID: note.ID, Source: "engine", Type: "engine." + string(in.Kind), Time: in.At, Subject: r.GroupKey}
		if err := e.applyOne(ctx, note, nev, log); err != nil {
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
