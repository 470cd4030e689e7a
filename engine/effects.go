package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/signal"
)

// errClaimed means another worker is posting this incident's card now.
var errClaimed = errors.New("card is being posted by another worker")

// reconcile brings what people were told in line with the incident's state:
// post the card if it is missing, edit it if it is stale, post each timeline
// entry once in the thread, and trigger or resolve the page. Each delivery
// is recorded with compare-and-set right after it succeeds, so a redelivered
// event, a second replica or a restart never sends it twice.
func (e *Engine) reconcile(ctx context.Context, key string) error {
	r := &renderer{e: e}
	var errs []error
	if err := e.reconcileChat(ctx, key, r); err != nil {
		errs = append(errs, err)
	}
	if err := e.reconcilePage(ctx, key, r); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// renderer renders an incident only when something is about to be sent,
// and once per record version: rendering runs templates and dry-run plans
// (which may read the RPC view), so a duplicate event that changes nothing
// renders nothing.
type renderer struct {
	e       *Engine
	id      string
	version int64
	view    notify.Incident
}

func (r *renderer) render(ctx context.Context, rec *Record) notify.Incident {
	if r.id != rec.ID || r.version != rec.Version || r.view.ID == "" {
		r.view = r.e.render(ctx, rec, r.e.runbook(rec))
		r.id, r.version = rec.ID, rec.Version
	}
	return r.view
}

func (e *Engine) reconcileChat(ctx context.Context, key string, r *renderer) error {
	for range 50 {
		rec, rev, err := e.load(ctx, key)
		if err != nil || rec == nil {
			return err
		}
		if rec.Slack.Failed != "" {
			return nil
		}
		switch {
		case rec.Slack.TS == "":
			if err := e.postCard(ctx, key, rec, rev, r); errors.Is(err, bus.ErrRevisionMismatch) {
				continue
			} else if err != nil {
				return err
			}
		case rec.Slack.CardVersion < rec.Version:
			ref := notify.CardRef{Channel: rec.Slack.Channel, TS: rec.Slack.TS}
			view := r.render(ctx, rec)
			err := e.send(ctx, "chat", "update", rec, func(ctx context.Context) error { return e.chat.UpdateCard(ctx, ref, view) })
			if err != nil {
				return e.chatFailed(ctx, key, rec, rev, err)
			}
			e.auditf(ctx, bus.AuditRecord{Kind: "notify.chat.updated", Incident: rec.ID,
				Attrs: map[string]string{"status": string(rec.Status), "version": strconv.FormatInt(rec.Version, 10)}})
			if err := e.mark(ctx, key, rec, rev, func(r *Record) { r.Slack.CardVersion = max(r.Slack.CardVersion, rec.Version) }); err != nil && !errors.Is(err, bus.ErrRevisionMismatch) {
				return err
			}
		default:
			u, ok := nextReply(rec)
			if !ok {
				return nil
			}
			ref := notify.CardRef{Channel: rec.Slack.Channel, TS: rec.Slack.TS}
			view := r.render(ctx, rec)
			err := e.send(ctx, "chat", "reply", rec, func(ctx context.Context) error { return e.chat.Reply(ctx, ref, view, u) })
			if err != nil {
				return e.chatFailed(ctx, key, rec, rev, err)
			}
			e.auditf(ctx, bus.AuditRecord{Kind: "notify.chat.replied", Incident: rec.ID, Detail: u.Text})
			if err := e.mark(ctx, key, rec, rev, func(r *Record) { r.Slack.RepliedSeq = max(r.Slack.RepliedSeq, u.Seq) }); err != nil && !errors.Is(err, bus.ErrRevisionMismatch) {
				return err
			}
		}
	}
	return fmt.Errorf("reconcile chat for %s: too many concurrent changes", key)
}

// postCard claims the right to post, posts, and records where the card is.
func (e *Engine) postCard(ctx context.Context, key string, rec *Record, rev uint64, r *renderer) error {
	if !rec.Slack.PostingSince.IsZero() && e.now().Sub(rec.Slack.PostingSince) < e.cfg.ClaimTimeout {
		return bus.Retry(errClaimed, min(5*time.Second, e.cfg.ClaimTimeout))
	}
	channel := e.runbook(rec).Route(rec.Severity).Channel
	claimed := clone(rec)
	claimed.Slack.PostingSince = e.now()
	claimed.Slack.Channel = channel
	if err := e.store(ctx, key, claimed, rev); err != nil {
		return err
	}
	view := r.render(ctx, rec)
	var ref notify.CardRef
	err := e.send(ctx, "chat", "post", rec, func(ctx context.Context) error {
		var err error
		ref, err = e.chat.PostCard(ctx, channel, view, notify.CardTag{IncidentID: rec.ID, Nonce: cardNonce()})
		return err
	})
	if err != nil {
		// Release the claim so a retry may post.
		_ = e.markFresh(ctx, key, func(r *Record) { r.Slack.PostingSince = time.Time{} })
		cur, crev, lerr := e.load(ctx, key)
		if lerr != nil || cur == nil {
			return err
		}
		return e.chatFailed(ctx, key, cur, crev, err)
	}
	e.auditf(ctx, bus.AuditRecord{Kind: "notify.chat.posted", Incident: rec.ID,
		Attrs: map[string]string{"channel": ref.Channel, "ts": ref.TS}})
	// Everything up to now is on the card; the thread starts after it.
	return e.markFresh(ctx, key, func(r *Record) {
		r.Slack.TS, r.Slack.Channel = ref.TS, ref.Channel
		r.Slack.PostingSince = time.Time{}
		r.Slack.CardVersion = rec.Version
		r.Slack.RepliedSeq = lastSeq(rec)
	})
}

// cardNonce is a random hex nonce for one card post attempt.
func cardNonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func lastSeq(r *Record) int64 {
	if len(r.Timeline) == 0 {
		return 0
	}
	return r.Timeline[len(r.Timeline)-1].Seq
}

func nextReply(r *Record) (notify.Update, bool) {
	for _, u := range r.Timeline {
		if u.Seq > r.Slack.RepliedSeq {
			return u, true
		}
	}
	return notify.Update{}, false
}

// chatFailed records a permanent chat failure (so it is not retried
// forever) or asks for a retry.
func (e *Engine) chatFailed(ctx context.Context, key string, rec *Record, rev uint64, err error) error {
	if notify.IsRetryable(err) {
		return retryAfter(err)
	}
	e.log.Error("chat delivery failed permanently", "incident", rec.ID, "err", err)
	e.auditf(ctx, bus.AuditRecord{Kind: "notify.chat.failed", Incident: rec.ID, Detail: err.Error()})
	_ = e.mark(ctx, key, rec, rev, func(r *Record) { r.Slack.Failed = err.Error() })
	return nil
}

func retryAfter(err error) error {
	var ne *notify.Error
	if errors.As(err, &ne) && ne.RetryAfter > 0 {
		return bus.Retry(err, ne.RetryAfter)
	}
	return err
}

func (e *Engine) reconcilePage(ctx context.Context, key string, r *renderer) error {
	rec, rev, err := e.load(ctx, key)
	if err != nil || rec == nil || rec.Page.Failed != "" {
		return err
	}
	route := e.runbook(rec).Route(rec.Severity)
	var want notify.PageAction
	switch {
	case rec.Status == notify.StatusResolved && rec.Page.State == notify.PageTrigger:
		want = notify.PageResolve
	case rec.Status != notify.StatusResolved && route.Page && rec.Page.State != notify.PageTrigger:
		want = notify.PageTrigger
	default:
		return nil // warnings stay in chat; nothing to change
	}
	p := notify.Page{Action: want, DedupKey: rec.ID, RoutingKey: route.PagerDutyKey, Incident: r.render(ctx, rec)}
	if err := e.send(ctx, "pager", string(want), rec, func(ctx context.Context) error { return e.pager.Page(ctx, p) }); err != nil {
		if notify.IsRetryable(err) {
			return retryAfter(err)
		}
		e.log.Error("page failed permanently", "incident", rec.ID, "action", want, "err", err)
		e.auditf(ctx, bus.AuditRecord{Kind: "notify.pager.failed", Incident: rec.ID, Detail: err.Error()})
		return e.mark(ctx, key, rec, rev, func(r *Record) { r.Page.Failed = err.Error() })
	}
	e.auditf(ctx, bus.AuditRecord{Kind: "notify.pager." + string(want), Incident: rec.ID})
	return e.markFresh(ctx, key, func(r *Record) { r.Page.State = want })
}

// send runs one delivery with its own deadline and records metrics.
func (e *Engine) send(ctx context.Context, sink, op string, rec *Record, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.EffectTimeout)
	defer cancel()
	start := e.now()
	err := f(ctx)
	result := "ok"
	if err != nil {
		result = "error"
		e.log.Warn("notification failed", "sink", sink, "op", op, "incident", rec.ID, "err", err)
	}
	e.m.notifications.WithLabelValues(sink, op, result).Inc()
	e.m.notifyLatency.WithLabelValues(sink, op).Observe(e.now().Sub(start).Seconds())
	return err
}

// mark applies f to rec, which was read at rev, and stores it with
// compare-and-set: it fails with ErrRevisionMismatch if anything changed
// since.
func (e *Engine) mark(ctx context.Context, key string, rec *Record, rev uint64, f func(*Record)) error {
	next := clone(rec)
	f(next)
	return e.store(ctx, key, next, rev)
}

// markFresh applies f to the latest record, retrying on conflicts: the
// delivery happened, so it must be recorded whatever else changed.
func (e *Engine) markFresh(ctx context.Context, key string, f func(*Record)) error {
	for range 20 {
		rec, rev, err := e.load(ctx, key)
		if err != nil || rec == nil {
			return err
		}
		f(rec)
		if err := e.store(ctx, key, rec, rev); errors.Is(err, bus.ErrRevisionMismatch) {
			continue
		} else {
			return err
		}
	}
	return fmt.Errorf("record delivery for %s: too many concurrent changes", key)
}

// runbook is the record's runbook, or a stand-in when it was removed since.
func (e *Engine) runbook(rec *Record) Runbook {
	if rb, ok := e.catalog.Get(rec.Runbook); ok {
		return rb
	}
	return missingRunbook{name: rec.Runbook}
}

// render builds the neutral incident model from the record and its runbook.
func (e *Engine) render(ctx context.Context, rec *Record, rb Runbook) notify.Incident {
	alerts := rec.sortedAlerts()
	rep := representative(rec, alerts)
	r := rb.Render(ctx, rep)
	inc := notify.Incident{
		ID: rec.ID, Key: rec.GroupKey, Version: rec.Version,
		Title: r.Title, Summary: r.Summary, Severity: rec.Severity, Status: rec.Status,
		Source: rec.Source, Runbook: rec.Runbook, RunbookURL: r.RunbookURL,
		Labels: commonLabels(alerts), TruncatedAlerts: rec.TruncatedAlerts,
		Assessment: r.Assessment, Remediation: r.Remediation, Escalation: r.Escalation,
		StartedAt: rec.StartedAt, ResolvedAt: rec.ResolvedAt, UpdatedAt: rec.UpdatedAt, Reopened: rec.Reopened,
	}
	if inc.Title == "" {
		inc.Title = rep.Name()
	}
	for _, a := range alerts {
		na := notify.Alert{Fingerprint: a.Fingerprint, Name: a.Labels["alertname"], Status: notify.Status(a.Status),
			Summary: a.Annotations["summary"], Labels: a.Labels, StartsAt: a.StartsAt, EndsAt: a.EndsAt, GeneratorURL: a.GeneratorURL}
		if na.Name == "" {
			na.Name = a.Type
		}
		inc.Alerts = append(inc.Alerts, na)
	}
	return inc
}

// representative is the signal the runbook is rendered for: the earliest
// firing alert, or the earliest alert when all resolved.
func representative(rec *Record, alerts []*AlertState) signal.Signal {
	if len(alerts) == 0 {
		return signal.Signal{Source: rec.Source, GroupKey: rec.GroupKey}
	}
	a := alerts[0]
	return signal.Signal{Source: rec.Source, Type: a.Type, GroupKey: rec.GroupKey, Fingerprint: a.Fingerprint, Status: a.Status,
		Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.StartsAt, EndsAt: a.EndsAt, GeneratorURL: a.GeneratorURL, Fields: a.Fields}
}

func commonLabels(alerts []*AlertState) map[string]string {
	if len(alerts) == 0 {
		return nil
	}
	out := maps.Clone(alerts[0].Labels)
	for _, a := range alerts[1:] {
		for k, v := range out {
			if a.Labels[k] != v {
				delete(out, k)
			}
		}
	}
	return out
}

// missingRunbook stands in when a stored incident names a runbook that was
// removed since: the incident still updates and resolves.
type missingRunbook struct{ name string }

func (m missingRunbook) Name() string                               { return m.name }
func (m missingRunbook) Severity(map[string]string) notify.Severity { return notify.SeverityWarning }
func (m missingRunbook) Route(notify.Severity) Route                { return Route{} }
func (m missingRunbook) Render(_ context.Context, s signal.Signal) Rendered {
	return Rendered{Title: s.Name(), Summary: "runbook " + m.name + " is no longer loaded"}
}
