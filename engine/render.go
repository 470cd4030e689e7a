package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/signal"
)

// renderer renders an incident only when something is about to be sent,
// and once per record version: rendering runs templates and dry-run plans
// (which may read the RPC view), so a job that finds nothing to do renders
// nothing.
type renderer struct {
	id      string
	version int64
	view    notify.Incident
}

func (r *renderer) render(ctx context.Context, e *Engine, rec *Record) notify.Incident {
	if r.id != rec.ID || r.version != rec.Version || r.view.ID == "" {
		r.view = e.render(ctx, rec, e.runbook(rec))
		r.id, r.version = rec.ID, rec.Version
	}
	return r.view
}

// runbook is the record's runbook, or a stand-in when it was removed since.
func (e *Engine) runbook(rec *Record) Runbook {
	if rec == nil {
		return missingRunbook{}
	}
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
		ID: rec.ID, Key: rec.Key, Version: rec.Version,
		Title: r.Title, Summary: r.Summary, Severity: rec.Severity, Status: rec.Status,
		Source: rec.Source, Runbook: rec.Runbook, RunbookURL: r.RunbookURL,
		Labels: commonLabels(alerts), TruncatedAlerts: rec.TruncatedAlerts,
		Assessment: r.Assessment, Remediation: r.Remediation, Escalation: r.Escalation,
		StartedAt: rec.StartedAt, ResolvedAt: rec.ResolvedAt, UpdatedAt: rec.UpdatedAt, Reopened: rec.Reopened,
		EscalationState: escalationState(rec, rb.Escalation()),
		Silence:         silenceText(rec.Silence, e.now()),
	}
	if inc.Title == "" {
		inc.Title = rep.Name()
	}
	if f, err := e.Frozen(ctx); err == nil {
		inc.Freeze = f.String()
	}
	if why, err := e.BreakerOpen(ctx, rec.Runbook); err == nil {
		inc.Breaker = why
	}
	for i, p := range inc.Remediation {
		if q := rec.Steps[p.ID]; q != nil {
			inc.Remediation[i].Status = q.StepStatus()
			inc.Remediation[i].State = stepState(q, p.Hash)
		}
	}
	inc.Remediation = revertProposals(rec, rb, inc.Remediation)
	if rec.Ack != nil {
		inc.AcknowledgedBy = rec.Ack.By.String()
		inc.AcknowledgedAt = rec.Ack.At
	}
	if rec.ManualResolve != nil {
		inc.ResolvedBy = rec.ManualResolve.By.String()
		if n := rec.firingCount(); n > 0 {
			inc.ResolvedBy += fmt.Sprintf(" — %d alert(s) still firing in Alertmanager", n)
		}
	}
	for _, a := range alerts {
		na := notify.Alert{Fingerprint: a.Fingerprint, Name: a.Labels["alertname"], Status: notify.Status(a.Status),
			Summary: a.Annotations["summary"], Labels: a.Labels, StartsAt: a.StartsAt, EndsAt: a.EndsAt, GeneratorURL: a.GeneratorURL}
		if na.Name == "" {
			na.Name = a.Type
		}
		inc.Alerts = append(inc.Alerts, na)
		if j := "joined from " + na.Name + " (" + SourceName(a.Source) + ", runbook " + a.Runbook + ")"; a.Runbook != "" && !slices.Contains(inc.Joined, j) {
			inc.Joined = append(inc.Joined, j)
		}
	}
	for _, n := range rec.sortedNotes() {
		inc.Notes = append(inc.Notes, notify.Update{Kind: "note", Text: n.By.String() + ": " + n.Text, At: n.At})
	}
	return inc
}

// escalationState says where the ladder stands, in one line for the card.
func escalationState(rec *Record, levels []notify.EscalationLevel) string {
	if len(levels) == 0 {
		return ""
	}
	switch {
	case !rec.Open():
		return "stopped: resolved"
	case rec.Status == notify.StatusAcknowledged:
		return "stopped: acknowledged"
	case rec.Escalation.Token != "" && rec.Escalation.Next < len(levels):
		return fmt.Sprintf("next: %s at %s", levels[rec.Escalation.Next].Name, rec.Escalation.DueAt.UTC().Format("15:04 UTC"))
	case rec.Escalation.Next >= len(levels):
		return "every level has been called"
	}
	return ""
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
func (m missingRunbook) Escalation() []notify.EscalationLevel       { return nil }
func (m missingRunbook) Render(_ context.Context, s signal.Signal) Rendered {
	return Rendered{Title: s.Name(), Summary: "runbook " + m.name + " is no longer loaded"}
}

// Representative is the signal an incident's runbook is rendered and its
// remediation steps planned for.
func Representative(rec *Record) signal.Signal { return representative(rec, rec.sortedAlerts()) }

// stepState is where a step's latest request stands for the plan the card
// shows (hash, as resolved for this card; empty when it could not be):
// what its buttons offer. A pending request for another plan is void (a
// vote would void it); a run that ended for another plan leaves the plan
// shown unrequested.
func stepState(q *StepRequest, hash string) notify.StepState {
	other := hash != "" && q.Hash != hash
	switch q.State {
	case DecisionPending:
		if other {
			return notify.StepVoid
		}
		return notify.StepPending
	case DecisionApproved:
		if q.Run != nil && q.Run.Hash == q.Hash && q.Run.Result != "" {
			if other {
				return notify.StepNone
			}
			return notify.StepRan
		}
		return notify.StepApproved
	case DecisionDenied:
		return notify.StepDenied
	case DecisionExpired:
		return notify.StepExpired
	case DecisionVoid:
		return notify.StepVoid
	}
	return notify.StepNone
}
