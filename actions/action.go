// Package actions holds the remediation actions a runbook may propose and
// their registry. An action describes itself (parameters, example, the
// Kubernetes permissions it needs), validates its parameters when the
// runbook loads, and renders a dry-run plan for an incident.
//
// A bound action that can run also implements Runner (see run.go):
// Resolve, Run and Verify, and Reverter where its change can be undone.
// They receive the same typed parameters Plan sees, never a map.
package actions

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/rpcview"
	"github.com/incidentbot/incidentbot/signal"
	"github.com/incidentbot/incidentbot/strictyaml"
)

// Action is one kind of remediation, e.g. "kubernetes.scale".
type Action interface {
	// Describe says what the action does and what it needs.
	Describe() Description
	// Load validates the action's parameters, decoded strictly from the
	// runbook's `params` node (nil when absent), and binds them. Errors are
	// strictyaml errors positioned in the runbook file, under path.
	Load(params *yaml.Node, path string) (Bound, error)
}

// Bound is an action with validated, typed parameters, ready to plan (and
// later to run) for an incident.
type Bound interface {
	// Action is the registered action name.
	Action() string
	// Plan renders the dry-run text of what running would do for data. It
	// reads (the RPC view, for example) but never changes anything.
	Plan(ctx context.Context, data PlanData) (string, error)
}

// Description is what an action says about itself; it feeds
// `incidentbot actions`, the docs and the Helm chart's Role.
type Description struct {
	Name        string
	Description string
	Params      []Param
	// Example is a runbook remediation step using the action, in YAML.
	Example string
	// RBAC lists the Kubernetes permissions the action needs when it runs.
	RBAC []Permission
	// Needs names other services the action talks to ("redis").
	Needs []string
}

// Param describes one parameter.
type Param struct {
	Name string
	// Type is "string", "template" (a string that may use {{ }}),
	// "integer", "duration", "list of template".
	Type        string
	Required    bool
	Default     string
	Description string
}

// Permission is one Kubernetes RBAC rule.
type Permission struct {
	APIGroup  string
	Resources []string
	Verbs     []string
}

// PlanData is what an action sees of an incident when it plans; the
// engine fills it from the incident's signal. Templates in parameters see
// the same fields: {{ .Labels.namespace }}, {{ .Fields.slot_lag }}.
type PlanData struct {
	Source      string
	Type        string
	GroupKey    string
	Labels      map[string]string
	Annotations map[string]string
	Fields      map[string]any
	// RPC is the live RPC view, nil when no Solana watcher is configured.
	RPC rpcview.Reader
}

// DataFromSignal builds PlanData from a signal and the RPC view (may be
// nil). Whole numbers in the fields become integers: decoded from JSON
// they are float64, which templates would print as 3.56102417e+08.
func DataFromSignal(s signal.Signal, rpc rpcview.Reader) PlanData {
	fields, _ := wholeNumbers(s.Fields).(map[string]any)
	return PlanData{
		Source:      s.Source,
		Type:        s.Type,
		GroupKey:    s.GroupKey,
		Labels:      s.Labels,
		Annotations: s.Annotations,
		Fields:      fields,
		RPC:         rpc,
	}
}

// wholeNumbers returns a copy of v with every float64 that holds a whole
// number (within the range a float64 counts exactly) as an int64.
func wholeNumbers(v any) any {
	switch v := v.(type) {
	case float64:
		if v == math.Trunc(v) && math.Abs(v) <= 1<<53 {
			return int64(v)
		}
		return v
	case map[string]any:
		if v == nil {
			return v
		}
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = wholeNumbers(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = wholeNumbers(x)
		}
		return out
	}
	return v
}

// spec builds an Action from a typed parameter struct P: decoding is
// strict, check validates after decoding (load time), plan renders.
type spec[P any] struct {
	desc  Description
	check func(p *P, v *validator)
	plan  func(ctx context.Context, p *P, data PlanData) (string, error)
}

func (s spec[P]) Describe() Description { return s.desc }

func (s spec[P]) Load(n *yaml.Node, path string) (Bound, error) {
	var p P
	params := strictyaml.Key(path, "params")
	if n == nil {
		n = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	decodeErrs := strictyaml.Flatten(strictyaml.Decode(n, params, &p))
	v := &validator{node: n, path: params}
	if s.check != nil {
		s.check(&p, v)
	}
	// Report decoding and validation problems together, without a second
	// complaint about a key that already failed to decode.
	errs := decodeErrs
	for _, e := range v.errs {
		if !slices.ContainsFunc(decodeErrs, func(d *strictyaml.Error) bool {
			return d.Path == e.Path || strings.HasPrefix(e.Path, d.Path+".") || strings.HasPrefix(e.Path, d.Path+"[")
		}) {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return nil, strictyaml.Join(errs)
	}
	return bound[P]{name: s.desc.Name, p: p, plan: s.plan}, nil
}

type bound[P any] struct {
	name string
	p    P
	plan func(ctx context.Context, p *P, data PlanData) (string, error)
}

func (b bound[P]) Action() string { return b.name }

func (b bound[P]) Plan(ctx context.Context, data PlanData) (string, error) {
	p := b.p
	s, err := b.plan(ctx, &p, data)
	var missing *MissingError
	if errors.As(err, &missing) {
		err = withAllMissing(missing, &b.p, data)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", b.name, err)
	}
	return s, nil
}

// paramKeys lists the YAML keys of P, for the test that keeps Describe
// and the params struct in step.
func (s spec[P]) paramKeys() []string { return strictyaml.Fields(reflect.TypeFor[P]()) }
