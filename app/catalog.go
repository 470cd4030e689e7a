// Package app wires incidentbot's parts together for the commands: the
// runbook catalog the engine uses, the sinks chosen by configuration, the
// HTTP server, and the serve/watch/check/replay flows. It holds no logic of
// its own beyond choosing and connecting.
package app

import (
	"context"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/rpcview"
	"github.com/incidentbot/incidentbot/rules"
	"github.com/incidentbot/incidentbot/runbooks"
	"github.com/incidentbot/incidentbot/signal"
)

// Catalog adapts a runbook set to the engine.
type Catalog struct {
	Set *runbooks.Set
	// RPC is the watchers' live view, for plans that name a backup.
	RPC rpcview.Reader
	// DefaultChannel is used when a runbook routes a severity nowhere.
	DefaultChannel string
}

// Match implements engine.Catalog.
func (c Catalog) Match(s signal.Signal) (engine.Runbook, bool) {
	rb := c.Set.Match(rules.Input{Source: s.Source, Type: s.Type, Labels: s.Labels})
	if rb == nil {
		return nil, false
	}
	return runbook{rb: rb, c: c}, true
}

// Get implements engine.Catalog.
func (c Catalog) Get(name string) (engine.Runbook, bool) {
	rb := c.Set.Get(name)
	if rb == nil {
		return nil, false
	}
	return runbook{rb: rb, c: c}, true
}

type runbook struct {
	rb *runbooks.Runbook
	c  Catalog
}

func (r runbook) Name() string { return r.rb.Name }

func (r runbook) Severity(labels map[string]string) notify.Severity { return r.rb.Severity(labels) }

func (r runbook) Route(sev notify.Severity) engine.Route {
	rt := r.rb.Route(sev)
	if rt.Channel == "" {
		rt.Channel = r.c.DefaultChannel
	}
	return engine.Route{Channel: rt.Channel, Page: rt.Page, PagerDutyKey: rt.PagerDutyKey}
}

func (r runbook) Escalation() []notify.EscalationLevel { return r.rb.Escalation }

// CorrelationKey makes runbooks with a correlate section engine.Correlators.
func (r runbook) CorrelationKey(labels map[string]string) (string, bool) {
	return r.rb.CorrelationKey(labels)
}

var _ engine.Correlator = runbook{}

// Step makes runbooks engine.Steppers: a remediation step's policy.
func (r runbook) Step(id string) (engine.StepPolicy, bool) {
	s := r.rb.Step(id)
	if s == nil {
		return engine.StepPolicy{}, false
	}
	a := s.Approval
	return engine.StepPolicy{Title: s.Title, Action: s.Action, Automatic: s.Automatic, Cooldown: s.Cooldown,
		Approval: engine.ApprovalPolicy{Approvers: a.Approvers, MinApprovals: a.MinApprovals, AllowSelfApproval: a.AllowSelfApproval, Expires: a.Expires}}, true
}

var _ engine.Stepper = runbook{}

// RunPolicy makes runbooks engine.Guarded: how a step's run is checked
// and undone.
func (r runbook) RunPolicy(id string) (engine.RunPolicy, bool) {
	s := r.rb.Step(id)
	if s == nil {
		return engine.RunPolicy{}, false
	}
	return engine.RunPolicy{VerifyWithin: s.VerifyWithin, IgnoreIncident: s.VerifyIgnoresIncident, Revert: s.Revert}, true
}

// Breaker is the runbook's circuit breaker.
func (r runbook) Breaker() engine.BreakerPolicy {
	return engine.BreakerPolicy{Failures: r.rb.Breaker.Failures, Window: r.rb.Breaker.Window}
}

var _ engine.Guarded = runbook{}

// AutomaticSteps makes runbooks engine.AutoSteppers: the steps marked
// `automatic: true`, which the bot requests when an incident opens.
func (r runbook) AutomaticSteps() []string {
	var out []string
	for _, s := range r.rb.Remediation {
		if s.Automatic {
			out = append(out, s.ID)
		}
	}
	return out
}

var _ engine.AutoStepper = runbook{}

func (r runbook) Render(ctx context.Context, s signal.Signal) engine.Rendered {
	out := r.rb.Render(ctx, actions.DataFromSignal(s, r.c.RPC))
	steps := out.Assessment
	for _, cause := range out.Causes {
		text := "Cause — " + cause.Name
		if cause.Symptoms != "" {
			text += ": " + cause.Symptoms
		}
		if cause.Check != "" {
			text += "\nCheck: " + cause.Check // the sinks render it on a line of its own
		}
		steps = append(steps, notify.Step{Text: text})
	}
	return engine.Rendered{
		Title: out.Title, Summary: out.Summary, RunbookURL: out.RunbookURL,
		Assessment: steps, Remediation: out.Remediation, Escalation: out.Escalation,
	}
}
