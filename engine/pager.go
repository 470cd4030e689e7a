package engine

import (
	"context"
	"errors"
	"maps"
	"strconv"
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
		rb := e.runbook(rec)
		slot, want, send := nextPage(rec, del, rb.Route(rec.Severity), rb.Escalation())
		if want == "" {
			e.observeLag(SinkPager, d)
			return nil
		}
		lease, rev, err := e.acquire(ctx, SinkPager, rec.ID, slot.op(want), del, rev)
		if err != nil {
			if isConflict(err) {
				continue
			}
			return err
		}
		if !send {
			// The pager itself told us (an ack or resolve made in
			// PagerDuty): record it without echoing it back.
			if err := e.settleDelivery(ctx, SinkPager, rec, del, rev, lease, func(d *Delivery) { slot.record(d, want, "", time.Time{}) }); err != nil {
				return err
			}
			continue
		}
		_ = d.InProgress()
		routing := slot.routing
		if slot.triggeredOn != "" && want != notify.PageTrigger {
			routing = slot.triggeredOn // resolve where it was triggered
		}
		p := notify.Page{Action: want, DedupKey: slot.dedup, RoutingKeyRef: routing, Incident: e.render(ctx, rec, rb)}
		if err := e.call(ctx, SinkPager, string(want), rec, func(ctx context.Context) error { return e.pager.Page(ctx, p) }); err != nil {
			return e.failed(ctx, SinkPager, rec, del, rev, lease, err)
		}
		if err := e.settleDelivery(ctx, SinkPager, rec, del, rev, lease, func(d *Delivery) { slot.record(d, want, routing, e.now()) }); err != nil {
			return err
		}
		e.auditf(ctx, bus.AuditRecord{Kind: "notify.pager." + string(want), Incident: rec.ID, Attrs: slot.attrs()})
	}
	return bus.Later(errLeased, time.Second)
}

// pageSlot is one PagerDuty incident the bot keeps in line with an
// incident: the incident's own page (level -1), or the page of an
// escalation level that pages on its own, under its own dedup key.
type pageSlot struct {
	level       int
	dedup       string
	routing     string
	triggeredOn string
}

func (s pageSlot) op(want notify.PageAction) string {
	if s.level < 0 {
		return string(want)
	}
	return "level" + strconv.Itoa(s.level) + ":" + string(want)
}

// record notes in d that want was delivered (on routing, at now when it
// was sent; a zero now records what the pager did itself).
func (s pageSlot) record(d *Delivery, want notify.PageAction, routing string, now time.Time) {
	if s.level >= 0 {
		d.Levels = maps.Clone(d.Levels) // d is a copy; its map is not
		if d.Levels == nil {
			d.Levels = map[string]LevelPage{}
		}
		lp := d.Levels[strconv.Itoa(s.level)]
		lp.State = want
		if want == notify.PageTrigger && routing != "" {
			lp.RoutingKey = routing
		}
		d.Levels[strconv.Itoa(s.level)] = lp
		return
	}
	d.State = want
	if want == notify.PageTrigger && !now.IsZero() {
		d.RoutingKey = routing
		if d.PagedAt.IsZero() {
			d.PagedAt = now
		}
	}
}

func (s pageSlot) attrs() map[string]string {
	if s.level < 0 {
		return nil
	}
	return map[string]string{"level": strconv.Itoa(s.level), "dedup_key": s.dedup}
}

// LevelPage is what the pager was sent for one escalation level.
type LevelPage struct {
	State      notify.PageAction `json:"state,omitempty"`
	RoutingKey string            `json:"routing_key,omitempty"`
}

// nextPage is the page the incident needs next: its own page first, then
// each paging escalation level's, in the order the levels were called.
func nextPage(rec *Record, del *Delivery, route Route, levels []notify.EscalationLevel) (pageSlot, notify.PageAction, bool) {
	if want, send := pageAction(rec, del, route); want != "" {
		return pageSlot{level: -1, dedup: rec.DedupKey(), routing: route.PagerDutyKey, triggeredOn: del.RoutingKey}, want, send
	}
	for _, i := range rec.Escalation.Paged {
		lp := del.Levels[strconv.Itoa(i)]
		slot := pageSlot{level: i, dedup: rec.DedupKey() + "/level-" + strconv.Itoa(i), triggeredOn: lp.RoutingKey}
		if i < len(levels) {
			slot.routing = levels[i].PagerDutyKeyRef
		}
		paged := lp.State == notify.PageTrigger || lp.State == notify.PageAcknowledge
		switch {
		case !rec.Open() && paged:
			return slot, notify.PageResolve, true
		case rec.Open() && !paged:
			return slot, notify.PageTrigger, true
		case rec.Status == notify.StatusAcknowledged && lp.State == notify.PageTrigger:
			return slot, notify.PageAcknowledge, true
		}
	}
	return pageSlot{}, "", false
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
