package rules

import (
	"slices"

	"github.com/prometheus/alertmanager/pkg/labels"
)

// Entry is one selector in an Index with the value it selects.
type Entry[T any] struct {
	Selector Selector
	// Priority: higher wins.
	Priority int
	// Fallback entries are considered only when no other entry matched.
	Fallback bool
	Value    T
}

// Index finds the winning entry for an input. The winner is the matching
// entry with the highest priority, then the highest Selector.Specificity,
// then the one loaded first; fallback entries are considered only when no
// other entry matches.
//
// Entries are indexed by one equality matcher each (alertname preferred)
// or, failing that, by their event types, so a match looks at the few
// candidates sharing the input's alertname or type plus the entries that
// have neither, not at every entry.
type Index[T any] struct {
	entries []Entry[T]
	// byLabel maps label name → label value → entry positions.
	byLabel map[string]map[string][]int
	// labelNames lists byLabel's keys, alertname first.
	labelNames []string
	byType     map[string][]int
	scan       []int
	fallbacks  []int
}

// indexLabel is the label preferred as an index key.
const indexLabel = "alertname"

// NewIndex builds an index over entries; their order is the load order.
func NewIndex[T any](entries []Entry[T]) *Index[T] {
	ix := &Index[T]{
		entries: slices.Clone(entries),
		byLabel: map[string]map[string][]int{},
		byType:  map[string][]int{},
	}
	for i, e := range ix.entries {
		if e.Fallback {
			ix.fallbacks = append(ix.fallbacks, i)
			continue
		}
		if m := indexMatcher(e.Selector.Matchers); m != nil {
			vals := ix.byLabel[m.Name]
			if vals == nil {
				vals = map[string][]int{}
				ix.byLabel[m.Name] = vals
				ix.labelNames = append(ix.labelNames, m.Name)
			}
			vals[m.Value] = append(vals[m.Value], i)
			continue
		}
		if len(e.Selector.Types) > 0 {
			for _, t := range e.Selector.Types {
				ix.byType[t] = append(ix.byType[t], i)
			}
			continue
		}
		ix.scan = append(ix.scan, i)
	}
	slices.SortStableFunc(ix.labelNames, func(a, b string) int {
		switch {
		case a == indexLabel && b != indexLabel:
			return -1
		case b == indexLabel && a != indexLabel:
			return 1
		}
		return 0
	})
	return ix
}

// indexMatcher picks the equality matcher to index an entry by: alertname
// if there is one, else the first equality matcher with a non-empty value
// (an empty value also matches a missing label, which a map lookup would
// miss).
func indexMatcher(ms labels.Matchers) *labels.Matcher {
	var first *labels.Matcher
	for _, m := range ms {
		if m.Type != labels.MatchEqual || m.Value == "" {
			continue
		}
		if m.Name == indexLabel {
			return m
		}
		if first == nil {
			first = m
		}
	}
	return first
}

// Len is the number of entries.
func (ix *Index[T]) Len() int { return len(ix.entries) }

// Entries returns the entries in load order.
func (ix *Index[T]) Entries() []Entry[T] { return slices.Clone(ix.entries) }

// Match returns the winning entry for in, and false when none matches.
func (ix *Index[T]) Match(in Input) (Entry[T], bool) {
	best := -1
	consider := func(cands []int) {
		for _, i := range cands {
			if (best < 0 || ix.better(i, best)) && ix.entries[i].Selector.Matches(in) {
				best = i
			}
		}
	}
	for _, name := range ix.labelNames {
		if v, ok := in.Labels[name]; ok {
			consider(ix.byLabel[name][v])
		}
	}
	consider(ix.byType[in.Type])
	consider(ix.scan)
	if best < 0 {
		consider(ix.fallbacks)
	}
	if best < 0 {
		var zero Entry[T]
		return zero, false
	}
	return ix.entries[best], true
}

// better reports whether entry i beats entry j.
func (ix *Index[T]) better(i, j int) bool {
	a, b := &ix.entries[i], &ix.entries[j]
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	if sa, sb := a.Selector.Specificity(), b.Selector.Specificity(); sa != sb {
		return sa > sb
	}
	return i < j
}
