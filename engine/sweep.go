package engine

import (
	"context"
	"time"

	"github.com/incidentbot/incidentbot/notify"
)

// Sweep runs until ctx is done. Every interval it refreshes the
// open-incidents gauge and reconciles incidents whose deliveries are behind
// their state — for example after an event was given up on while Slack was
// down — so what people see always catches up.
func (e *Engine) Sweep(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		e.SweepOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SweepOnce is one pass of Sweep.
func (e *Engine) SweepOnce(ctx context.Context) {
	recs, err := e.Incidents(ctx)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("sweep: list incidents", "err", err)
		}
		return
	}
	open := map[notify.Severity]float64{notify.SeverityCritical: 0, notify.SeverityWarning: 0, notify.SeverityInfo: 0}
	for key, r := range recs {
		if r.Status != notify.StatusResolved {
			open[r.Severity]++
		}
		// Leave recent changes to the event that made them; sweep what
		// has been behind for longer than a claim lasts.
		if behind(r, e.now(), e.cfg.ClaimTimeout) && e.now().Sub(r.UpdatedAt) >= e.cfg.ClaimTimeout {
			if err := e.reconcile(ctx, key); err != nil {
				e.log.Warn("sweep: reconcile", "incident", r.ID, "err", err)
			}
		}
	}
	for sev, n := range open {
		e.m.open.WithLabelValues(string(sev)).Set(n)
	}
}

// behind reports whether deliveries lag the record. A fresh claim is left
// to its owner.
func behind(r *Record, now time.Time, claim time.Duration) bool {
	if r.Slack.Failed == "" {
		if r.Slack.TS == "" {
			return r.Slack.PostingSince.IsZero() || now.Sub(r.Slack.PostingSince) >= claim
		}
		if r.Slack.CardVersion < r.Version || r.Slack.RepliedSeq < lastSeq(r) {
			return true
		}
	}
	if r.Page.Failed == "" {
		if r.Status == notify.StatusResolved && r.Page.State == notify.PageTrigger {
			return true
		}
	}
	return false
}
