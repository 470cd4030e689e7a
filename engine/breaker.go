package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/incidentbot/incidentbot/bus"
)

// The circuit breaker of a runbook. Failed, verify_failed and reverted
// runs of any of its steps, across incidents and replicas, are kept in
// one key of the remediation_runs bucket, breaker.<runbook>, updated with
// compare-and-set; each run counts once (by its action key). While
// Failures of them fall within Window the breaker is open: the action
// reconciler voids the runbook's approved steps with the reason, requests
// are refused, and the card says so. Revert steps are never refused: they
// restore.

type breakerFailure struct {
	Key      string    `json:"key"`
	At       time.Time `json:"at"`
	Incident string    `json:"incident"`
	Step     string    `json:"step"`
	Result   string    `json:"result"`
}

type breakerState struct {
	Failures []breakerFailure `json:"failures"`
}

func breakerKey(runbook string) string { return "breaker." + runbook }

func (e *Engine) breakerPolicy(runbook string) BreakerPolicy {
	p := DefaultBreaker
	if rb, ok := e.catalog.Get(runbook); ok {
		if g, ok := rb.(Guarded); ok {
			p = g.Breaker()
		}
	}
	if p.Failures <= 0 {
		p.Failures = DefaultBreaker.Failures
	}
	if p.Window <= 0 {
		p.Window = DefaultBreaker.Window
	}
	return p
}

// within keeps the failures inside the window ending at now, oldest first.
func (s breakerState) within(now time.Time, window time.Duration) []breakerFailure {
	var out []breakerFailure
	for _, f := range s.Failures {
		if now.Sub(f.At) < window {
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b breakerFailure) int { return a.At.Compare(b.At) })
	return out
}

func breakerText(runbook string, in []breakerFailure, p BreakerPolicy) string {
	if len(in) < p.Failures {
		return ""
	}
	closes := in[len(in)-p.Failures].At.Add(p.Window)
	return fmt.Sprintf("circuit breaker open: %d failed runs of runbook %s since %s; closes at %s",
		len(in), runbook, in[0].At.UTC().Format("15:04 UTC"), closes.UTC().Format("15:04 UTC"))
}

// BreakerOpen says why runbook's breaker is open, or "" when it is closed.
func (e *Engine) BreakerOpen(ctx context.Context, runbook string) (string, error) {
	if e.runs == nil || runbook == "" {
		return "", nil
	}
	ent, err := e.runs.Get(ctx, breakerKey(runbook))
	if errors.Is(err, bus.ErrKeyNotFound) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("read the breaker of %s: %w", runbook, err)
	}
	var s breakerState
	if err := json.Unmarshal(ent.Value, &s); err != nil {
		return "", fmt.Errorf("breaker of %s: %w", runbook, err)
	}
	p := e.breakerPolicy(runbook)
	return breakerText(runbook, s.within(e.now(), p.Window), p), nil
}

// breakerFailure counts the run of key against the runbook's breaker
// (once, however often it is called) and audits the breaker opening.
func (e *Engine) breakerFailure(ctx context.Context, rec *Record, key, step, result string) error {
	if e.runs == nil {
		return nil
	}
	p := e.breakerPolicy(rec.Runbook)
	bkey := breakerKey(rec.Runbook)
	for range 20 {
		var s breakerState
		var rev uint64
		ent, err := e.runs.Get(ctx, bkey)
		switch {
		case errors.Is(err, bus.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("read the breaker of %s: %w", rec.Runbook, err)
		default:
			rev = ent.Revision
			if err := json.Unmarshal(ent.Value, &s); err != nil {
				return bus.Poison(fmt.Errorf("breaker of %s: %w", rec.Runbook, err))
			}
		}
		if slices.ContainsFunc(s.Failures, func(f breakerFailure) bool { return f.Key == key }) {
			return nil
		}
		now := e.now()
		wasOpen := len(s.within(now, p.Window)) >= p.Failures
		// Keep what the window holds, and a bound on the rest.
		s.Failures = append(s.within(now, p.Window), breakerFailure{Key: key, At: now, Incident: rec.ID, Step: step, Result: result})
		if n := len(s.Failures); n > 100 {
			s.Failures = s.Failures[n-100:]
		}
		val, _ := json.Marshal(s)
		if rev == 0 {
			_, err = e.runs.Create(ctx, bkey, val)
		} else {
			_, err = e.runs.Update(ctx, bkey, val, rev)
		}
		if errors.Is(err, bus.ErrKeyExists) || errors.Is(err, bus.ErrRevisionMismatch) {
			continue
		} else if err != nil {
			return fmt.Errorf("count a failure against the breaker of %s: %w", rec.Runbook, err)
		}
		if why := breakerText(rec.Runbook, s.within(now, p.Window), p); why != "" && !wasOpen {
			e.log.Warn("circuit breaker open", "runbook", rec.Runbook, "why", why)
			e.auditf(ctx, bus.AuditRecord{Kind: "remediation.breaker_open", Incident: rec.ID, Detail: why,
				Attrs: map[string]string{"runbook": rec.Runbook, "step": step, "result": result}})
		}
		return nil
	}
	return fmt.Errorf("count a failure against the breaker of %s: too many concurrent changes", rec.Runbook)
}
