package engine

import (
	"context"
	"time"

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

// PreviewSignals groups and matches signals as the engine does and renders
// each resulting incident; unmatched lists signals no runbook takes.
func PreviewSignals(ctx context.Context, cat Catalog, sigs []signal.Signal, truncated int, now time.Time) (out []Preview, unmatched []signal.Signal) {
	e := &Engine{catalog: cat, cfg: DefaultConfig(), now: func() time.Time { return now }}
	batches, unmatched := e.group(sigs, truncated)
	for _, b := range batches {
		rec, ch := apply(nil, applyInput{
			GroupKey: b.groupKey, Runbook: b.runbook.Name(), Source: b.source, Signals: b.signals,
			Truncated: b.truncated, Now: now, ReopenWindow: e.cfg.ReopenWindow, Severity: b.runbook.Severity,
		})
		if ch == unchanged || rec == nil {
			continue
		}
		rec.ID = "INC-PREVIEW"
		view := e.render(ctx, rec, b.runbook)
		route := b.runbook.Route(rec.Severity)
		out = append(out, Preview{Incident: view, Route: route, Pages: route.Page && rec.Status != notify.StatusResolved})
	}
	return out, unmatched
}
