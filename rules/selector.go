package rules

import (
	"slices"

	"github.com/prometheus/alertmanager/pkg/labels"
)

// Input is what an event offers for matching.
type Input struct {
	// Source is the event source: "alertmanager", "solana".
	Source string
	// Type is the event type: "alertmanager.alert", "solana.rpc.unhealthy".
	Type string
	// Labels are the signal's labels.
	Labels map[string]string
}

// Selector says which events a runbook applies to. Empty Sources or Types
// accept any; every matcher must match the labels (a missing label counts
// as the empty string, as in Alertmanager).
type Selector struct {
	Sources  []string
	Types    []string
	Matchers labels.Matchers
}

// Matches reports whether the selector accepts in.
func (s Selector) Matches(in Input) bool {
	if len(s.Sources) > 0 && !slices.Contains(s.Sources, in.Source) {
		return false
	}
	if len(s.Types) > 0 && !slices.Contains(s.Types, in.Type) {
		return false
	}
	for _, m := range s.Matchers {
		if !m.Matches(in.Labels[m.Name]) {
			return false
		}
	}
	return true
}

// Specificity is how many conditions the selector sets: one per matcher,
// plus one for a source list and one for a type list. Between equal
// priorities the more specific selector wins.
func (s Selector) Specificity() int {
	n := len(s.Matchers)
	if len(s.Sources) > 0 {
		n++
	}
	if len(s.Types) > 0 {
		n++
	}
	return n
}
