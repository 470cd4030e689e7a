package runbooks

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/incidentbot/incidentbot/strictyaml"
)

// Correlation is a group of runbooks that see the same faults from
// different sources: signals any of them matches that carry equal values
// for the labels On share one incident (see correlateSpec in format.go).
type Correlation struct {
	// Runbooks are the names of the group's runbooks, sorted.
	Runbooks []string
	// On are the labels whose values must be equal, sorted.
	On []string
}

// CorrelationKey is the group key of the incident a signal with these
// labels belongs to when its runbook correlates: the same for every
// runbook of the group, whichever source the signal came from. It is false
// when the runbook correlates with none, or the signal lacks one of the
// labels (an empty value counts as missing, as in Prometheus): such a
// signal opens an incident of its own.
func (r *Runbook) CorrelationKey(labels map[string]string) (string, bool) {
	c := r.Correlation
	if c == nil {
		return "", false
	}
	var b strings.Builder
	b.WriteString("correlate:{" + strings.Join(c.Runbooks, ",") + "}:{")
	for i, l := range c.On {
		v := labels[l]
		if v == "" {
			return "", false
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l + "=" + strconv.Quote(v))
	}
	b.WriteByte('}')
	return b.String(), true
}

// correlateDecl is a runbook's correlate section as written, with the
// lines its problems point at.
type correlateDecl struct {
	with      []string
	withLines []int
	on        []string
	onLine    int
}

var labelRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// buildCorrelate validates a runbook's own correlate section; which
// runbooks it names is checked with the whole set (correlateSet).
func buildCorrelate(c *collector, name string, sp *correlateSpec) *correlateDecl {
	if sp == nil {
		return nil
	}
	d := &correlateDecl{onLine: locate(c.root, "correlate.on").Line}
	ok := true
	if len(sp.With) == 0 {
		c.fail("correlate.with", "name at least one runbook to correlate with")
		ok = false
	}
	for i, w := range sp.With {
		p := strictyaml.Index("correlate.with", i)
		switch {
		case w == name:
			c.fail(p, "a runbook cannot correlate with itself")
			ok = false
		case slices.Contains(sp.With[:i], w):
			c.fail(p, "runbook %q listed twice", w)
			ok = false
		}
		d.with = append(d.with, w)
		d.withLines = append(d.withLines, locate(c.root, p).Line)
	}
	if len(sp.On) == 0 {
		c.fail("correlate.on", "name at least one label both sources carry (endpoint, program, …)")
		ok = false
	}
	for i, l := range sp.On {
		p := strictyaml.Index("correlate.on", i)
		switch {
		case !labelRE.MatchString(l):
			c.fail(p, "%q is not a label name", l)
			ok = false
		case l == "alertname":
			c.fail(p, "alertname differs between the sources a correlation joins: nothing would ever join")
			ok = false
		case slices.Contains(sp.On[:i], l):
			c.fail(p, "label %q listed twice", l)
			ok = false
		}
	}
	if !ok {
		return nil
	}
	d.on = slices.Sorted(slices.Values(sp.On))
	return d
}

// correlateSet links the runbooks that correlate into groups (a runbook
// named in another's with joins its group; links are symmetric and
// transitive), checks that every name exists and that a group correlates
// on one set of labels, and sets each member's Correlation.
func correlateSet(rbs []*Runbook) []*Problem {
	byName := map[string]*Runbook{}
	names := make([]string, 0, len(rbs))
	for _, r := range rbs {
		byName[r.Name] = r
		names = append(names, r.Name)
	}
	// parent links each correlated runbook towards its group's root.
	parent := map[string]string{}
	var find func(string) string
	find = func(n string) string {
		p, ok := parent[n]
		if !ok {
			parent[n] = n
			return n
		}
		if p == n {
			return n
		}
		root := find(p)
		parent[n] = root
		return root
	}
	var errs []*Problem
	for _, r := range rbs {
		if r.corr == nil {
			continue
		}
		for i, w := range r.corr.with {
			if byName[w] == nil {
				errs = append(errs, &Problem{File: r.File, Line: r.corr.withLines[i], Path: strictyaml.Index("correlate.with", i),
					Msg: fmt.Sprintf("unknown runbook %q%s", w, closest(w, names))})
				continue
			}
			if a, b := find(r.Name), find(w); a != b {
				parent[a] = b
			}
		}
	}
	groups := map[string][]*Runbook{}
	for _, r := range rbs {
		if _, linked := parent[r.Name]; linked {
			root := find(r.Name)
			groups[root] = append(groups[root], r)
		}
	}
	for _, root := range slices.Sorted(maps.Keys(groups)) {
		members := groups[root]
		var on []string
		var by *Runbook
		for _, r := range members {
			if r.corr == nil {
				continue
			}
			if by == nil {
				on, by = r.corr.on, r
				continue
			}
			if !slices.Equal(on, r.corr.on) {
				errs = append(errs, &Problem{File: r.File, Line: r.corr.onLine, Path: "correlate.on",
					Msg: fmt.Sprintf("[%s] differs from [%s] of runbook %q (%s:%d), which it correlates with: a group correlates on one set of labels",
						strings.Join(r.corr.on, ", "), strings.Join(on, ", "), by.Name, by.File, by.Line)})
			}
		}
		if len(members) < 2 || on == nil {
			continue
		}
		group := &Correlation{On: on}
		for _, r := range members {
			group.Runbooks = append(group.Runbooks, r.Name)
		}
		slices.Sort(group.Runbooks)
		for _, r := range members {
			r.Correlation = group
		}
	}
	return errs
}
