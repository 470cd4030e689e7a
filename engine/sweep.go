package engine

import (
	"context"
	"time"
)

// Sweep runs until ctx is done. It keeps the open-incidents gauge from a
// watch of the incident records (so the gauge follows every change, is
// the same on every replica, and is right once a starting process has
// read the records), and every interval it repairs what fell behind: an
// incident whose deliveries lag its state with no job left to bring them
// in line (for example a job that aged out) gets its jobs queued again.
// It stands in for nothing else: timers and deliveries run from their own
// streams.
func (e *Engine) Sweep(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.watchIncidents(ctx)
	}()
	defer func() { <-done }()
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

// sweepSlices: the sweep reads every incident record once in sweepSlices
// intervals (10 min by default), to apply the retention and check the
// deliveries of idle incidents. On the passes between, it reads only the
// records that changed since the previous pass and have since settled
// (their own jobs had the time to run), which the index names: each
// change is checked once, then again by the next full pass. A lagging
// delivery is so repaired within sweepSlices intervals. Reading every
// record each minute kept all the stores' blocks cached (the store reads
// a whole block to serve one record).
const sweepSlices = 10

// SweepOnce is one pass of Sweep: a full pass (every record) when none
// ran in the last sweepSlices intervals or the index is not ready yet
// (Sweep not running, or its watch still reading), else a pass over the
// incidents whose change settled since the previous pass. It keeps no
// record: its memory does not grow with the number of incidents.
func (e *Engine) SweepOnce(ctx context.Context) {
	now := e.now()
	settled := now.Add(-e.settle())
	keys, ready := e.known.changed(e.checkedTo, settled)
	if !ready || e.lastFull.IsZero() || now.Sub(e.lastFull) >= sweepSlices*e.cfg.SweepInterval {
		if e.sweepAll(ctx) {
			e.lastFull, e.checkedTo = now, settled
		}
		return
	}
	for _, key := range keys {
		r, _, err := e.load(ctx, key)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Warn("sweep: load incident", "key", key, "err", err)
			}
			return
		}
		if r != nil {
			e.repair(ctx, r)
		}
	}
	e.checkedTo = settled
}

// settle is how long after a change its own jobs may still be running:
// the sweep leaves a change younger than that alone.
func (e *Engine) settle() time.Duration { return 2*e.cfg.EffectTimeout + e.cfg.RetryMax }

// sweepAll reads every record: the retention, then the deliveries of each
// incident. It says whether it read them all.
func (e *Engine) sweepAll(ctx context.Context) bool {
	keys, err := e.incidents.Keys(ctx)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("sweep: list incidents", "err", err)
		}
		return false
	}
	current := make(map[string]bool, len(keys)) // ids with a record, for the archive's retention
	ret := e.retention()
	for _, key := range keys {
		r, _, err := e.load(ctx, key)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Warn("sweep: load incident", "key", key, "err", err)
			}
			return false
		}
		if r == nil {
			continue
		}
		current[r.ID] = true
		if ret.expire(ctx, key, r) {
			continue
		}
		e.repair(ctx, r)
	}
	ret.archive(ctx, current)
	return true
}

// repair queues the jobs of an incident whose deliveries are behind it,
// unless it changed too recently for its own jobs to have run.
func (e *Engine) repair(ctx context.Context, r *Record) {
	if e.now().Sub(r.UpdatedAt) < e.settle() || !e.behind(ctx, r) {
		return
	}
	if err := e.queueDeliveries(ctx, r); err != nil {
		e.log.Warn("sweep: queue deliveries", "incident", r.ID, "err", err)
	}
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
