package engine

import (
	"context"
	"hash/fnv"
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

// sweepSlices: the deliveries of an incident unchanged for sweepSlices
// sweep intervals are checked on one pass in sweepSlices (the first pass
// after a start checks them all). A lagging delivery is so repaired within
// sweepSlices intervals (10 min by default), and a pass reads a tenth of
// the idle incidents' delivery entries instead of all of them: reading
// them all each minute kept the whole deliveries store's blocks cached.
const sweepSlices = 10

// SweepOnce is one pass of Sweep. It reads the records one at a time and
// keeps none: its memory does not grow with the number of incidents.
func (e *Engine) SweepOnce(ctx context.Context) {
	pass := e.sweeps
	e.sweeps++
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
		age := e.now().Sub(r.UpdatedAt)
		if age < 2*e.cfg.EffectTimeout+e.cfg.RetryMax || !checkDeliveries(pass, key, age, e.cfg.SweepInterval) {
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

// checkDeliveries reports whether sweep pass number pass (0 the first)
// checks the deliveries of the incident under key, unchanged for age: the
// first pass checks all, later ones every incident changed in the last
// sweepSlices intervals and a tenth of the others, each once in
// sweepSlices consecutive passes.
func checkDeliveries(pass uint64, key string, age, interval time.Duration) bool {
	return pass == 0 || age < sweepSlices*interval || sweepSlice(key) == pass%sweepSlices
}

// sweepSlice is the pass (modulo sweepSlices) on which the sweep checks
// the deliveries of the idle incident under key.
func sweepSlice(key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return h.Sum64() % sweepSlices
}
