// Package runbooks is the runbook format, its loader and validator, and the
// runbooks incidentbot ships. A runbook is the course's incident runbook
// made executable: what it matches (rules), how it routes by severity, the
// assessment checklist, common causes with remediation steps bound to
// actions, the escalation ladder and the post-incident checklist. The
// engine loads a Set, matches each signal to one Runbook and renders it
// into the neutral incident model.
package runbooks

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/rules"
)

// Defaults for what a runbook leaves out.
const (
	DefaultSeverityLabel = "severity"
	DefaultSeverity      = notify.SeverityWarning
	DefaultMinApprovals  = 1
	DefaultApprovalTTL   = 30 * time.Minute
	DefaultCooldown      = 10 * time.Minute
	// DefaultBreakerFailures failed, verify_failed or reverted runs of a
	// runbook's steps within DefaultBreakerWindow open its breaker.
	DefaultBreakerFailures = 3
	DefaultBreakerWindow   = time.Hour
	// MaxVerifyWithin bounds verify.within.
	MaxVerifyWithin = 24 * time.Hour
	// PlanTimeout bounds one remediation step's plan while rendering.
	PlanTimeout = 5 * time.Second
)

// DefaultRouting is the course's Alertmanager routing: critical pages and
// posts to #solana-dapps-alerts, warning goes to #solana-dapps-warnings
// only, info is posted for the record.
func DefaultRouting() map[notify.Severity]Route {
	return map[notify.Severity]Route{
		notify.SeverityCritical: {Channel: "#solana-dapps-alerts", Page: true},
		notify.SeverityWarning:  {Channel: "#solana-dapps-warnings"},
		notify.SeverityInfo:     {Channel: "#solana-dapps-alerts"},
	}
}

// Runbook is one loaded, validated runbook.
type Runbook struct {
	Name        string
	Description string
	Priority    int
	Fallback    bool
	Selector    rules.Selector
	Detection   string
	// Correlation is the group of runbooks whose incidents this one's
	// signals join, nil when it correlates with none (see CorrelationKey).
	Correlation *Correlation
	// File and Line say where the runbook was defined.
	File string
	Line int

	title, summary, runbookURL actions.Template
	severity                   severityRule
	corr                       *correlateDecl
	routes                     map[notify.Severity]Route
	// keyRefs are the routes' pagerduty_key_ref values where they are
	// written: Msg holds the name (see CheckKeyRefs).
	keyRefs    []*Problem
	assessment []step
	// Causes are the common causes, in file order.
	Causes []Cause
	// Remediation lists every remediation step: the causes' steps first,
	// in file order, then the top-level ones.
	Remediation  []*Remediation
	Escalation   []notify.EscalationLevel
	PostIncident []string
	// Breaker is the runbook's circuit breaker (defaults filled in).
	Breaker Breaker
}

// Breaker opens after Failures failed, verify_failed or reverted runs of
// the runbook's steps within Window.
type Breaker struct {
	Failures int
	Window   time.Duration
}

// Revert modes of a remediation step.
const (
	RevertAuto   = "auto"
	RevertManual = "manual"
	RevertNever  = "never"
)

// RevertPrefix starts the id of a step's revert step (revert-<id>): step
// ids may not start with it.
const RevertPrefix = "revert-"

// Cause is one common cause: how it shows and how to check for it.
type Cause struct {
	Name     string
	Symptoms actions.Template
	Check    actions.Template
	// Steps are the ids of the cause's remediation steps.
	Steps []string
}

type step struct {
	text, link actions.Template
}

type severityRule struct {
	label string
	def   notify.Severity
	fixed notify.Severity
	m     map[string]notify.Severity
}

// Route is where an incident of one severity goes.
type Route struct {
	// Channel is the Slack channel to post the card in.
	Channel string
	// Page is true when the incident pages.
	Page bool
	// PagerDutyKey names the PagerDuty routing key to page with, as
	// configured in the bot (pagerduty.routing_keys), never the key
	// itself; empty means the default key.
	PagerDutyKey string
}

// Remediation is one remediation step with its bound action.
type Remediation struct {
	ID     string
	Title  string
	Action string
	// Cause names the cause the step belongs to, empty for top-level steps.
	Cause    string
	Bound    actions.Bound
	Approval Approval
	Cooldown time.Duration
	// Automatic steps run without waiting for approval: the bot requests
	// them itself, once each time an incident opens or reopens.
	Automatic bool
	// VerifyWithin is verify.within (0 when not set): the check window,
	// and by when the incident must resolve for the run to count as
	// verified. Revert is auto, manual or never.
	VerifyWithin time.Duration
	// VerifyIgnoresIncident is verify.incident_resolves: false: within the
	// window only the action's check counts.
	VerifyIgnoresIncident bool
	Revert                string
}

// Approval is who must approve a step before it runs.
type Approval struct {
	// Approvers are Slack user ids (U…), user group handles (@oncall) or
	// roles (role:sre).
	Approvers         []string
	MinApprovals      int
	AllowSelfApproval bool
	// Expires is how long a request stays open.
	Expires time.Duration
}

// String describes the policy in one line for a card.
func (a Approval) String() string {
	var b strings.Builder
	if a.MinApprovals == 1 {
		b.WriteString("1 approval")
	} else {
		fmt.Fprintf(&b, "%d approvals", a.MinApprovals)
	}
	if len(a.Approvers) > 0 {
		b.WriteString(" from " + strings.Join(a.Approvers, ", "))
	}
	if a.AllowSelfApproval {
		b.WriteString("; requester may approve")
	} else {
		b.WriteString("; not the requester")
	}
	fmt.Fprintf(&b, "; expires after %s", a.Expires)
	return b.String()
}

// Step returns the remediation step with id, or nil.
func (r *Runbook) Step(id string) *Remediation {
	for _, s := range r.Remediation {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// Severity is the incident severity for a signal's labels: a fixed
// severity if the runbook sets one, else the severity label mapped through
// the runbook's map, else the runbook's default.
func (r *Runbook) Severity(labels map[string]string) notify.Severity {
	if r.severity.fixed != "" {
		return r.severity.fixed
	}
	v := strings.ToLower(strings.TrimSpace(labels[r.severity.label]))
	if s, ok := r.severity.m[v]; ok {
		return s
	}
	if s, ok := parseSeverity(v); ok {
		return s
	}
	return r.severity.def
}

// Route is where an incident of severity sev goes; an unknown severity
// routes like warning.
func (r *Runbook) Route(sev notify.Severity) Route {
	if rt, ok := r.routes[sev]; ok {
		return rt
	}
	return r.routes[notify.SeverityWarning]
}

func parseSeverity(s string) (notify.Severity, bool) {
	switch notify.Severity(s) {
	case notify.SeverityCritical, notify.SeverityWarning, notify.SeverityInfo:
		return notify.Severity(s), true
	}
	return "", false
}

// Rendered is a runbook rendered for one incident.
type Rendered struct {
	Title       string
	Summary     string
	Assessment  []notify.Step
	Remediation []notify.Proposal
	Escalation  []notify.EscalationLevel
	RunbookURL  string
	// Causes are the common causes with their symptoms and checks rendered.
	Causes       []RenderedCause
	PostIncident []string
}

// RenderedCause is a cause rendered for one incident.
type RenderedCause struct {
	Name, Symptoms, Check string
	// Steps are the ids of the cause's remediation steps.
	Steps []string
}

// Render renders the runbook for an incident. A template or plan error in
// one part becomes that part's error text; it never fails the incident.
func (r *Runbook) Render(ctx context.Context, data actions.PlanData) Rendered {
	out := Rendered{
		Title:        text(r.title, data),
		Escalation:   r.Escalation,
		PostIncident: r.PostIncident,
	}
	switch {
	case !r.summary.IsZero():
		out.Summary = text(r.summary, data)
	case data.Annotations["summary"] != "":
		out.Summary = data.Annotations["summary"]
	default:
		out.Summary = r.Description
	}
	if !r.runbookURL.IsZero() {
		out.RunbookURL = text(r.runbookURL, data)
	} else {
		out.RunbookURL = data.Annotations["runbook_url"]
	}
	for _, s := range r.assessment {
		out.Assessment = append(out.Assessment, notify.Step{Text: text(s.text, data), Link: text(s.link, data)})
	}
	for _, c := range r.Causes {
		out.Causes = append(out.Causes, RenderedCause{Name: c.Name, Symptoms: text(c.Symptoms, data), Check: text(c.Check, data), Steps: c.Steps})
	}
	for _, s := range r.Remediation {
		p := notify.Proposal{ID: s.ID, Title: s.Title, Action: s.Action, Automatic: s.Automatic}
		if !s.Automatic {
			p.Approval = s.Approval.String()
		} else {
			// Said on the card: when it runs, and what still holds it back.
			p.Approval = "by incidentbot when the incident opens or reopens (within its cooldown; never while frozen)"
		}
		pctx, cancel := context.WithTimeout(ctx, PlanTimeout)
		plan, err := safePlan(pctx, s.Bound, data)
		cancel()
		if err != nil {
			p.Error = err.Error()
		} else {
			p.Plan = plan
			// The hash a request or a vote from this card binds to: the
			// plan resolved as a request would resolve it now. Resolving
			// reads no system (the clients are used only to run).
			pctx, cancel := context.WithTimeout(ctx, PlanTimeout)
			if rp, err := safeResolve(pctx, s, data); err == nil {
				p.Hash = rp.Hash
			}
			cancel()
		}
		out.Remediation = append(out.Remediation, p)
	}
	return out
}

// Resolve resolves the step's exact plan for data, the one whose hash
// approvals bind to. An action that cannot run yet resolves to its dry-run
// text, so an approval still binds to exactly what people read.
func (s *Remediation) Resolve(ctx context.Context, env actions.Env, data actions.PlanData) (actions.Plan, error) {
	if r, ok := s.Bound.(actions.Runner); ok {
		return r.Resolve(ctx, env, data)
	}
	text, err := s.Bound.Plan(ctx, data)
	if err != nil {
		return actions.Plan{}, err
	}
	return actions.NewPlan(s.Action, text+" (dry run: this action cannot run yet)", "dry-run", text)
}

// safeResolve resolves with no clients and turns a panic into an error.
func safeResolve(ctx context.Context, s *Remediation, data actions.PlanData) (p actions.Plan, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: resolve failed: %v", s.Action, r)
		}
	}()
	return s.Resolve(ctx, actions.Env{}, data)
}

// safePlan plans and turns a panic in an action into an error: one bad
// step must not take the incident down.
func safePlan(ctx context.Context, b actions.Bound, data actions.PlanData) (plan string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: plan failed: %v", b.Action(), r)
		}
	}()
	return b.Plan(ctx, data)
}

// text renders a text template; an error becomes readable text.
func text(t actions.Template, data actions.PlanData) string {
	s, err := t.Render(data)
	if err != nil {
		return fmt.Sprintf("%s [template error: %v]", t.String(), err)
	}
	return s
}

// Title is the runbook's title template source.
func (r *Runbook) Title() string { return r.title.String() }
