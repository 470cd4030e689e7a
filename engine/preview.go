package engine

import (
	"context"
	"time"

	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/signal"
)

// Preview is what the engine would do for a set of signals arriving on an
// empty state: the incident card it would post, where, and whether it
// would page. It has no side effects (incidentbot replay, runbook tests).
type Preview struct {
	Incident notify.Incident
	Route    Route
	// Pages is true when the incident would trigger a page.
	Pages bool
}

// PreviewInputs groups and matches signal inputs as the engine does and
// renders each resulting incident; unmatched lists signals no runbook
// takes.
func PreviewInputs(ctx context.Context, cat Catalog, ins []input.Input, now time.Time) (out []Preview, unmatched []signal.Signal) {
	e := &Engine{catalog: cat, cfg: DefaultConfig().withDefaults(), now: func() time.Time { return now }, newID: func() string { return "INC-PREVIEW" }}
	var sigs []input.Input
	for _, in := range ins {
		if in.Kind == input.Signal {
			sigs = append(sigs, in)
		}
	}
	batches, um := e.group(sigs)
	for _, in := range um {
		unmatched = append(unmatched, in.Signal)
	}
	for _, b := range batches {
		rec, res := applySignals(nil, b.inputs, e.env(b.key, b.runbook))
		if !res.Changed() || rec == nil {
			continue
		}
		view := e.render(ctx, rec, b.runbook)
		route := b.runbook.Route(rec.Severity)
		out = append(out, Preview{Incident: view, Route: route, Pages: route.Page && rec.Open()})
	}
	return out, unmatched
}
