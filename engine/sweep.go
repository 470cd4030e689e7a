package engine

import (
	"context"
	"time"

	"github.com/incidentbot/incidentbot/notify"
)

// Sweep runs until ctx is done. Every interval it refreshes the
// open-incidents gauge from the stored records (right after a restart too,
// and the same on every replica) and repairs what fell behind: an incident
// whose deliveries lag its state with no job left to bring them in line
// (for example a job that aged out) gets its jobs queued again. It stands
// in for nothing else: timers and deliveries run from their own streams.
func (e *Engine) Sweep(ctx context.Context) error {
	t := time.NewTicker(e.cfg.SweepInterval)
	defer t.Stop()
	for {
		e.SweepOnce(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// SweepOnce is one pass of Sweep. It reads the records one at a time and
// keeps none: its memory does not grow with the number of incidents.
func (e *Engine) SweepOnce(ctx context.Context) {
	keys, err := e.incidents.Keys(ctx)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("sweep: list incidents", "err", err)
		}
		return
	}
	open := map[notify.Severity]float64{notify.SeverityCritical: 0, notify.SeverityWarning: 0, notify.SeverityInfo: 0}
	current := make(map[string]bool, len(keys)) // ids with a record, for the archive's retention
	ret := e.retention()
	for _, key := range keys {
		r, _, err := e.load(ctx, key)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Warn("sweep: load incident", "key", key, "err", err)
			}
			return
		}
		if r == nil {
			continue
		}
		current[r.ID] = true
		if r.Open() {
			open[r.Severity]++
		}
		if ret.expire(ctx, key, r) {
			continue
		}
		// Leave recent changes to the jobs they queued.
		if e.now().Sub(r.UpdatedAt) < 2*e.cfg.EffectTimeout+e.cfg.RetryMax {
			continue
		}
		if e.behind(ctx, r) {
			if err := e.queueDeliveries(ctx, r); err != nil {
				e.log.Warn("sweep: queue deliveries", "incident", r.ID, "err", err)
			}
		}
	}
	for sev, n := range open {
		e.m.open.WithLabelValues(string(sev)).Set(n)
	}
	ret.archive(ctx, current)
}

// behind reports whether a sink has not caught up with the record.
func (e *Engine) behind(ctx context.Context, r *Record) bool {
	chat, _, err := e.loadDelivery(ctx, SinkChat, r)
	if err != nil {
		return false
	}
	if chat.Failed == "" && chatOp(r, chat) != "" {
		return true
	}
	pager, _, err := e.loadDelivery(ctx, SinkPager, r)
	if err != nil {
		return false
	}
	rb := e.runbook(r)
	_, want, _ := nextPage(r, pager, rb.Route(r.Severity), rb.Escalation())
	if pager.Failed == "" && want != "" {
		return true
	}
	if r.Silence == nil {
		return false
	}
	sil, _, err := e.loadDelivery(ctx, SinkSilence, r)
	return err == nil && silenceOp(r.Silence, sil, e.now()) != ""
}
