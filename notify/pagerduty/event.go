package pagerduty

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/PagerDuty/go-pagerduty"

	"github.com/incidentbot/incidentbot/notify"
)

// Events API v2 limits.
const (
	maxSummary   = 1024
	maxDedupKey  = 255
	maxEventSize = 512 << 10
	maxAlerts    = 20
)

// Event builds the Events API v2 event for p. The routing key is left to
// the caller. Acknowledge and resolve carry no payload.
func Event(p notify.Page, opts EventOptions) (*pagerduty.V2Event, error) {
	if p.DedupKey == "" {
		return nil, fmt.Errorf("page %s: empty dedup key", p.Action)
	}
	e := &pagerduty.V2Event{Action: string(p.Action), DedupKey: DedupKey(p.DedupKey)}
	switch p.Action {
	case notify.PageAcknowledge, notify.PageResolve:
		return e, nil
	case notify.PageTrigger:
	default:
		return nil, fmt.Errorf("page: unknown action %q", p.Action)
	}

	inc := p.Incident
	l := inc.Labels
	e.Client = opts.Client
	e.ClientURL = opts.ClientURL
	e.Payload = &pagerduty.V2Payload{
		Summary:   Summary(inc),
		Source:    first(opts.Source, pick(l, "instance", "pod", "service", "job"), inc.Source, "incidentbot"),
		Severity:  Severity(inc.Severity),
		Component: pick(l, "component", "service", "app", "deployment", "program"),
		Group:     pick(l, "group", "namespace", "cluster"),
		Class:     first(pick(l, "class", "alertname"), inc.Runbook),
		Details:   details(inc, maxAlerts),
	}
	if !inc.StartedAt.IsZero() {
		e.Payload.Timestamp = inc.StartedAt.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	e.Links = links(inc)

	// Keep under the 512 KB event limit: drop the bulky parts first.
	if b, _ := json.Marshal(e); len(b) > maxEventSize-4096 {
		e.Payload.Details = details(inc, 0)
		if b, _ := json.Marshal(e); len(b) > maxEventSize-4096 {
			e.Payload.Details = map[string]any{"incident_id": inc.ID, "note": "details omitted: event too large"}
		}
	}
	return e, nil
}

// EventOptions are the sink-wide parts of a trigger.
type EventOptions struct {
	Client    string
	ClientURL string
	// Source overrides payload.source; empty derives it from the labels.
	Source string
}

// DedupKey returns key when it fits PagerDuty's 255 characters, else its
// SHA-256 in hex, so that a long key maps to the same alert every time.
func DedupKey(key string) string {
	if len(key) <= maxDedupKey {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Summary is the page's one line: id, title and summary, ≤ 1024 chars.
func Summary(inc notify.Incident) string {
	s := strings.TrimSpace(inc.ID + " " + strings.Join(strings.Fields(inc.Title), " "))
	if sum := strings.Join(strings.Fields(inc.Summary), " "); sum != "" {
		s += ": " + sum
	}
	if s == "" {
		s = "incident"
	}
	return notify.Truncate(s, maxSummary)
}

// Severity maps an incident severity to the Events API's enum.
func Severity(s notify.Severity) string {
	switch s {
	case notify.SeverityCritical:
		return "critical"
	case notify.SeverityWarning:
		return "warning"
	case notify.SeverityInfo:
		return "info"
	default:
		return "error"
	}
}

func pick(labels map[string]string, keys ...string) string {
	for _, k := range keys {
		if v := labels[k]; v != "" {
			return v
		}
	}
	return ""
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

type alertDetail struct {
	Name         string            `json:"name"`
	Status       string            `json:"status"`
	Summary      string            `json:"summary,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	StartsAt     string            `json:"starts_at,omitempty"`
	EndsAt       string            `json:"ends_at,omitempty"`
	GeneratorURL string            `json:"generator_url,omitempty"`
}

type proposalDetail struct {
	ID        string `json:"id"`
	Title     string `json:"title"`
	Action    string `json:"action"`
	Plan      string `json:"plan,omitempty"`
	Approval  string `json:"approval,omitempty"`
	Automatic bool   `json:"automatic"`
	Error     string `json:"error,omitempty"`
}

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// details is payload.custom_details, with at most maxAlerts alerts.
func details(inc notify.Incident, maxAlerts int) map[string]any {
	firing, resolved := inc.Counts()
	d := map[string]any{
		"incident_id":     inc.ID,
		"incident_key":    inc.Key,
		"status":          string(inc.Status),
		"source":          inc.Source,
		"labels":          inc.Labels,
		"alerts_firing":   firing,
		"alerts_resolved": resolved,
	}
	if inc.Runbook != "" {
		d["runbook"] = inc.Runbook
	}
	if inc.RunbookURL != "" {
		d["runbook_url"] = inc.RunbookURL
	}
	if inc.Reopened > 0 {
		d["reopened"] = inc.Reopened
	}
	var alerts []alertDetail
	for i, a := range inc.Alerts {
		if i == maxAlerts {
			d["alerts_not_shown"] = len(inc.Alerts) - maxAlerts
			break
		}
		alerts = append(alerts, alertDetail{
			Name: a.Name, Status: string(a.Status), Summary: notify.Truncate(a.Summary, 1024), Labels: a.Labels,
			StartsAt: ts(a.StartsAt), EndsAt: ts(a.EndsAt), GeneratorURL: a.GeneratorURL,
		})
	}
	if len(alerts) > 0 {
		d["alerts"] = alerts
	}
	if inc.TruncatedAlerts > 0 {
		d["alerts_truncated_by_alertmanager"] = inc.TruncatedAlerts
	}
	var steps []string
	for _, s := range inc.Assessment {
		if s.Link != "" {
			steps = append(steps, s.Text+" ("+s.Link+")")
		} else {
			steps = append(steps, s.Text)
		}
	}
	if len(steps) > 0 {
		d["assessment"] = steps
	}
	var proposals []proposalDetail
	for _, p := range inc.Remediation {
		proposals = append(proposals, proposalDetail{
			ID: p.ID, Title: p.Title, Action: p.Action, Plan: notify.Truncate(p.Plan, 4096),
			Approval: p.Approval, Automatic: p.Automatic, Error: p.Error,
		})
	}
	if len(proposals) > 0 {
		d["proposed_remediation"] = proposals
	}
	var esc []string
	for _, l := range inc.Escalation {
		when := "immediately"
		if l.After > 0 {
			when = "after " + notify.HumanDuration(l.After)
		}
		esc = append(esc, fmt.Sprintf("%s: %s → %s", l.Name, when, l.Who))
	}
	if len(esc) > 0 {
		d["escalation"] = esc
	}
	return d
}

// links lists the runbook and the incident's links (Slack card,
// Alertmanager, …) as Events API links; non-http(s) URLs are skipped.
func links(inc notify.Incident) []any {
	var out []any
	add := func(href, text string) {
		u, err := url.Parse(href)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return
		}
		out = append(out, map[string]string{"href": href, "text": notify.Truncate(text, 256)})
	}
	if inc.RunbookURL != "" {
		add(inc.RunbookURL, "Runbook")
	}
	for _, l := range inc.Links {
		add(l.URL, first(l.Text, l.URL))
	}
	return out
}
