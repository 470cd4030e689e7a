package actions

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// MissingError is a plan that cannot be made because the signal lacks
// labels, annotations or fields its parameters read. Its text is one line
// a card can show: what is missing, and where the team adds it.
type MissingError struct {
	// Source is the signal's source ("alertmanager", "solana").
	Source string
	// Type is the signal's type ("alertmanager.alert", "solana.program.upgraded").
	Type string
	// Missing lists what the parameters read and the signal lacks.
	Missing []Ref
}

// watcherSetting names the configuration key from which the Solana
// watchers set a value on their events, for values the team provides.
var watcherSetting = map[Ref]string{
	{Kind: "annotation", Key: "rollback_buffer"}: "solana.programs[].rollback_buffer",
}

// Error says, in one line, what is missing and how to add it, e.g.
// "needs label program_id on the alert: add it to the PrometheusRule".
func (e *MissingError) Error() string {
	what := describeRefs(e.Missing)
	it := "it"
	if len(e.Missing) > 1 {
		it = "them"
	}
	switch e.Source {
	case "alertmanager":
		return fmt.Sprintf("needs %s on the alert: add %s to the PrometheusRule", what, it)
	case "solana":
		var settings []string
		for _, r := range e.Missing {
			if s, ok := watcherSetting[r]; ok {
				settings = append(settings, s)
			}
		}
		if len(settings) == len(e.Missing) {
			return fmt.Sprintf("needs %s on the %s event: set %s in the bot's configuration", what, e.Type, strings.Join(settings, " and "))
		}
		return fmt.Sprintf("needs %s, which %s events do not carry: the runbook must not rely on %s", what, e.Type, it)
	}
	return fmt.Sprintf("needs %s on the signal", what)
}

// describeRefs renders refs as "label a", "labels a, b and annotation c".
func describeRefs(refs []Ref) string {
	var parts []string
	for _, kind := range []string{"label", "annotation", "field"} {
		var keys []string
		for _, r := range refs {
			if r.Kind == kind {
				keys = append(keys, r.Key)
			}
		}
		switch len(keys) {
		case 0:
		case 1:
			parts = append(parts, kind+" "+keys[0])
		default:
			parts = append(parts, kind+"s "+strings.Join(keys, ", "))
		}
	}
	if len(parts) <= 1 {
		return strings.Join(parts, "")
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

// missingRefs lists what t reads that data lacks (absent or empty).
func missingRefs(t Template, data PlanData) []Ref {
	var out []Ref
	for _, r := range t.Refs() {
		if !hasRef(data, r) {
			out = append(out, r)
		}
	}
	return out
}

func hasRef(data PlanData, r Ref) bool {
	switch r.Kind {
	case "label":
		return data.Labels[r.Key] != ""
	case "annotation":
		return data.Annotations[r.Key] != ""
	}
	v, ok := data.Fields[r.Key]
	return ok && v != nil && v != ""
}

// withAllMissing extends a MissingError with what the action's other
// template parameters lack, so one line names everything to add: a
// parameter counts when it renders empty for lack of what it reads.
func withAllMissing(me *MissingError, params any, data PlanData) *MissingError {
	out := &MissingError{Source: me.Source, Type: me.Type, Missing: slices.Clone(me.Missing)}
	v := reflect.ValueOf(params)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return out
	}
	for i := range v.NumField() {
		t, ok := v.Field(i).Interface().(Template)
		if !ok {
			continue
		}
		if s, err := t.Render(data); err != nil || strings.TrimSpace(s) != "" {
			continue
		}
		for _, r := range missingRefs(t, data) {
			if !slices.Contains(out.Missing, r) {
				out.Missing = append(out.Missing, r)
			}
		}
	}
	return out
}
