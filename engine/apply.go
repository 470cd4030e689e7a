package engine

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/signal"
)

// change is what applying inputs did to a record.
type change int

const (
	unchanged change = iota
	opened
	updated
	reopened
	resolved
	acked
	unacked
	noted
	escalated
	silenceRequested
	silenced
	unsilenceRequested
	silenceExpired
	stepChanged
	frozen
	redrawn
)

func (c change) String() string {
	return [...]string{"unchanged", "opened", "updated", "reopened", "resolved", "acknowledged", "unacknowledged", "noted", "escalated",
		"silence_requested", "silenced", "unsilence_requested", "silence_expired", "step_changed", "freeze_changed", "redrawn"}[c]
}

// Result is what one apply decided: the change, or why nothing changed.
type Result struct {
	change change
	// Stale is true when the input came too late to matter (a fenced
	// timer, an ack older than the latest unack, an escalation of a
	// resolved incident).
	Stale bool
	// Reason says in words why nothing changed, for the audit trail and
	// for the person who asked.
	Reason string
	// step is the remediation step a stepChanged is about.
	step string
}

// Changed reports whether the record changed.
func (r Result) Changed() bool { return r.change != unchanged }

// String names the change, or the reason nothing changed.
func (r Result) String() string {
	if r.change != unchanged || r.Reason == "" {
		return r.change.String()
	}
	return r.Reason
}

func noop(reason string) Result  { return Result{Reason: reason} }
func stale(reason string) Result { return Result{Stale: true, Reason: reason} }

// applyEnv is everything apply needs besides the record and the input; it
// keeps apply a pure function.
type applyEnv struct {
	Now time.Time
	// ReopenWindow: a resolved incident that fires again within it is
	// reopened (same card and thread); later, a new incident starts.
	ReopenWindow time.Duration
	// Runbook is the incident's runbook name; Severity maps an alert's
	// labels to a severity; Levels is its escalation ladder.
	Runbook  string
	Severity func(labels map[string]string) notify.Severity
	Levels   []notify.EscalationLevel
	// OwnerLevels is the ladder of the record's own runbook when Runbook
	// matched signals that join an incident another runbook of their
	// correlation group opened: the incident keeps its ladder.
	OwnerLevels []notify.EscalationLevel
	// NewID names a new incident.
	NewID func() string
	// Key is the incident's KV key.
	Key string
	// Silences is true when a silencer is configured; SilenceMax bounds a
	// silence's duration.
	Silences   bool
	SilenceMax time.Duration
	// Step returns the policy of a remediation step of the incident's
	// runbook (nil: no step can be requested).
	Step func(id string) (StepPolicy, bool)
	// AutoSteps are the runbook's automatic steps: the bot requests each
	// when the incident opens or reopens.
	AutoSteps []string
	// ReportOnResolve adds a report entry to the timeline when the
	// incident resolves; the chat worker renders it when it posts it.
	ReportOnResolve bool
	// Breaker, when set, says why the runbook's circuit breaker is open:
	// requests of its steps (but revert steps) are refused.
	Breaker string
}

// applySignals merges one event's signals for one incident into rec (nil
// for none yet). Merging is order-independent: a later episode (StartsAt)
// wins, and within one episode resolved wins over firing, so a redelivered
// or reordered event changes nothing twice.
func applySignals(rec *Record, ins []input.Input, env applyEnv) (*Record, Result) {
	anyFiring := slices.ContainsFunc(ins, func(in input.Input) bool { return in.Signal.Status == signal.Firing })
	first := ins[0].Signal
	if rec == nil {
		if !anyFiring {
			return nil, noop("a resolve for an incident never opened")
		}
		rec = fresh(first, ins, env)
	} else {
		rec = clone(rec)
	}
	result := unchanged
	if !rec.Open() && anyFiring && refires(rec, ins) {
		if env.Now.Sub(rec.ResolvedAt) > env.ReopenWindow {
			// Too long ago to be the same problem: a new incident, with
			// its own id, card, thread and page.
			rec = fresh(first, ins, env)
		} else {
			// Re-firing is an implicit unack as of when the alert fired
			// again: acks made after that still stand.
			unackAt := refireAt(rec, ins)
			rec.Status = notify.StatusFiring
			rec.ResolvedAt = time.Time{}
			rec.ManualResolve = nil
			rec.AckChangedAt = maxTime(rec.AckChangedAt, unackAt)
			rec.Acks = slices.DeleteFunc(rec.Acks, func(a Mark) bool { return !a.At.After(rec.AckChangedAt) })
			rec.Ack = currentAck(rec)
			rec.Reopened++
			rec.Escalation = Escalation{Since: env.Now}
			result = reopened
		}
	}
	// Signals of another runbook than the incident's join it: correlated.
	joined := rec.Runbook != env.Runbook
	if joined {
		env.Levels = env.OwnerLevels
	}
	var added, cleared []string
	for _, in := range ins {
		s := in.Signal
		cur, ok := rec.Alerts[s.Fingerprint]
		if ok && !newer(s, cur) {
			continue
		}
		st := stateOf(s)
		st.Severity = env.Severity(s.Labels)
		if joined {
			st.Runbook, st.Source = env.Runbook, s.Source
		}
		rec.Alerts[s.Fingerprint] = st
		switch {
		case s.Status == signal.Firing && (!ok || cur.Status == signal.Resolved || !cur.StartsAt.Equal(s.StartsAt)):
			added = append(added, describe(s))
		case s.Status == signal.Resolved && ok && cur.Status == signal.Firing:
			cleared = append(cleared, describe(s))
		}
	}
	// How many alerts Alertmanager left out is per incident and as of the
	// latest notification: a complete one clears the notice.
	truncated := false
	if t := ins[0].Truncated; t != rec.TruncatedAlerts && first.Source == "alertmanager" {
		rec.TruncatedAlerts, truncated = t, true
	}
	isNew := rec.Version == 0
	if len(added) == 0 && len(cleared) == 0 && !isNew && result != reopened {
		if truncated {
			bump(rec, env)
			return rec, Result{change: updated}
		}
		return rec, noop("no alert changed state")
	}
	rec.Severity = worstSeverity(rec, env.Severity)
	switch {
	case isNew:
		result = opened
		rec.addUpdate(env.Now, "opened", "Incident opened: "+strings.Join(added, ", "))
	case result == reopened:
		rec.addUpdate(env.Now, "reopened", fmt.Sprintf("Fired again %s after resolving (reopened %d×): %s",
			notify.HumanDuration(env.Now.Sub(lastResolved(rec, env.Now))), rec.Reopened, strings.Join(added, ", ")))
	default:
		result = updated
		switch {
		case len(added) > 0 && joined:
			rec.addUpdate(env.Now, "joined", "Joined from "+SourceName(first.Source)+" (runbook "+env.Runbook+"): "+strings.Join(added, ", "))
		case len(added) > 0:
			rec.addUpdate(env.Now, "alerts_added", "Firing: "+strings.Join(added, ", "))
		}
	}
	if firing := rec.firingCount(); len(cleared) > 0 && firing > 0 {
		rec.addUpdate(env.Now, "alerts_resolved", fmt.Sprintf("Resolved: %s (%d still firing)", strings.Join(cleared, ", "), firing))
	}
	if settle(rec, env) == resolved {
		result = resolved
		addReport(rec, env)
	}
	if isNew || result == reopened {
		// The ladder's clock starts when people are told, not when the
		// alert started: an alert that fired while the bot was down is
		// not escalated past L1 before anyone saw it.
		rec.Escalation.Since = env.Now
		skipImmediateLevels(rec, env)
		// Its automatic steps are due, once in this opening.
		if !joined && rec.Open() {
			rec.AutoDue = slices.Clone(env.AutoSteps)
		}
	}
	arm(rec, env)
	bump(rec, env)
	return rec, Result{change: result}
}

// applyInput applies a person's or a timer's input to an existing
// incident. It is pure; a repeated input (same id) changes nothing.
func applyInput(rec *Record, in input.Input, env applyEnv) (*Record, Result) {
	if rec == nil {
		return nil, stale("no such incident")
	}
	if rec.applied(in.ID) {
		return rec, noop("already applied")
	}
	next := clone(rec)
	var res Result
	switch in.Kind {
	case input.Ack:
		res = ack(next, in, env)
	case input.Unack:
		res = unack(next, in, env)
	case input.Resolve:
		res = resolveByHand(next, in, env)
	case input.Note:
		next.Notes = ensure(next.Notes)
		next.Notes[in.ID] = Note{By: in.Actor, At: in.At, Text: in.Text}
		next.addUpdate(env.Now, "note", in.Actor.String()+": "+in.Text)
		res = Result{change: noted}
	case input.Escalate:
		res = escalateNow(next, in, env)
	case input.Silence:
		res = silenceReq(next, in, env)
	case input.Unsilence:
		res = unsilenceReq(next, in, env)
	case input.SilenceCreated:
		res = silenceCreated(next, in, env)
	case input.SilenceExpired:
		res = silenceEnded(next, in, env)
	case input.Request:
		res = request(next, in, env)
	case input.Approve, input.Deny:
		res = stepVote(next, in, env)
	case input.ApprovalExpired:
		res = stepExpired(next, in, env)
	case input.Freeze, input.Unfreeze:
		res = freezeNote(next, in, env)
	case input.Refresh:
		// A new version and no timeline entry: the card is drawn again.
		res = Result{change: redrawn}
	case input.ActionStarted:
		res = actionStarted(next, in, env)
	case input.ActionResult:
		res = actionResult(next, in, env)
	case input.EscalationDue:
		switch {
		case in.Token != next.Escalation.Token:
			res = stale("escalation timer no longer current")
		case next.Status != notify.StatusFiring:
			res = stale("incident is " + string(next.Status))
		default:
			fireLevel(next, env, false)
			res = Result{change: escalated}
		}
	default:
		return rec, noop(fmt.Sprintf("unknown input kind %q", in.Kind))
	}
	if !res.Changed() {
		return rec, res
	}
	next.remember(in.ID)
	arm(next, env)
	bump(next, env)
	return next, res
}

// request refuses a request while the runbook's breaker is open, and a
// revert step with nothing to revert; the rest is stepRequest's.
func request(r *Record, in input.Input, env applyEnv) Result {
	if strings.HasPrefix(in.Step, RevertPrefix) {
		if _, err := RevertPlan(r, in.Step); err != nil {
			return noop(err.Error())
		}
	} else if env.Breaker != "" {
		return noop(env.Breaker + ": " + in.Step + " cannot be requested until it closes")
	}
	return stepRequest(r, in, env)
}

func ensure(m map[string]Note) map[string]Note {
	if m == nil {
		return map[string]Note{}
	}
	return m
}

// ack records an acknowledgement. Every ack since the latest unack is
// kept and the earliest of them stands, so acks and unacks end in the same
// state whatever order they arrive in.
func ack(r *Record, in input.Input, env applyEnv) Result {
	if !in.At.After(r.AckChangedAt) {
		return stale("an unacknowledge came later")
	}
	m := Mark{By: in.Actor, At: in.At}
	if slices.Contains(r.Acks, m) {
		return noop("already acknowledged by " + in.Actor.String())
	}
	if r.FirstAck == nil || m.At.Before(r.FirstAck.At) {
		first := m
		r.FirstAck = &first
	}
	prev := r.Ack
	r.Acks = append(r.Acks, m)
	slices.SortFunc(r.Acks, func(a, b Mark) int { return a.At.Compare(b.At) })
	if len(r.Acks) > maxAcks {
		r.Acks = r.Acks[:maxAcks] // the earliest matter
	}
	r.Ack = currentAck(r)
	switch {
	case prev != nil && *prev == *r.Ack:
		// Kept, in case an unack between the two removes the first.
	case !r.Open():
		// An ack after the incident resolved is kept for the record but
		// does not reopen it.
		r.addUpdate(env.Now, "acknowledged", "Acknowledged by "+r.Ack.By.String()+" (already resolved)")
	default:
		r.Status = notify.StatusAcknowledged
		r.addUpdate(env.Now, "acknowledged", "Acknowledged by "+r.Ack.By.String())
	}
	return Result{change: acked}
}

// maxAcks bounds the acks kept per incident.
const maxAcks = 16

// currentAck is the earliest ack after the latest unack, or nil.
func currentAck(r *Record) *Mark {
	for _, a := range r.Acks {
		if a.At.After(r.AckChangedAt) {
			return &a
		}
	}
	return nil
}

func unack(r *Record, in input.Input, env applyEnv) Result {
	if !in.At.After(r.AckChangedAt) {
		return stale("a later unacknowledge was applied")
	}
	r.AckChangedAt = in.At
	r.Acks = slices.DeleteFunc(r.Acks, func(a Mark) bool { return !a.At.After(in.At) })
	prev := r.Ack
	r.Ack = currentAck(r)
	if prev == nil || r.Ack != nil {
		return Result{change: unacked} // remembered, so older acks are stale
	}
	if r.Status == notify.StatusAcknowledged {
		r.Status = notify.StatusFiring
		// Resume from the level reached, with the same gap as before.
		prevAfter := time.Duration(0)
		if r.Escalation.Next > 0 && r.Escalation.Next <= len(env.Levels) {
			prevAfter = env.Levels[r.Escalation.Next-1].After
		}
		r.Escalation.Since = in.At.Add(-prevAfter)
	}
	r.addUpdate(env.Now, "unacknowledged", "Unacknowledged by "+in.Actor.String())
	return Result{change: unacked}
}

// resolveByHand resolves the incident as of the input's time. The earliest
// resolution by hand stands; on an incident that already resolved by
// itself it is kept for the record, so alerts that started before it do
// not reopen the incident whatever order they arrive in.
func resolveByHand(r *Record, in input.Input, env applyEnv) Result {
	if r.ManualResolve != nil && !in.At.Before(r.ManualResolve.At) {
		return noop("already resolved by " + r.ManualResolve.By.String())
	}
	wasOpen := r.Open()
	r.ManualResolve = &Mark{By: in.Actor, At: in.At, Text: in.Text}
	if !wasOpen {
		return Result{change: resolved}
	}
	text := "Resolved by " + in.Actor.String()
	if n := r.firingCount(); n > 0 {
		text += fmt.Sprintf(" while %d alert(s) still fire in Alertmanager", n)
	}
	if in.Text != "" {
		text += ": " + in.Text
	}
	r.Status = notify.StatusResolved
	r.ResolvedAt = in.At
	r.addUpdate(env.Now, "resolved", text)
	addReport(r, env)
	return Result{change: resolved}
}

// UpdateReport is the kind of the timeline entry that stands for the
// incident's report: added when the incident resolves (engine
// report_on_resolve), rendered by the chat worker when it posts it, so it
// is posted once like every thread reply.
const UpdateReport = "report"

func addReport(r *Record, env applyEnv) {
	if env.ReportOnResolve {
		r.addUpdate(env.Now, UpdateReport, "Incident report")
	}
}

func escalateNow(r *Record, in input.Input, env applyEnv) Result {
	if !r.Open() {
		return stale("incident is resolved")
	}
	if r.Escalation.Next >= len(env.Levels) {
		return noop("no escalation level left")
	}
	fireLevel(r, env, true, in.Actor)
	if in.Text != "" {
		r.Timeline[len(r.Timeline)-1].Text += ": " + in.Text
	}
	return Result{change: escalated}
}

// fireLevel notifies the next level and moves the ladder on.
func fireLevel(r *Record, env applyEnv, manual bool, by ...input.Actor) {
	l := env.Levels[r.Escalation.Next]
	text := fmt.Sprintf("No acknowledgement after %s: escalating to %s", notify.HumanDuration(env.Now.Sub(r.StartedAt)), l.Name)
	if manual && len(by) > 0 {
		text = fmt.Sprintf("%s escalated to %s", by[0].String(), l.Name)
	}
	if l.Who != "" {
		text += " → " + l.Who
	}
	if l.Page {
		text += " (paging PagerDuty)"
		r.Escalation.Paged = append(r.Escalation.Paged, r.Escalation.Next)
	}
	r.addUpdate(env.Now, "escalated", text)
	r.Timeline[len(r.Timeline)-1].Mention = l.Mention
	r.Escalation.Next++
	// The next level keeps its distance from this one.
	r.Escalation.Since = env.Now.Add(-l.After)
}

// skipImmediateLevels counts levels due at once (after 0s) as notified by
// the opening itself: the card and the page are their notification.
func skipImmediateLevels(r *Record, env applyEnv) {
	for r.Escalation.Next < len(env.Levels) && env.Levels[r.Escalation.Next].After <= 0 {
		r.Escalation.Next++
	}
}

// arm sets or clears the escalation timer the record wants: armed while the
// incident fires unacknowledged and a level remains. A new token fences
// every timer armed before.
func arm(r *Record, env applyEnv) {
	if r.Status != notify.StatusFiring || r.Escalation.Next >= len(env.Levels) {
		r.Escalation.Token, r.Escalation.DueAt = "", time.Time{}
		return
	}
	if r.Escalation.Since.IsZero() {
		r.Escalation.Since = env.Now
	}
	due := r.Escalation.Since.Add(env.Levels[r.Escalation.Next].After)
	if r.Escalation.Token != "" && due.Equal(r.Escalation.DueAt) {
		return // armed as wanted
	}
	r.Escalation.DueAt = due
	r.Escalation.Token = fmt.Sprintf("%s.%d.%d", r.ID, r.Escalation.Next, r.Version+1)
}

// settle derives the status from the facts: resolved when no alert fires
// (or none that started after a resolution by hand), acknowledged while an
// ack stands, firing otherwise. It returns resolved when the incident
// resolved just now.
func settle(r *Record, env applyEnv) change {
	live := r.firingCount()
	if r.ManualResolve != nil {
		live = r.firingAfter(r.ManualResolve.At)
	}
	wasOpen := r.Open()
	switch {
	case live == 0 && wasOpen:
		r.Status = notify.StatusResolved
		r.ResolvedAt = r.latestEnd(env.Now)
		r.addUpdate(env.Now, "resolved", fmt.Sprintf("Resolved after %s.", notify.HumanDuration(r.ResolvedAt.Sub(r.StartedAt))))
		return resolved
	case live == 0:
	case r.Ack != nil:
		r.Status = notify.StatusAcknowledged
	default:
		r.Status = notify.StatusFiring
	}
	return unchanged
}

func bump(r *Record, env applyEnv) {
	r.Version++
	r.UpdatedAt = env.Now
}

func lastResolved(rec *Record, now time.Time) time.Time {
	var t time.Time
	for _, a := range rec.Alerts {
		if a.Status == signal.Resolved && a.EndsAt.After(t) {
			t = a.EndsAt
		}
	}
	if t.IsZero() {
		return now
	}
	return t
}

// refires reports whether any firing signal starts a new episode: it is not
// an old firing state replayed after the resolve, nor an alert that started
// before someone resolved the incident by hand.
func refires(rec *Record, ins []input.Input) bool {
	for _, in := range ins {
		s := in.Signal
		if s.Status != signal.Firing {
			continue
		}
		if rec.ManualResolve != nil && !s.StartsAt.After(rec.ManualResolve.At) {
			continue
		}
		cur, ok := rec.Alerts[s.Fingerprint]
		if !ok || newer(s, cur) {
			return true
		}
	}
	return false
}

// refireAt is when the earliest alert that re-fires started.
func refireAt(rec *Record, ins []input.Input) time.Time {
	var t time.Time
	for _, in := range ins {
		s := in.Signal
		if s.Status != signal.Firing || (rec.ManualResolve != nil && !s.StartsAt.After(rec.ManualResolve.At)) {
			continue
		}
		if cur, ok := rec.Alerts[s.Fingerprint]; ok && !newer(s, cur) {
			continue
		}
		if t.IsZero() || s.StartsAt.Before(t) {
			t = s.StartsAt
		}
	}
	return t
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// newer reports whether s is a later state of the alert than cur. Order of
// delivery does not matter: a later episode (StartsAt) wins, and within one
// episode resolved wins over firing.
func newer(s signal.Signal, cur *AlertState) bool {
	switch {
	case s.StartsAt.After(cur.StartsAt):
		return true
	case s.StartsAt.Before(cur.StartsAt):
		return false
	}
	if s.Status == cur.Status {
		return false
	}
	return s.Status == signal.Resolved
}

func fresh(first signal.Signal, ins []input.Input, env applyEnv) *Record {
	return &Record{
		ID:        env.NewID(),
		Key:       env.Key,
		GroupKey:  first.GroupKey,
		Runbook:   env.Runbook,
		Source:    first.Source,
		Status:    notify.StatusFiring,
		Alerts:    map[string]*AlertState{},
		StartedAt: earliestStart(ins, env.Now),
		NextSeq:   1,
	}
}

func earliestStart(ins []input.Input, now time.Time) time.Time {
	t := now
	for _, in := range ins {
		s := in.Signal
		if s.Status == signal.Firing && !s.StartsAt.IsZero() && s.StartsAt.Before(t) {
			t = s.StartsAt
		}
	}
	return t
}

func stateOf(s signal.Signal) *AlertState {
	return &AlertState{
		Fingerprint: s.Fingerprint, Type: s.Type, Status: s.Status,
		Labels: s.Labels, Annotations: s.Annotations,
		StartsAt: s.StartsAt, EndsAt: s.EndsAt, GeneratorURL: s.GeneratorURL, Fields: s.Fields,
	}
}

func describe(s signal.Signal) string {
	name := s.Name()
	if name == "" {
		name = s.Type
	}
	if sum := s.Annotations["summary"]; sum != "" {
		return name + " (" + sum + ")"
	}
	return name
}
