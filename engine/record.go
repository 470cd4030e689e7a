package engine

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/signal"
)

// Record is an incident's durable state, stored in the incidents KV bucket
// under Key and updated with compare-and-set. It holds both what happened
// (alerts, timeline) and what was delivered (card, replies, page), so that
// effects can be reconciled after any crash.
type Record struct {
	ID       string          `json:"id"`
	GroupKey string          `json:"group_key"`
	Runbook  string          `json:"runbook"`
	Source   string          `json:"source"`
	Status   notify.Status   `json:"status"`
	Severity notify.Severity `json:"severity"`
	// Version increases with every change of what happened.
	Version         int64                  `json:"version"`
	Alerts          map[string]*AlertState `json:"alerts"`
	TruncatedAlerts int                    `json:"truncated_alerts,omitempty"`
	StartedAt       time.Time              `json:"started_at"`
	ResolvedAt      time.Time              `json:"resolved_at,omitzero"`
	UpdatedAt       time.Time              `json:"updated_at"`
	Reopened        int                    `json:"reopened,omitempty"`
	// Timeline holds the changes, each posted once as a thread reply.
	Timeline []notify.Update `json:"timeline"`
	NextSeq  int64           `json:"next_seq"`
	Slack    SlackDelivery   `json:"slack"`
	Page     PageDelivery    `json:"page"`
}

// AlertState is the latest known state of one alert in an incident.
type AlertState struct {
	Fingerprint  string            `json:"fingerprint"`
	Type         string            `json:"type"`
	Status       signal.Status     `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"starts_at"`
	EndsAt       time.Time         `json:"ends_at,omitzero"`
	GeneratorURL string            `json:"generator_url,omitempty"`
	Fields       map[string]any    `json:"fields,omitempty"`
}

// SlackDelivery records what the chat has been sent.
type SlackDelivery struct {
	Channel string `json:"channel,omitempty"`
	TS      string `json:"ts,omitempty"`
	// PostingSince is set while a worker posts the card (a claim), so a
	// second worker or replica does not post another.
	PostingSince time.Time `json:"posting_since,omitzero"`
	CardVersion  int64     `json:"card_version"`
	RepliedSeq   int64     `json:"replied_seq"`
	// Failed holds a permanent delivery error (e.g. channel_not_found).
	Failed string `json:"failed,omitempty"`
}

// PageDelivery records what the pager has been sent.
type PageDelivery struct {
	// State is the last page action delivered: "", "trigger", "resolve".
	State  notify.PageAction `json:"state,omitempty"`
	Failed string            `json:"failed,omitempty"`
}

// maxTimeline bounds the stored timeline; older entries were posted long ago.
const maxTimeline = 200

// incidentKey is the KV key of the incident for a group and runbook.
func incidentKey(groupKey, runbook string) string {
	h := sha256.Sum256([]byte(groupKey + "\x00" + runbook))
	return "inc." + hex.EncodeToString(h[:12])
}

// newID makes a short, human-friendly incident id.
func newID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "INC-" + strings.ToUpper(hex.EncodeToString(b[:]))
}

// change is what applying signals did to a record.
type change int

const (
	unchanged change = iota
	opened
	updated
	reopened
	resolved
)

func (c change) String() string {
	return [...]string{"unchanged", "opened", "updated", "reopened", "resolved"}[c]
}

// applyInput is one batch of signals for one incident.
type applyInput struct {
	GroupKey  string
	Runbook   string
	Source    string
	Signals   []signal.Signal
	Truncated int
	Now       time.Time
	// ReopenWindow: a resolved incident that fires again within it is
	// reopened (same card and thread); later, a new incident starts.
	ReopenWindow time.Duration
	// Severity maps an alert's labels to a severity (from the runbook).
	Severity func(labels map[string]string) notify.Severity
}

// apply merges signals into rec (nil for none yet) and returns the new
// record and what changed. It is a pure function of its inputs, so a
// redelivered event changes nothing the second time.
func apply(rec *Record, in applyInput) (*Record, change) {
	anyFiring := slices.ContainsFunc(in.Signals, func(s signal.Signal) bool { return s.Status == signal.Firing })
	if rec == nil {
		if !anyFiring {
			return nil, unchanged // a resolve for an incident we never saw
		}
		rec = fresh(in)
	} else {
		rec = clone(rec)
	}
	result := unchanged
	if rec.Status == notify.StatusResolved && anyFiring && refires(rec, in.Signals) {
		if in.Now.Sub(rec.ResolvedAt) > in.ReopenWindow {
			// Too long ago to be the same problem: a new incident, with
			// its own id, card, thread and page.
			rec = fresh(in)
		} else {
			rec.Status = notify.StatusFiring
			rec.ResolvedAt = time.Time{}
			rec.Reopened++
			result = reopened
		}
	}
	var added, cleared []string
	for _, s := range in.Signals {
		cur, ok := rec.Alerts[s.Fingerprint]
		if ok && !newer(s, cur) {
			continue
		}
		rec.Alerts[s.Fingerprint] = stateOf(s)
		switch {
		case s.Status == signal.Firing && (!ok || cur.Status == signal.Resolved || !cur.StartsAt.Equal(s.StartsAt)):
			added = append(added, describe(s))
		case s.Status == signal.Resolved && ok && cur.Status == signal.Firing:
			cleared = append(cleared, describe(s))
		}
	}
	if in.Truncated != rec.TruncatedAlerts && in.Source == "alertmanager" {
		rec.TruncatedAlerts = in.Truncated
	}
	isNew := rec.Version == 0
	if len(added) == 0 && len(cleared) == 0 && !isNew && result != reopened {
		return rec, unchanged
	}
	rec.Severity = worstSeverity(rec, in.Severity)
	firing := rec.firingCount()
	switch {
	case isNew:
		result = opened
		rec.addUpdate(in.Now, "opened", fmt.Sprintf("Incident opened: %s", strings.Join(added, ", ")))
	case result == reopened:
		rec.addUpdate(in.Now, "reopened", fmt.Sprintf("Fired again %s after resolving (reopened %d×): %s",
			notify.HumanDuration(in.Now.Sub(lastResolved(rec, in.Now))), rec.Reopened, strings.Join(added, ", ")))
	default:
		result = updated
		if len(added) > 0 {
			rec.addUpdate(in.Now, "alerts_added", "Firing: "+strings.Join(added, ", "))
		}
	}
	if len(cleared) > 0 && firing > 0 {
		rec.addUpdate(in.Now, "alerts_resolved", fmt.Sprintf("Resolved: %s (%d still firing)", strings.Join(cleared, ", "), firing))
	}
	if firing == 0 && rec.Status != notify.StatusResolved {
		rec.Status = notify.StatusResolved
		rec.ResolvedAt = rec.latestEnd(in.Now)
		rec.addUpdate(in.Now, "resolved", fmt.Sprintf("Resolved after %s.", notify.HumanDuration(rec.ResolvedAt.Sub(rec.StartedAt))))
		result = resolved
	} else if firing > 0 && rec.Status == notify.StatusResolved {
		rec.Status = notify.StatusFiring
	}
	rec.Version++
	rec.UpdatedAt = in.Now
	return rec, result
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
// an old firing state replayed after the resolve.
func refires(rec *Record, sigs []signal.Signal) bool {
	for _, s := range sigs {
		if s.Status != signal.Firing {
			continue
		}
		cur, ok := rec.Alerts[s.Fingerprint]
		if !ok || newer(s, cur) {
			return true
		}
	}
	return false
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

func fresh(in applyInput) *Record {
	return &Record{
		ID:        newID(),
		GroupKey:  in.GroupKey,
		Runbook:   in.Runbook,
		Source:    in.Source,
		Status:    notify.StatusFiring,
		Alerts:    map[string]*AlertState{},
		StartedAt: earliestStart(in.Signals, in.Now),
		NextSeq:   1,
	}
}

func earliestStart(sigs []signal.Signal, now time.Time) time.Time {
	t := now
	for _, s := range sigs {
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

func clone(r *Record) *Record {
	c := *r
	c.Alerts = make(map[string]*AlertState, len(r.Alerts))
	for k, v := range r.Alerts {
		a := *v
		c.Alerts[k] = &a
	}
	c.Timeline = slices.Clone(r.Timeline)
	return &c
}

func (r *Record) addUpdate(now time.Time, kind, text string) {
	r.Timeline = append(r.Timeline, notify.Update{Seq: r.NextSeq, Kind: kind, Text: text, At: now})
	r.NextSeq++
	if len(r.Timeline) > maxTimeline {
		r.Timeline = slices.Delete(r.Timeline, 0, len(r.Timeline)-maxTimeline)
	}
}

func (r *Record) firingCount() int {
	n := 0
	for _, a := range r.Alerts {
		if a.Status == signal.Firing {
			n++
		}
	}
	return n
}

func (r *Record) latestEnd(now time.Time) time.Time {
	var t time.Time
	for _, a := range r.Alerts {
		if a.EndsAt.After(t) {
			t = a.EndsAt
		}
	}
	if t.IsZero() || t.After(now) {
		return now
	}
	return t
}

// sortedAlerts returns the alerts firing first, then by start time.
func (r *Record) sortedAlerts() []*AlertState {
	out := slices.Collect(maps.Values(r.Alerts))
	slices.SortFunc(out, func(a, b *AlertState) int {
		if a.Status != b.Status {
			if a.Status == signal.Firing {
				return -1
			}
			return 1
		}
		if c := a.StartsAt.Compare(b.StartsAt); c != 0 {
			return c
		}
		return strings.Compare(a.Fingerprint, b.Fingerprint)
	})
	return out
}

var severityRank = map[notify.Severity]int{notify.SeverityInfo: 1, notify.SeverityWarning: 2, notify.SeverityCritical: 3}

// worstSeverity is the highest severity among firing alerts (all alerts when
// none fires), so a resolved incident keeps the severity it had.
func worstSeverity(r *Record, sev func(map[string]string) notify.Severity) notify.Severity {
	best := r.Severity
	anyFiring := r.firingCount() > 0
	if anyFiring {
		best = ""
	}
	for _, a := range r.Alerts {
		if anyFiring && a.Status != signal.Firing {
			continue
		}
		if s := sev(a.Labels); severityRank[s] > severityRank[best] {
			best = s
		}
	}
	if best == "" {
		best = notify.SeverityWarning
	}
	return best
}
