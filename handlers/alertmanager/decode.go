package alertmanager

import (
	"fmt"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/input"
)

// EventType is the type of the event the receiver publishes: one
// Alertmanager notification, its body as the event's data.
const EventType = "alertmanager.notification"

// Decoder turns a published notification into one signal input per alert.
// It lives beside the receiver so the engine needs no knowledge of
// Alertmanager's payload.
func Decoder(ev bus.Event) ([]input.Input, error) {
	m, err := Decode(ev.Data)
	if err != nil {
		return nil, bus.Poison(err)
	}
	sigs := m.Signals()
	out := make([]input.Input, len(sigs))
	for i, s := range sigs {
		out[i] = input.Input{Kind: input.Signal, ID: fmt.Sprintf("%s/%d", ev.ID, i), At: ev.Time, Signal: s, Truncated: int(m.TruncatedAlerts)}
	}
	return out, nil
}
