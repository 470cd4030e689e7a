package engine

import (
	"context"
	"errors"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/notify"
)

// HandlePager is the pager sink's job handler: it triggers a page for an
// open incident its runbook pages for, acknowledges it when someone acked
// outside the pager, and resolves it with the same dedup key. It never
// waits for the chat.
func (e *Engine) HandlePager(ctx context.Context, d *bus.Delivery) error {
	key, err := jobKey(d)
	if err != nil {
		return err
	}
	for range 16 {
		rec, _, err := e.load(ctx, key)
		if err != nil || rec == nil {
			return err
		}
		del, rev, err := e.loadDelivery(ctx, SinkPager, rec)
		if err != nil {
			return err
		}
		if del.Failed != "" {
			return nil
		}
		route := e.runbook(rec).Route(rec.Severity)
		want, send := pageAction(rec, del, route)
		if want == "" {
			e.observeLag(SinkPager, d)
			return nil
		}
		lease, rev, err := e.acquire(ctx, SinkPager, rec.ID, string(want), del, rev)
		if err != nil {
			if isConflict(err) {
				continue
			}
			return err
		}
		if !send {
			// The pager itself told us (an ack or resolve made in
			// PagerDuty): record it without echoing it back.
			if err := e.settleDelivery(ctx, SinkPager, rec, del, rev, lease, func(d *Delivery) { d.State = want }); err != nil {
				return err
			}
			continue
		}
		_ = d.InProgress()
		routing := route.PagerDutyKey
		if del.RoutingKey != "" && want != notify.PageTrigger {
			routing = del.RoutingKey // resolve where it was triggered
		}
		p := notify.Page{Action: want, DedupKey: rec.DedupKey(), RoutingKeyRef: routing, Incident: e.render(ctx, rec, e.runbook(rec))}
		if err := e.call(ctx, SinkPager, string(want), rec, func(ctx context.Context) error { return e.pager.Page(ctx, p) }); err != nil {
			return e.failed(ctx, SinkPager, rec, del, rev, lease, err)
		}
		if err := e.settleDelivery(ctx, SinkPager, rec, del, rev, lease, func(d *Delivery) {
			d.State = want
			if want == notify.PageTrigger {
				d.RoutingKey = routing
				if d.PagedAt.IsZero() {
					d.PagedAt = e.now()
				}
			}
		}); err != nil {
			return err
		}
		e.auditf(ctx, bus.AuditRecord{Kind: "notify.pager." + string(want), Incident: rec.ID})
	}
	return bus.Retry(errLeased, time.Second)
}

// pageAction is the page action the incident needs next, and whether it
// must be sent (false when the pager is where it happened).
func pageAction(rec *Record, del *Delivery, route Route) (notify.PageAction, bool) {
	paged := del.State == notify.PageTrigger || del.State == notify.PageAcknowledge
	switch {
	case !rec.Open() && paged:
		byPager := rec.ManualResolve != nil && rec.ManualResolve.By.Via == "pagerduty"
		return notify.PageResolve, !byPager
	case rec.Open() && route.Page && !paged:
		return notify.PageTrigger, true
	case rec.Status == notify.StatusAcknowledged && del.State == notify.PageTrigger:
		return notify.PageAcknowledge, rec.Ack.By.Via != "pagerduty"
	}
	return "", false
}

func isConflict(err error) bool {
	return errors.Is(err, bus.ErrRevisionMismatch) || errors.Is(err, bus.ErrKeyExists)
}

func retryAfter(err error, ceiling time.Duration) error {
	var ne *notify.Error
	if errors.As(err, &ne) && ne.RetryAfter > 0 {
		return bus.Retry(err, min(ne.RetryAfter, ceiling))
	}
	return bus.Retry(err, ceiling)
}
