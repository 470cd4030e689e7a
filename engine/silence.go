package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/silence"
)

// Silences follow the engine's pattern: a person's silence or unsilence
// is an input, apply records the wish on the incident (SilenceWish), and
// the silence reconciler (HandleSilence, from its own job consumer under
// the incident's silence lease) makes Alertmanager hold it, records
// Alertmanager's id in the delivery entry first, then reports back with a
// SilenceCreated or SilenceExpired input so the card and thread show it.
//
// Only Alertmanager alerts can be silenced: an on-chain signal comes from
// incidentbot's own watchers, which Alertmanager never sees, so a silence
// there would suppress nothing; the request is refused with that reason.

// Silencer creates and expires Alertmanager silences (silence.Client).
type Silencer interface {
	// Find returns the newest silence not expired whose comment carries
	// marker.
	Find(ctx context.Context, marker string) (silence.Found, bool, error)
	// Create creates s, or updates it when s.ID is set, and returns its id.
	Create(ctx context.Context, s silence.Silence) (string, error)
	// Expire expires a silence; an unknown or expired one is no error.
	Expire(ctx context.Context, id string) error
}

// DefaultSilenceMax bounds a silence asked for by a person when no other
// bound is configured (alertmanager.silence_max).
const DefaultSilenceMax = 24 * time.Hour

// Reasons a silence is refused, as people read them.
const (
	// ReasonNoSilencer: no Alertmanager API is configured.
	ReasonNoSilencer = "silences need alertmanager.url (Alertmanager's API) to be configured"
	// ReasonOnChain: the incident's signals never went through Alertmanager.
	ReasonOnChain = "this incident comes from incidentbot's on-chain watchers, which Alertmanager never sees: an Alertmanager silence cannot suppress it"
)

// silenceReq records a request to silence the incident for in.Duration. A
// request while a silence holds extends it (the same silence, so asking
// twice never makes two); a shorter one changes nothing.
func silenceReq(r *Record, in input.Input, env applyEnv) Result {
	limit := env.SilenceMax
	if limit <= 0 {
		limit = DefaultSilenceMax
	}
	switch {
	case !env.Silences:
		return noop(ReasonNoSilencer)
	case r.Source != "alertmanager":
		return noop(ReasonOnChain)
	case in.Duration > limit:
		return noop(fmt.Sprintf("a silence of %s is longer than the maximum of %s (alertmanager.silence_max)",
			notify.HumanDuration(in.Duration), notify.HumanDuration(limit)))
	case !in.At.After(r.UnsilencedAt):
		return stale("an unsilence came later")
	}
	until := in.At.Add(in.Duration)
	if !until.After(env.Now) {
		return stale("a silence until " + clock(until, env.Now) + " would already have ended")
	}
	if w := r.Silence; w.active(env.Now) {
		if !until.After(w.Until) {
			return noop("already silenced until " + clock(w.Until, env.Now) + " by " + w.By.String())
		}
		w.Until, w.By, w.RequestedAt = until, in.Actor, in.At
		r.addUpdate(env.Now, "silence_requested", fmt.Sprintf("%s extended the silence to %s", in.Actor.String(), clock(until, env.Now)))
		return Result{change: silenceRequested}
	}
	m := commonLabels(r.sortedAlerts())
	if len(m) == 0 {
		return noop("the incident's alerts share no label: a silence without matchers would silence every alert")
	}
	gen := 1
	if r.Silence != nil {
		gen = r.Silence.Gen + 1
	}
	r.Silence = &SilenceWish{Gen: gen, By: in.Actor, RequestedAt: in.At, Until: until, Matchers: m}
	r.addUpdate(env.Now, "silence_requested", fmt.Sprintf("%s asked to silence for %s, until %s: %s",
		in.Actor.String(), notify.HumanDuration(in.Duration), clock(until, env.Now), matcherText(m)))
	return Result{change: silenceRequested}
}

// unsilenceReq records a request to expire the silence now.
func unsilenceReq(r *Record, in input.Input, env applyEnv) Result {
	w := r.Silence
	switch {
	case !in.At.After(r.UnsilencedAt):
		return stale("a later unsilence was applied")
	case w == nil || w.Unsilenced != nil || w.Expired || !w.RequestedAt.Before(in.At):
		return noop("no silence in force")
	}
	r.UnsilencedAt = in.At
	w.Unsilenced = &Mark{By: in.Actor, At: in.At}
	text := in.Actor.String() + " asked to expire the silence"
	if w.ID != "" {
		text += " " + shortID(w.ID)
	}
	r.addUpdate(env.Now, "unsilence_requested", text)
	return Result{change: unsilenceRequested}
}

// silenceCreated records what the reconciler reported: Alertmanager holds
// silence in.Text for the wish named by in.Token.
func silenceCreated(r *Record, in input.Input, env applyEnv) Result {
	gen, until, ok := parseSilenceToken(in.Token)
	w := r.Silence
	if !ok || w == nil || w.Gen != gen {
		return stale("silence no longer current")
	}
	if w.ID == in.Text && !w.CreatedUntil.Before(until) {
		return noop("already recorded")
	}
	first := w.ID == ""
	w.ID, w.CreatedUntil = in.Text, until
	text := fmt.Sprintf("Silenced until %s by %s (silence %s)", clock(until, env.Now), w.By.String(), shortID(w.ID))
	if !first {
		text = fmt.Sprintf("Silence extended until %s by %s (silence %s)", clock(until, env.Now), w.By.String(), shortID(w.ID))
	}
	r.addUpdate(env.Now, "silenced", text)
	return Result{change: silenced}
}

// silenceEnded records that Alertmanager expired the silence.
func silenceEnded(r *Record, in input.Input, env applyEnv) Result {
	gen, _, ok := parseSilenceToken(in.Token)
	w := r.Silence
	switch {
	case !ok || w == nil || w.Gen != gen:
		return stale("silence no longer current")
	case w.Expired:
		return noop("already expired")
	}
	w.Expired = true
	if w.ID == "" {
		w.ID = in.Text
	}
	text := "Silence " + shortID(w.ID) + " expired"
	if w.Unsilenced != nil {
		text += " (asked by " + w.Unsilenced.By.String() + ")"
	}
	r.addUpdate(env.Now, "silence_expired", text)
	return Result{change: silenceExpired}
}

// silenceToken names one state of a wish: its generation and end.
func silenceToken(gen int, until time.Time) string {
	return strconv.Itoa(gen) + "@" + strconv.FormatInt(until.UnixNano(), 10)
}

func parseSilenceToken(tok string) (int, time.Time, bool) {
	g, u, ok := strings.Cut(tok, "@")
	gen, err1 := strconv.Atoi(g)
	ns, err2 := strconv.ParseInt(u, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return 0, time.Time{}, false
	}
	return gen, time.Unix(0, ns).UTC(), true
}

// silenceText is the card's line about the silence, or "".
func silenceText(w *SilenceWish, now time.Time) string {
	switch {
	case w == nil || w.Expired:
		return ""
	case w.Unsilenced != nil:
		return "Silence being expired (asked by " + w.Unsilenced.By.String() + ")"
	case !w.Until.After(now):
		return "Silence ended " + clock(w.Until, now)
	case w.ID == "":
		return "Silence until " + clock(w.Until, now) + " asked by " + w.By.String() + " (being created)"
	}
	return fmt.Sprintf("Silenced until %s by %s (silence %s)", clock(w.Until, now), w.By.String(), shortID(w.ID))
}

// clock formats t for a card: the time of day within a day of now, the
// date too otherwise.
func clock(t, now time.Time) string {
	t = t.UTC()
	if d := t.Sub(now); d < 24*time.Hour && d > -24*time.Hour {
		return t.Format("15:04 UTC")
	}
	return t.Format("2006-01-02 15:04 UTC")
}

// shortID abbreviates a silence id as people quote it.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8] + "…"
	}
	return id
}

func matcherText(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+strconv.Quote(m[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// silenceOp is the next step the silence reconciler takes: "expire" (an
// older silence still held, or one people asked to end), "create" (or
// extend), "confirm" (tell the record what Alertmanager holds), or "".
func silenceOp(w *SilenceWish, del *Delivery, now time.Time) string {
	if w == nil {
		return ""
	}
	same := del.SilenceGen == w.Gen
	switch {
	case !same && del.SilenceID != "" && !del.SilenceExpired:
		return "expire"
	case same && del.Failed != "":
		return ""
	case w.Unsilenced != nil:
		switch {
		case !same || !del.SilenceExpired:
			return "expire"
		case del.SilenceID != "" && !w.Expired:
			return "confirm"
		}
		return ""
	case w.Until.After(now) && (!same || del.SilenceID == "" || del.SilenceExpired || del.SilenceUntil.Before(w.Until)):
		return "create"
	case same && del.SilenceID != "" && !del.SilenceExpired && (w.ID != del.SilenceID || w.CreatedUntil.Before(del.SilenceUntil)):
		return "confirm"
	}
	return ""
}

// HandleSilence is the silence sink's job handler: it brings Alertmanager
// in line with the incident's silence wish, one call at a time under the
// incident's silence lease, and reports each outcome back to the record.
// Before creating, it looks for a silence carrying the incident's marker,
// so an attempt whose outcome was unknown is found, not repeated.
func (e *Engine) HandleSilence(ctx context.Context, d *bus.Delivery) error {
	key, err := jobKey(d)
	if err != nil {
		return err
	}
	for range 16 {
		rec, _, err := e.load(ctx, key)
		if err != nil || rec == nil {
			return err
		}
		del, rev, err := e.loadDelivery(ctx, SinkSilence, rec)
		if err != nil {
			return err
		}
		op := silenceOp(rec.Silence, del, e.now())
		switch {
		case op == "":
			e.observeLag(SinkSilence, d)
			return nil
		case op == "confirm":
			if err := e.confirmSilence(ctx, rec, del); err != nil {
				return err
			}
			continue
		case e.silencer == nil:
			e.log.Warn("a silence is wanted but no Alertmanager API is configured", "incident", rec.ID)
			return nil
		}
		lease, rev, err := e.acquire(ctx, SinkSilence, rec.ID, op, del, rev)
		if err != nil {
			if isConflict(err) {
				continue
			}
			return err
		}
		_ = d.InProgress()
		if err := e.silenceCall(ctx, op, rec, del, rev, lease); err != nil {
			return err
		}
	}
	return bus.Later(errLeased, time.Second)
}

func (e *Engine) silenceCall(ctx context.Context, op string, rec *Record, del *Delivery, rev uint64, l *Lease) error {
	w := rec.Silence
	marker := silence.Marker(rec.ID)
	if op == "expire" {
		older := del.SilenceGen != w.Gen && del.SilenceID != "" && !del.SilenceExpired
		id := ""
		if del.SilenceID != "" && !del.SilenceExpired && (older || del.SilenceGen == w.Gen) {
			id = del.SilenceID
		} else {
			// Its creation may have happened with the outcome unknown:
			// look for it by its marker.
			err := e.call(ctx, SinkSilence, "find", rec, func(ctx context.Context) error {
				f, ok, err := e.silencer.Find(ctx, marker)
				if ok {
					id = f.ID
				}
				return err
			})
			if err != nil {
				return e.silenceFailed(ctx, rec, del, rev, l, err)
			}
		}
		if id != "" {
			if err := e.call(ctx, SinkSilence, "expire", rec, func(ctx context.Context) error { return e.silencer.Expire(ctx, id) }); err != nil {
				return e.silenceFailed(ctx, rec, del, rev, l, err)
			}
		}
		if err := e.settleDelivery(ctx, SinkSilence, rec, del, rev, l, func(d *Delivery) {
			if !older {
				d.SilenceGen = w.Gen
			}
			d.SilenceID, d.SilenceExpired, d.Failed = id, true, ""
		}); err != nil {
			return err
		}
		by := input.Bot
		if !older && w.Unsilenced != nil {
			by = w.Unsilenced.By
		}
		if id != "" {
			e.auditf(ctx, bus.AuditRecord{Kind: "notify.silence.expired", Incident: rec.ID, Actor: by.String(), Attrs: map[string]string{"silence": id}})
		}
		return nil
	}
	// create: adopt a silence an interrupted attempt left, else post.
	var found silence.Found
	var ok bool
	if err := e.call(ctx, SinkSilence, "find", rec, func(ctx context.Context) error {
		var err error
		found, ok, err = e.silencer.Find(ctx, marker)
		return err
	}); err != nil {
		return e.silenceFailed(ctx, rec, del, rev, l, err)
	}
	id := ""
	if ok && !found.EndsAt.Before(w.Until) {
		id = found.ID
		e.log.Info("found the incident's silence in Alertmanager; not creating another", "incident", rec.ID, "silence", id)
	} else {
		s := silence.Silence{Matchers: w.Matchers, StartsAt: e.now(), EndsAt: w.Until, CreatedBy: createdBy(w.By),
			Comment: fmt.Sprintf("%s: silenced from %s by %s (%s)", rec.ID, w.By.Via, createdBy(w.By), marker)}
		if ok {
			// Extend it rather than make a second one; the same start
			// keeps its id.
			s.ID = found.ID
			if !found.StartsAt.IsZero() && found.StartsAt.Before(s.StartsAt) {
				s.StartsAt = found.StartsAt
			}
		}
		if err := e.call(ctx, SinkSilence, "create", rec, func(ctx context.Context) error {
			var err error
			id, err = e.silencer.Create(ctx, s)
			return err
		}); err != nil {
			return e.silenceFailed(ctx, rec, del, rev, l, err)
		}
	}
	if err := e.settleDelivery(ctx, SinkSilence, rec, del, rev, l, func(d *Delivery) {
		d.SilenceID, d.SilenceGen, d.SilenceUntil, d.SilenceExpired, d.Failed = id, w.Gen, w.Until, false, ""
	}); err != nil {
		return err
	}
	e.auditf(ctx, bus.AuditRecord{Kind: "notify.silence.created", Incident: rec.ID, Actor: w.By.String(),
		Attrs: map[string]string{"silence": id, "until": w.Until.UTC().Format(time.RFC3339), "requested_at": w.RequestedAt.UTC().Format(time.RFC3339)}})
	return nil
}

// silenceFailed handles a failed Alertmanager call: a retryable failure is
// retried (the lease dropped); a refusal is recorded for this wish, so a
// new request tries again, and audited.
func (e *Engine) silenceFailed(ctx context.Context, rec *Record, del *Delivery, rev uint64, l *Lease, err error) error {
	if notify.IsRetryable(err) {
		_ = e.settleDelivery(ctx, SinkSilence, rec, del, rev, l, func(*Delivery) {})
		return retryAfter(err, e.cfg.RetryMax)
	}
	e.log.Error("silence refused by Alertmanager", "incident", rec.ID, "err", err)
	e.auditf(ctx, bus.AuditRecord{Kind: "notify.silence.failed", Incident: rec.ID, Actor: rec.Silence.By.String(), Detail: err.Error()})
	return e.settleDelivery(ctx, SinkSilence, rec, del, rev, l, func(d *Delivery) {
		d.Failed, d.SilenceGen, d.SilenceID, d.SilenceExpired = err.Error(), rec.Silence.Gen, "", false
	})
}

// confirmSilence applies what the delivery entry says Alertmanager holds
// to the record, as an input of the engine's own.
func (e *Engine) confirmSilence(ctx context.Context, rec *Record, del *Delivery) error {
	in := input.Input{Kind: input.SilenceCreated, Incident: rec.ID, At: e.now(), Actor: rec.Silence.By,
		Text: del.SilenceID, Token: silenceToken(del.SilenceGen, del.SilenceUntil)}
	if del.SilenceExpired {
		in.Kind, in.Actor = input.SilenceExpired, input.Bot
		if u := rec.Silence.Unsilenced; u != nil {
			in.Actor = u.By
		}
	}
	in.ID = string(in.Kind) + "." + del.SilenceID + "." + in.Token
	ev := bus.Event{ID: in.ID, Source: "engine", Type: "engine." + string(in.Kind), Time: in.At, Subject: rec.GroupKey}
	return e.applyOne(ctx, in, ev, e.log.With("event", ev.ID))
}

func createdBy(a input.Actor) string {
	if a.Name != "" {
		return a.Name
	}
	if a.ID != "" {
		return a.ID
	}
	return "incidentbot"
}
