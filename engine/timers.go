package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/input"
)

// Escalation timers are JetStream message schedules (see bus.Schedule):
// durable in the timers stream, so they survive restarts, and consumed
// once through the engine's durable timer consumer, so three replicas
// escalate once. Each incident has one schedule key; arming again replaces
// the schedule, and the record's token fences whatever fires late.

// TimerEventType is the type of a fired escalation timer's event.
const TimerEventType = "engine.escalation_due"

type timerData struct {
	Incident string `json:"incident"`
	Token    string `json:"token"`
	Level    int    `json:"level"`
}

func timerKey(r *Record) string { return "esc." + strings.TrimPrefix(r.Key, "inc.") }

// armTimer makes the schedule match the record: armed for DueAt with the
// record's token, or cancelled.
func (e *Engine) armTimer(ctx context.Context, r *Record) error {
	key := timerKey(r)
	if r.Escalation.Token == "" {
		if err := e.timers.CancelSchedule(ctx, key); err != nil {
			return fmt.Errorf("cancel escalation timer of %s: %w", r.ID, err)
		}
		return nil
	}
	data, _ := json.Marshal(timerData{Incident: r.ID, Token: r.Escalation.Token, Level: r.Escalation.Next})
	ev := bus.Event{ID: "timer." + r.Escalation.Token, Source: "engine", Type: TimerEventType,
		Time: r.Escalation.DueAt, Subject: r.GroupKey, Data: data}
	if err := e.timers.Schedule(ctx, key, r.Escalation.DueAt, ev); err != nil {
		return fmt.Errorf("arm escalation timer of %s: %w", r.ID, err)
	}
	return nil
}

// TimerDecoder decodes a fired escalation timer.
func TimerDecoder(ev bus.Event) ([]input.Input, error) {
	var d timerData
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		return nil, bus.Poison(fmt.Errorf("decode escalation timer: %w", err))
	}
	return []input.Input{{Kind: input.EscalationDue, ID: ev.ID, At: ev.Time, Incident: d.Incident, Token: d.Token, Actor: input.Bot}}, nil
}
