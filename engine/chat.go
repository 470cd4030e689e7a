package engine

import (
	"context"
	"strconv"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/notify"
)

// findSkew widens the history search for a card whose post outcome is
// unknown, for clock differences between us and the chat.
const findSkew = time.Minute

// HandleChat is the chat sink's job handler: it posts the card if it is
// missing, edits it if it is stale, and posts each timeline entry once in
// its thread. Every call is made under the incident's chat lease and
// recorded before anything else happens, the card's ts first.
func (e *Engine) HandleChat(ctx context.Context, d *bus.Delivery) error {
	if d.Event.Type == stormJobEventType {
		return e.drawStorm(ctx, string(d.Event.Data))
	}
	key, err := jobKey(d)
	if err != nil {
		return err
	}
	var view renderer
	for range 64 {
		rec, _, err := e.load(ctx, key)
		if err != nil || rec == nil {
			return err
		}
		del, rev, err := e.loadDelivery(ctx, SinkChat, rec)
		if err != nil {
			return err
		}
		if del.Failed != "" {
			return nil
		}
		op := chatOp(rec, del)
		if op == "" {
			e.observeLag(SinkChat, d)
			return nil
		}
		if op == "storm" {
			if err := e.stormStep(ctx, rec, del, rev, &view); err != nil && !isConflict(err) {
				return err
			}
			continue
		}
		if op == "post" && del.Lease == nil && e.cfg.Storm.Threshold > 0 {
			// A new incident's first post: it may join its channel's
			// storm instead (after an attempt, it keeps its card).
			joined, err := e.admit(ctx, rec, del, rev, &view)
			if err != nil && !isConflict(err) {
				return err
			}
			if joined || err != nil {
				continue
			}
		}
		// A post whose worker died mid-call may have reached the chat:
		// look for it before posting again.
		if l := del.Lease; l != nil && l.Op == "post" && del.TS == "" && !e.now().Before(l.Until) {
			found, err := e.findCard(ctx, rec, del, rev, l)
			if err != nil {
				return err
			}
			if found {
				continue
			}
		}
		lease, rev, err := e.acquire(ctx, SinkChat, rec.ID, op, del, rev)
		if err != nil {
			if isConflict(err) {
				continue
			}
			return err
		}
		_ = d.InProgress()
		if err := e.chatCall(ctx, op, rec, del, rev, lease, &view); err != nil {
			return err
		}
	}
	return bus.Later(errLeased, time.Second)
}

// chatOp is the next chat call the incident needs: "post", "update",
// "reply", "storm" (its line on the storm card lags), or "" when the chat
// is in line.
func chatOp(rec *Record, del *Delivery) string {
	switch {
	case del.Storm != "":
		if del.CardVersion < rec.Version || del.RepliedSeq < rec.lastSeq() || del.StormDone < del.StormGen {
			return "storm"
		}
		return ""
	case del.TS == "":
		return "post"
	case del.CardVersion < rec.Version:
		return "update"
	case del.RepliedSeq < rec.lastSeq():
		return "reply"
	}
	return ""
}

func (e *Engine) chatCall(ctx context.Context, op string, rec *Record, del *Delivery, rev uint64, l *Lease, view *renderer) error {
	inc := view.render(ctx, e, rec)
	switch op {
	case "post":
		channel := e.runbook(rec).Route(rec.Severity).Channel
		var ref notify.CardRef
		err := e.call(ctx, SinkChat, "post", rec, func(ctx context.Context) error {
			var err error
			ref, err = e.chat.PostCard(ctx, channel, inc, notify.CardTag{IncidentID: rec.ID, Nonce: l.Nonce})
			return err
		})
		if err != nil {
			return e.failed(ctx, SinkChat, rec, del, rev, l, err)
		}
		if err := e.recordCard(ctx, rec, del, rev, l, ref); err != nil {
			return err
		}
		e.auditf(ctx, bus.AuditRecord{Kind: "notify.chat.posted", Incident: rec.ID, Attrs: map[string]string{"channel": ref.Channel, "ts": ref.TS}})
	case "update":
		ref := notify.CardRef{Channel: del.Channel, TS: del.TS}
		if err := e.call(ctx, SinkChat, "update", rec, func(ctx context.Context) error { return e.chat.UpdateCard(ctx, ref, inc) }); err != nil {
			return e.failed(ctx, SinkChat, rec, del, rev, l, err)
		}
		if err := e.settleDelivery(ctx, SinkChat, rec, del, rev, l, func(d *Delivery) { d.CardVersion = max(d.CardVersion, rec.Version) }); err != nil {
			return err
		}
		e.auditf(ctx, bus.AuditRecord{Kind: "notify.chat.updated", Incident: rec.ID,
			Attrs: map[string]string{"status": string(rec.Status), "version": strconv.FormatInt(rec.Version, 10)}})
	case "reply":
		u := nextReply(rec, del.RepliedSeq)
		if u.Kind == UpdateReport && e.reports != nil {
			text, err := e.reports.RecordReport(ctx, rec)
			if err != nil {
				return e.failed(ctx, SinkChat, rec, del, rev, l, &notify.Error{Op: "render report", Retryable: true, Err: err})
			}
			u.Text = text
		}
		ref := notify.CardRef{Channel: del.Channel, TS: del.TS}
		if err := e.call(ctx, SinkChat, "reply", rec, func(ctx context.Context) error { return e.chat.Reply(ctx, ref, inc, u) }); err != nil {
			return e.failed(ctx, SinkChat, rec, del, rev, l, err)
		}
		if err := e.settleDelivery(ctx, SinkChat, rec, del, rev, l, func(d *Delivery) { d.RepliedSeq = max(d.RepliedSeq, u.Seq) }); err != nil {
			return err
		}
		if u.Kind == UpdateReport {
			e.auditf(ctx, bus.AuditRecord{Kind: "report.posted", Incident: rec.ID,
				Attrs: map[string]string{"channel": ref.Channel, "thread_ts": ref.TS, "seq": strconv.FormatInt(u.Seq, 10)}})
			return nil
		}
		e.auditf(ctx, bus.AuditRecord{Kind: "notify.chat.replied", Incident: rec.ID, Detail: u.Text})
	}
	return nil
}

// recordCard records where the card is, right after the chat answered:
// everything up to this version is on the card, and the thread starts
// after it.
func (e *Engine) recordCard(ctx context.Context, rec *Record, del *Delivery, rev uint64, l *Lease, ref notify.CardRef) error {
	return e.settleDelivery(ctx, SinkChat, rec, del, rev, l, func(d *Delivery) {
		if d.TS != "" {
			return // recorded already (found by another worker)
		}
		d.TS, d.Channel = ref.TS, ref.Channel
		d.PostedAt = e.now()
		d.CardVersion = rec.Version
		d.RepliedSeq = rec.lastSeq()
	})
}

// findCard looks for the card of a post attempt that died with its outcome
// unknown, and records it when found. It reports whether it found one.
func (e *Engine) findCard(ctx context.Context, rec *Record, del *Delivery, rev uint64, l *Lease) (bool, error) {
	channel := e.runbook(rec).Route(rec.Severity).Channel
	var ref notify.CardRef
	var found bool
	err := e.call(ctx, SinkChat, "find", rec, func(ctx context.Context) error {
		var err error
		ref, found, err = e.chat.FindCard(ctx, channel, notify.CardTag{IncidentID: rec.ID, Nonce: l.Nonce}, l.Since.Add(-findSkew))
		return err
	})
	if err != nil {
		if notify.IsRetryable(err) {
			return false, retryAfter(err, e.cfg.RetryMax)
		}
		// Without a way to look, post again: a duplicate card beats none.
		e.log.Warn("cannot look for a card whose post outcome is unknown; posting again", "incident", rec.ID, "err", err)
		return false, nil
	}
	if !found {
		return false, nil
	}
	e.log.Info("found the card of an interrupted post; not posting again", "incident", rec.ID, "ts", ref.TS)
	e.auditf(ctx, bus.AuditRecord{Kind: "notify.chat.recovered", Incident: rec.ID, Attrs: map[string]string{"channel": ref.Channel, "ts": ref.TS}})
	return true, e.recordCard(ctx, rec, del, rev, l, ref)
}

func nextReply(r *Record, after int64) notify.Update {
	for _, u := range r.Timeline {
		if u.Seq > after {
			return u
		}
	}
	return notify.Update{}
}
