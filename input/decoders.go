package input

import (
	"fmt"
	"slices"
	"strings"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/signal"
)

// Decoders maps event types to their decoders. It is built in one place
// (the app's wiring), so which sources feed the engine reads in one list.
type Decoders struct {
	byType   map[string]Decoder
	bySource map[string]Decoder
}

// NewDecoders returns an empty registry.
func NewDecoders() *Decoders {
	return &Decoders{byType: map[string]Decoder{}, bySource: map[string]Decoder{}}
}

// Type registers d for events of exactly this type
// ("alertmanager.notification"). It panics on a duplicate, which is a
// wiring bug caught by any test that builds the registry.
func (r *Decoders) Type(eventType string, d Decoder) *Decoders {
	if _, dup := r.byType[eventType]; dup {
		panic(fmt.Sprintf("input: decoder for event type %q registered twice", eventType))
	}
	r.byType[eventType] = d
	return r
}

// Source registers d for every event of a source that has no decoder for
// its exact type ("solana" takes "solana.rpc.unhealthy", …).
func (r *Decoders) Source(source string, d Decoder) *Decoders {
	if _, dup := r.bySource[source]; dup {
		panic(fmt.Sprintf("input: decoder for source %q registered twice", source))
	}
	r.bySource[source] = d
	return r
}

// Decode decodes ev with its registered decoder. An event nobody decodes
// is poison: retrying cannot help.
func (r *Decoders) Decode(ev bus.Event) ([]Input, error) {
	d, ok := r.byType[ev.Type]
	if !ok {
		d, ok = r.bySource[ev.Source]
	}
	if !ok {
		return nil, bus.Poison(fmt.Errorf("no decoder for event type %q (known: %s)", ev.Type, strings.Join(r.Known(), ", ")))
	}
	ins, err := d(ev)
	if err != nil {
		if !bus.IsPoison(err) {
			err = bus.Poison(err)
		}
		return nil, fmt.Errorf("decode %s %s: %w", ev.Type, ev.ID, err)
	}
	for i := range ins {
		if err := ins[i].Validate(); err != nil {
			return nil, bus.Poison(fmt.Errorf("decode %s %s: input %d: %w", ev.Type, ev.ID, i, err))
		}
	}
	return ins, nil
}

// Known lists the registered types and sources ("solana.*"), sorted.
func (r *Decoders) Known() []string {
	var out []string
	for t := range r.byType {
		out = append(out, t)
	}
	for s := range r.bySource {
		out = append(out, s+".*")
	}
	slices.Sort(out)
	return out
}

// SignalEvent decodes an event whose data is one signal.Signal, as the
// on-chain watchers publish them.
func SignalEvent(ev bus.Event) ([]Input, error) {
	s, err := signal.Decode(ev.Data)
	if err != nil {
		return nil, bus.Poison(err)
	}
	s.Source, s.Type = ev.Source, ev.Type
	return []Input{{Kind: Signal, ID: ev.ID, At: ev.Time, Signal: s}}, nil
}
