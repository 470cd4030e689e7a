package runbooks

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/strictyaml"
)

// KeyRefRE is what a routing key reference (pagerduty_key_ref) looks like,
// and so what a key's name may be in pagerduty.routing_keys and
// pagerduty.routing_keys_dir: a Kubernetes Secret's key names.
var KeyRefRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// looksLikeRoutingKey reports whether s looks like a PagerDuty integration
// key (32 letters and digits) rather than a name for one.
func looksLikeRoutingKey(s string) bool {
	if len(s) != 32 {
		return false
	}
	digit := false
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digit = true
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		default:
			return false
		}
	}
	return digit
}

// KeyRefs lists the routing key references the set's runbooks use, sorted.
func (s *Set) KeyRefs() []string {
	var out []string
	for _, r := range s.runbooks {
		for _, p := range r.keyRefs {
			out = append(out, p.Msg)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// CheckKeyRefs reports every routing.<severity>.pagerduty_key_ref that
// names none of known, the configured keys' names, each at its file:line.
func (s *Set) CheckKeyRefs(known []string) error {
	var ps []*Problem
	for _, r := range s.runbooks {
		for _, p := range r.keyRefs {
			if slices.Contains(known, p.Msg) {
				continue
			}
			msg := fmt.Sprintf("no PagerDuty routing key %q is configured: name it in pagerduty.routing_keys or as a file in pagerduty.routing_keys_dir", p.Msg)
			if len(known) > 0 {
				q := make([]string, len(known))
				for i, k := range slices.Sorted(slices.Values(known)) {
					q[i] = fmt.Sprintf("%q", k)
				}
				msg += " (configured: " + strings.Join(q, ", ") + ")"
			}
			ps = append(ps, &Problem{File: p.File, Line: p.Line, Path: p.Path, Msg: msg})
		}
	}
	slices.SortFunc(ps, func(a, b *Problem) int { return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line)) })
	return joinProblems(ps)
}

// CheckSteps asks check about every remediation step's bound action (its
// parameters against the configuration, say) and reports the problems at
// their runbook's file:line.
func (s *Set) CheckSteps(check func(actions.Bound) []*strictyaml.Error) error {
	var ps []*Problem
	for _, r := range s.runbooks {
		for _, st := range r.Remediation {
			if st.Bound == nil {
				continue
			}
			for _, e := range check(st.Bound) {
				ps = append(ps, &Problem{File: r.File, Line: e.Line, Path: e.Path, Msg: e.Msg})
			}
		}
	}
	slices.SortFunc(ps, func(a, b *Problem) int { return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line)) })
	return joinProblems(ps)
}
