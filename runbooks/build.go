package runbooks

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/rules"
	"github.com/incidentbot/incidentbot/strictyaml"
)

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	stepIDRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	approverRE = regexp.MustCompile(`^([UWS][A-Z0-9]{2,}|@[a-z0-9][a-z0-9._-]*|role:[a-z0-9][a-z0-9_-]*)$`)
	userIDRE   = regexp.MustCompile(`^[UW][A-Z0-9]{2,}$`)
	channelRE  = regexp.MustCompile(`^(#[a-z0-9][a-z0-9._-]*|[CG][A-Z0-9]{2,})$`)
	// mentionRE is a Slack user (U…, W…) or user group (S…) id.
	mentionRE = regexp.MustCompile(`^[UWS][A-Z0-9]{2,20}$`)
)

// build decodes and validates one runbook document.
func build(c *collector, reg *actions.Registry, doc *yaml.Node) *Runbook {
	var sp runbookSpec
	c.add(strictyaml.Decode(doc, "", &sp))
	r := &Runbook{
		Name:         sp.Name,
		Description:  sp.Description,
		Priority:     sp.Priority,
		Fallback:     sp.Fallback,
		Detection:    sp.Detection,
		File:         c.file,
		Line:         locate(doc, "name").Line,
		title:        sp.Title,
		summary:      sp.Summary,
		runbookURL:   sp.RunbookURL,
		PostIncident: sp.PostIncident,
	}
	if sp.Name != "" && !nameRE.MatchString(sp.Name) {
		c.fail("name", "%q is not a valid runbook name (lower-case letters, digits, '.', '_', '-')", sp.Name)
	}
	// match
	r.Selector = rules.Selector{Sources: sp.Match.Sources, Types: sp.Match.Types}
	for _, m := range sp.Match.Matchers {
		r.Selector.Matchers = append(r.Selector.Matchers, m.ms...)
	}
	for i, s := range sp.Match.Sources {
		if strings.TrimSpace(s) == "" {
			c.fail(strictyaml.Index("match.sources", i), "empty source")
		}
	}
	for i, t := range sp.Match.Types {
		if strings.TrimSpace(t) == "" {
			c.fail(strictyaml.Index("match.types", i), "empty type")
		}
	}
	if !sp.Fallback && len(sp.Match.Types) == 0 && len(sp.Match.Matchers) == 0 {
		c.fail("match", "needs types or matchers (or fallback: true for a catch-all)")
	}
	r.severity = buildSeverity(c, sp.Severity)
	r.routes, r.keyRefs = buildRoutes(c, sp.Routing)
	r.corr = buildCorrelate(c, sp.Name, sp.Correlate)
	r.Breaker = buildBreaker(c, sp.Breaker)
	for _, s := range sp.Assessment {
		r.assessment = append(r.assessment, step{text: s.Text, link: s.Link})
	}
	ids := map[string]string{}
	for i, cs := range sp.Causes {
		cause := Cause{Name: cs.Name, Symptoms: cs.Symptoms, Check: cs.Check}
		for j, rs := range cs.Remediation {
			p := fmt.Sprintf("causes[%d].remediation[%d]", i, j)
			if st := buildStep(c, reg, p, rs, ids); st != nil {
				st.Cause = cs.Name
				r.Remediation = append(r.Remediation, st)
				cause.Steps = append(cause.Steps, st.ID)
			}
		}
		r.Causes = append(r.Causes, cause)
	}
	for j, rs := range sp.Remediation {
		if st := buildStep(c, reg, fmt.Sprintf("remediation[%d]", j), rs, ids); st != nil {
			r.Remediation = append(r.Remediation, st)
		}
	}
	var prev time.Duration
	for i, e := range sp.Escalation {
		after := time.Duration(e.After)
		if i > 0 && after <= prev {
			c.fail(strictyaml.Index("escalation", i)+".after", "%s is not after the previous level (%s)", after, prev)
		}
		if after > maxEscalationAfter {
			c.fail(strictyaml.Index("escalation", i)+".after", "%s is too far: escalation timers reach %s at most", after, maxEscalationAfter)
		}
		prev = after
		for k, m := range e.Mention {
			if !mentionRE.MatchString(m) {
				c.fail(strictyaml.Index("escalation", i)+"."+strictyaml.Index("mention", k),
					"%q is not a Slack user id (U…/W…) or user group id (S…); find it in the member's or group's profile", m)
			}
		}
		lp := strictyaml.Index("escalation", i)
		if ref := keyRef(c, lp+".pagerduty_key_ref", e.PagerDutyKeyRef); ref != nil {
			r.keyRefs = append(r.keyRefs, ref)
		}
		if e.PagerDutyKeyRef != "" && !e.Page {
			c.warn(lp+".pagerduty_key_ref", "set but the level does not page (page: true)")
		}
		r.Escalation = append(r.Escalation, notify.EscalationLevel{Name: e.Name, After: after, Who: e.Notify, Mention: e.Mention,
			Page: e.Page, PagerDutyKeyRef: e.PagerDutyKeyRef})
	}
	switch {
	case sp.EscalationRepeat < 0 || sp.EscalationRepeat > 10:
		c.fail("escalation_repeat", "%d: want 0 to 10 rounds", sp.EscalationRepeat)
	case sp.EscalationRepeat > 0 && (len(r.Escalation) == 0 || r.Escalation[len(r.Escalation)-1].After <= 0):
		c.fail("escalation_repeat", "repeats a ladder whose last level is not after 0s")
	default:
		r.Escalation = repeatLadder(r.Escalation, sp.EscalationRepeat)
		if n := len(r.Escalation); n > 0 && r.Escalation[n-1].After > maxEscalationAfter {
			c.fail("escalation_repeat", "%d rounds reach %s: escalation timers reach %s at most", sp.EscalationRepeat, r.Escalation[n-1].After, maxEscalationAfter)
		}
	}
	// Count the steps written, not those that loaded: a step that failed
	// validation is already an error, not a missing step.
	written := len(sp.Remediation)
	for _, cs := range sp.Causes {
		written += len(cs.Remediation)
	}
	if written == 0 && !sp.Fallback {
		c.warn("", "runbook %q has no remediation steps", sp.Name)
	}
	if len(sp.Assessment) == 0 {
		c.warn("", "runbook %q has no assessment steps", sp.Name)
	}
	if len(sp.Escalation) == 0 {
		c.warn("", "runbook %q has no escalation levels", sp.Name)
	}
	return r
}

func buildSeverity(c *collector, sp severitySpec) severityRule {
	sr := severityRule{label: sp.Label, def: DefaultSeverity, m: map[string]notify.Severity{}}
	if sr.label == "" {
		sr.label = DefaultSeverityLabel
	}
	parse := func(p, v string) notify.Severity {
		s, ok := parseSeverity(v)
		if !ok {
			c.fail(p, "unknown severity %q: want critical, warning or info", v)
		}
		return s
	}
	if sp.Default != "" {
		sr.def = parse("severity.default", sp.Default)
	}
	if sp.Fixed != "" {
		sr.fixed = parse("severity.fixed", sp.Fixed)
	}
	for _, k := range slices.Sorted(maps.Keys(sp.Map)) {
		sr.m[strings.ToLower(k)] = parse("severity.map."+k, sp.Map[k])
	}
	return sr
}

func buildRoutes(c *collector, sp routingSpec) (map[notify.Severity]Route, []*Problem) {
	routes := DefaultRouting()
	var refs []*Problem
	for sev, rs := range map[notify.Severity]*routeSpec{
		notify.SeverityCritical: sp.Critical, notify.SeverityWarning: sp.Warning, notify.SeverityInfo: sp.Info,
	} {
		if rs == nil {
			continue
		}
		rt := routes[sev]
		p := "routing." + string(sev)
		if rs.Channel != "" {
			if !channelRE.MatchString(rs.Channel) {
				c.fail(p+".channel", "%q is not a Slack channel (#name or a channel id)", rs.Channel)
			}
			rt.Channel = rs.Channel
		}
		if rs.Page != nil {
			rt.Page = *rs.Page
		}
		rt.PagerDutyKey = rs.PagerDutyKeyRef
		if ref := keyRef(c, p+".pagerduty_key_ref", rs.PagerDutyKeyRef); ref != nil {
			refs = append(refs, ref)
		}
		if rt.PagerDutyKey != "" && !rt.Page {
			c.warn(p+".pagerduty_key_ref", "set but %s does not page", sev)
		}
		switch {
		case sev == notify.SeverityCritical && !rt.Page:
			c.warn(p+".page", "critical does not page (the course's rule: critical pages)")
		case sev != notify.SeverityCritical && rt.Page:
			c.warn(p+".page", "%s pages (the course's rule: only critical pages, warning goes to Slack)", sev)
		}
		routes[sev] = rt
	}
	return routes, refs
}

// keyRef validates a routing key reference at path; it returns the
// reference (with its position, for CheckKeyRefs) when there is a valid
// one, nil otherwise.
func keyRef(c *collector, path, ref string) *Problem {
	if ref == "" {
		return nil
	}
	// Never echo a value that may be the key itself.
	switch {
	case looksLikeRoutingKey(ref):
		c.fail(path, "looks like a routing key itself, not the name of one: put the key in pagerduty.routing_keys (or a file in pagerduty.routing_keys_dir) and name it here")
	case !KeyRefRE.MatchString(ref):
		c.fail(path, "not a key name: want letters, digits, '.', '_' or '-' (at most 63), naming a key in pagerduty.routing_keys")
	default:
		return c.problem(path, "%s", ref)
	}
	return nil
}

// buildStep validates one remediation step; ids collects the step ids
// already used in the runbook.
func buildStep(c *collector, reg *actions.Registry, p string, rs remediationSpec, ids map[string]string) *Remediation {
	st := &Remediation{ID: rs.ID, Title: rs.Title, Action: rs.Action, Cooldown: DefaultCooldown}
	ok := true
	if rs.ID != "" {
		if !stepIDRE.MatchString(rs.ID) {
			c.fail(p+".id", "%q is not a valid step id (lower-case letters, digits, '_', '-')", rs.ID)
			ok = false
		}
		if strings.HasPrefix(rs.ID, RevertPrefix) {
			c.fail(p+".id", "%q: step ids starting with %q are reserved for the revert steps the bot offers", rs.ID, RevertPrefix)
			ok = false
		}
		if prev, dup := ids[rs.ID]; dup {
			c.fail(p+".id", "duplicate step id %q (also %s)", rs.ID, prev)
			ok = false
		}
		ids[rs.ID] = p
	}
	if rs.Action != "" {
		a, found := reg.Lookup(rs.Action)
		if !found {
			c.fail(p+".action", "unknown action %q%s", rs.Action, closest(rs.Action, reg.Names()))
			ok = false
		} else {
			params := &rs.Params
			if params.Kind == 0 {
				params = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: locate(c.root, p).Line}
			}
			b, err := a.Load(params, p)
			if err != nil {
				c.add(err)
				ok = false
			}
			st.Bound = b
		}
	}
	if rs.Cooldown != nil {
		st.Cooldown = time.Duration(*rs.Cooldown)
	}
	if !buildCheck(c, p, rs, st) {
		ok = false
	}
	if rs.Automatic != nil {
		st.Automatic = *rs.Automatic
	}
	st.Approval = Approval{MinApprovals: DefaultMinApprovals, Expires: DefaultApprovalTTL}
	if ap := rs.Approval; ap != nil {
		st.Approval.Approvers = ap.Approvers
		if ap.MinApprovals != nil {
			st.Approval.MinApprovals = *ap.MinApprovals
		}
		if ap.AllowSelfApproval != nil {
			st.Approval.AllowSelfApproval = *ap.AllowSelfApproval
		}
		if ap.Expires != nil {
			st.Approval.Expires = time.Duration(*ap.Expires)
		}
	}
	ap := st.Approval
	for i, a := range ap.Approvers {
		if !approverRE.MatchString(a) {
			c.fail(strictyaml.Index(p+".approval.approvers", i), "%q is not a Slack user id (U…), group handle (@name) or role (role:name)", a)
			ok = false
		}
	}
	if ap.MinApprovals < 1 {
		c.fail(p+".approval.min_approvals", "must be at least 1")
		ok = false
	}
	if len(ap.Approvers) > 0 && !slices.ContainsFunc(ap.Approvers, func(a string) bool { return !userIDRE.MatchString(a) }) &&
		ap.MinApprovals > len(ap.Approvers) {
		c.fail(p+".approval.min_approvals", "%d approvals needed but only %d approvers listed", ap.MinApprovals, len(ap.Approvers))
		ok = false
	}
	if ap.Expires <= 0 {
		c.fail(p+".approval.expires", "must be positive")
		ok = false
	}
	needsApproval := !st.Automatic && rs.Action != "manual"
	if needsApproval && len(ap.Approvers) == 0 && rs.Action != "" {
		c.fail(p+".approval.approvers", "required: who may approve %q (or set automatic: true)", rs.ID)
		ok = false
	}
	if st.Automatic && rs.Approval != nil {
		c.warn(p+".automatic", "automatic step runs without approval; its approval policy is ignored")
	}
	if !ok {
		return nil
	}
	return st
}

// buildCheck validates a step's verify and revert keys.
func buildCheck(c *collector, p string, rs remediationSpec, st *Remediation) bool {
	ok := true
	if rs.Verify != nil && rs.Verify.Within != nil {
		w := time.Duration(*rs.Verify.Within)
		switch {
		case w <= 0:
			c.fail(p+".verify.within", "must be a positive duration like 5m")
			ok = false
		case w > MaxVerifyWithin:
			c.fail(p+".verify.within", "%s is too long: at most %s", w, MaxVerifyWithin)
			ok = false
		}
		st.VerifyWithin = w
	}
	if rs.Verify != nil && rs.Verify.IncidentResolves != nil {
		if rs.Verify.Within == nil {
			c.fail(p+".verify.incident_resolves", "needs verify.within: the window the incident must resolve in")
			ok = false
		}
		st.VerifyIgnoresIncident = !*rs.Verify.IncidentResolves
	}
	_, reverts := st.Bound.(actions.Reverter)
	st.Revert = RevertNever
	if reverts {
		st.Revert = RevertManual
	}
	if rs.Revert == nil {
		return ok
	}
	switch m := *rs.Revert; m {
	case RevertAuto, RevertManual:
		if st.Bound != nil && !reverts {
			c.fail(p+".revert", "%s: action %q cannot revert its change (use revert: never)", m, rs.Action)
			return false
		}
		st.Revert = m
	case RevertNever:
		st.Revert = m
	default:
		c.fail(p+".revert", "%q: want auto, manual or never", m)
		return false
	}
	return ok
}

// buildBreaker fills in the runbook's circuit breaker.
func buildBreaker(c *collector, sp *breakerSpec) Breaker {
	b := Breaker{Failures: DefaultBreakerFailures, Window: DefaultBreakerWindow}
	if sp == nil {
		return b
	}
	if sp.Failures != nil {
		if *sp.Failures < 1 {
			c.fail("breaker.failures", "must be at least 1")
		}
		b.Failures = *sp.Failures
	}
	if sp.Window != nil {
		if *sp.Window <= 0 {
			c.fail("breaker.window", "must be a positive duration like 1h")
		}
		b.Window = time.Duration(*sp.Window)
	}
	return b
}

// closest suggests the known name nearest to s.
func closest(s string, names []string) string {
	best, bestD := "", 4
	for _, n := range names {
		if d := strictyaml.Distance(s, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// maxEscalationAfter bounds a level's delay, repeats included: timers are
// message schedules, kept no longer than the timer stream keeps messages.
const maxEscalationAfter = 7 * 24 * time.Hour

// repeatLadder appends rounds more copies of the ladder, each starting
// where the previous ended plus the gap between its first two levels (or,
// for a single level, its own after), named "(round N)".
func repeatLadder(levels []notify.EscalationLevel, rounds int) []notify.EscalationLevel {
	if rounds <= 0 || len(levels) == 0 {
		return levels
	}
	period := levels[len(levels)-1].After
	if len(levels) > 1 {
		period += levels[1].After - levels[0].After
	} else {
		period += levels[0].After
	}
	out := slices.Clone(levels)
	for round := 1; round <= rounds; round++ {
		for _, l := range levels {
			l.After += time.Duration(round) * period
			l.Name = fmt.Sprintf("%s (round %d)", l.Name, round+1)
			out = append(out, l)
		}
	}
	return out
}
