package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/incidentbot/incidentbot/bus"
)

// History has a size. An incident resolved longer than the retention ago
// (engine.retention) is removed with everything kept for it: its delivery
// entries, its id in the index, its archived copy, then its record. The
// record goes last and only while it is the one read (a conditional
// purge), so a later incident that took the same key is never touched and
// a pass cut short is finished by the next one. Purges drop the keys'
// history too, so the space is reclaimed. Every replica's sweep may do
// it; each step is idempotent.
//
// Archived copies of incidents a later one superseded are no longer under
// any record key; the sweep walks the archive for them at most hourly.

// retentionPass is one sweep's retention: it removes each record past
// the retention as the sweep reads it, then, at most hourly, archived
// copies no record holds any more.
type retentionPass struct {
	e       *Engine
	cutoff  time.Time
	removed int
}

func (e *Engine) retention() *retentionPass {
	return &retentionPass{e: e, cutoff: e.now().Add(-e.cfg.Retention)}
}

// expire removes the incident r stored at key when it resolved before the
// retention, and says whether it did.
func (p *retentionPass) expire(ctx context.Context, key string, r *Record) bool {
	if !expired(r, p.cutoff) {
		return false
	}
	if err := p.e.expire(ctx, key, r); err != nil {
		if ctx.Err() == nil {
			p.e.log.Warn("retention: remove incident", "incident", r.ID, "err", err)
		}
		return false
	}
	p.removed++
	return true
}

// archive ends the pass: archived copies resolved before the retention
// whose id has no record (current) any more, then a log line.
func (p *retentionPass) archive(ctx context.Context, current map[string]bool) {
	e := p.e
	if e.archiveKV != nil && e.now().Sub(e.archivePass) >= max(time.Hour, e.cfg.SweepInterval) {
		e.archivePass = e.now()
		p.removed += e.expireArchived(ctx, current, p.cutoff)
	}
	if p.removed > 0 {
		e.log.Info("retention: removed incidents resolved before the retention", "removed", p.removed, "retention", e.cfg.Retention)
	}
}

func expired(r *Record, cutoff time.Time) bool {
	return r != nil && !r.Open() && !r.ResolvedAt.IsZero() && r.ResolvedAt.Before(cutoff)
}

// expire removes one incident stored at key: its indexes first, its record
// last and only while unchanged.
func (e *Engine) expire(ctx context.Context, key string, r *Record) error {
	cur, rev, err := e.load(ctx, key)
	if err != nil || cur == nil || cur.ID != r.ID || !expired(cur, e.now().Add(-e.cfg.Retention)) {
		return err
	}
	if err := e.expireIndexes(ctx, r.ID); err != nil {
		return err
	}
	if err := e.incidents.Delete(ctx, key, bus.IfRevision(rev), bus.Purge()); err != nil && !errors.Is(err, bus.ErrRevisionMismatch) {
		return fmt.Errorf("purge record %s: %w", key, err)
	}
	e.auditf(ctx, bus.AuditRecord{Kind: "incident.expired", Incident: r.ID,
		Detail: fmt.Sprintf("resolved %s, past the retention of %s", r.ResolvedAt.UTC().Format(time.RFC3339), e.cfg.Retention)})
	return nil
}

// expireIndexes removes what is kept for incident id beside its record.
func (e *Engine) expireIndexes(ctx context.Context, id string) error {
	for _, sink := range []string{SinkChat, SinkPager, SinkSilence} {
		if err := purge(ctx, e.deliveries, deliveryKey(sink, id)); err != nil {
			return err
		}
	}
	if err := purge(ctx, e.ids, idKey(id)); err != nil {
		return err
	}
	return purge(ctx, e.archiveKV, idKey(id))
}

// expireArchived removes archived copies resolved before cutoff whose
// incident is no longer any key's record (current).
func (e *Engine) expireArchived(ctx context.Context, current map[string]bool, cutoff time.Time) int {
	keys, err := e.archiveKV.Keys(ctx)
	if err != nil {
		e.log.Warn("retention: list archived incidents", "err", err)
		return 0
	}
	n := 0
	for _, k := range keys {
		ent, err := e.archiveKV.Get(ctx, k)
		if err != nil {
			continue
		}
		r, err := decodeRecord("", ent.Value)
		if err != nil || current[r.ID] || !expired(r, cutoff) {
			continue
		}
		if err := e.expireIndexes(ctx, r.ID); err != nil {
			e.log.Warn("retention: remove archived incident", "incident", r.ID, "err", err)
			continue
		}
		n++
	}
	return n
}

func purge(ctx context.Context, kv bus.KV, key string) error {
	if kv == nil {
		return nil
	}
	if err := kv.Delete(ctx, key, bus.Purge()); err != nil && !errors.Is(err, bus.ErrKeyNotFound) {
		return fmt.Errorf("purge %s: %w", key, err)
	}
	return nil
}
