package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/incidentbot/incidentbot/bus"
)

// load reads an incident; a missing one is (nil, 0, nil).
func (e *Engine) load(ctx context.Context, key string) (*Record, uint64, error) {
	ent, err := e.kv.Get(ctx, key)
	if errors.Is(err, bus.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("load incident %s: %w", key, err)
	}
	var r Record
	if err := json.Unmarshal(ent.Value, &r); err != nil {
		return nil, 0, fmt.Errorf("decode incident %s: %w", key, err)
	}
	if r.Alerts == nil {
		r.Alerts = map[string]*AlertState{}
	}
	return &r, ent.Revision, nil
}

// store writes an incident with compare-and-set: create when rev is 0,
// update at rev otherwise.
func (e *Engine) store(ctx context.Context, key string, r *Record, rev uint64) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode incident %s: %w", r.ID, err)
	}
	if rev == 0 {
		_, err = e.kv.Create(ctx, key, b)
	} else {
		_, err = e.kv.Update(ctx, key, b, rev)
	}
	if err != nil {
		return fmt.Errorf("store incident %s: %w", r.ID, err)
	}
	return nil
}

// Incidents lists every stored incident, for the CLI, the open-incidents
// gauge and the sweeper.
func (e *Engine) Incidents(ctx context.Context) (map[string]*Record, error) {
	keys, err := e.kv.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list incidents: %w", err)
	}
	out := make(map[string]*Record, len(keys))
	for _, k := range keys {
		r, _, err := e.load(ctx, k)
		if err != nil {
			return nil, err
		}
		if r != nil {
			out[k] = r
		}
	}
	return out, nil
}
