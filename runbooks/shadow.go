package runbooks

import (
	"fmt"
	"slices"

	"github.com/prometheus/alertmanager/pkg/labels"
)

// shadowed warns about runbooks that can never win a match: another
// runbook matches every signal they match and beats them (higher
// priority, or the same selector loaded first). Fallbacks are compared
// with fallbacks only, as the index considers them only when nothing else
// matched.
func shadowed(rbs []*Runbook) []*Problem {
	var warns []*Problem
	for j, b := range rbs {
		for i, a := range rbs {
			if i == j || a.Fallback != b.Fallback || !covers(a, b) {
				continue
			}
			var why string
			switch {
			case a.Priority > b.Priority:
				why = fmt.Sprintf("priority %d over %d", a.Priority, b.Priority)
			case a.Priority == b.Priority && i < j && covers(b, a):
				why = fmt.Sprintf("same match and priority %d, loaded first", a.Priority)
			default:
				continue
			}
			warns = append(warns, &Problem{File: b.File, Line: b.Line,
				Msg: fmt.Sprintf("runbook %q can never match: runbook %q (%s:%d) matches every signal it matches and wins (%s); change its match or priority",
					b.Name, a.Name, a.File, a.Line, why)})
			break
		}
	}
	return warns
}

// covers reports whether every signal b's selector accepts is accepted by
// a's too: a's source and type lists are empty or contain b's, and each of
// a's matchers is one of b's.
func covers(a, b *Runbook) bool {
	sa, sb := a.Selector, b.Selector
	within := func(outer, inner []string) bool {
		if len(outer) == 0 {
			return true
		}
		if len(inner) == 0 {
			return false
		}
		for _, s := range inner {
			if !slices.Contains(outer, s) {
				return false
			}
		}
		return true
	}
	if !within(sa.Sources, sb.Sources) || !within(sa.Types, sb.Types) {
		return false
	}
	for _, m := range sa.Matchers {
		if !slices.ContainsFunc(sb.Matchers, func(n *labels.Matcher) bool { return n.String() == m.String() }) {
			return false
		}
	}
	return true
}
