package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/pkg/labels"
	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/rules"
	"github.com/incidentbot/incidentbot/silence"
	"github.com/incidentbot/incidentbot/strictyaml"
)

// MaxSilence is the longest silence an action may create.
const MaxSilence = 24 * time.Hour

// SilenceParams are alertmanager.silence's parameters.
type SilenceParams struct {
	// Matchers are Alertmanager matchers, each one matcher or a braced list.
	Matchers []Template          `yaml:"matchers"`
	Duration strictyaml.Duration `yaml:"duration" required:"true"`
	Comment  Template            `yaml:"comment"`
}

// SilenceCreatedBy is the createdBy of every silence the action creates.
const SilenceCreatedBy = "incidentbot"

// Silencer is the Alertmanager API the silence action needs; package
// silence's *Client is one (alertmanager.url).
type Silencer interface {
	Create(ctx context.Context, s silence.Silence) (string, error)
	Get(ctx context.Context, id string) (silence.Got, error)
	Expire(ctx context.Context, id string) error
}

// ErrAlertmanagerNotConfigured is the dry run of a silence without
// alertmanager.url.
var ErrAlertmanagerNotConfigured = &DryRunError{Need: "alertmanager.url"}

// Silence creates an Alertmanager silence for the given matchers.
var Silence Action = silenceSpec{spec[SilenceParams]{
	desc: Description{
		Name:        "alertmanager.silence",
		Description: "Create an Alertmanager silence (API v2) for the given matchers and duration (at most 24h), created by incidentbot. Verify reads it back active with the same matchers; Revert expires it.",
		Params: []Param{
			{Name: "matchers", Type: "list of template", Required: true, Description: `Alertmanager matchers, e.g. alertname="HighLatency"`},
			{Name: "duration", Type: "duration", Required: true, Description: "how long, at most 24h"},
			{Name: "comment", Type: "template", Default: "silenced by incidentbot", Description: "silence comment"},
		},
		Example: `id: silence-latency
title: Silence latency alerts while scaling
action: alertmanager.silence
params:
  matchers:
    - alertname="HighLatency"
    - 'namespace="{{ .Labels.namespace }}"'
  duration: 1h
`,
		Needs: []string{"alertmanager"},
	},
	check: func(p *SilenceParams, v *validator) {
		if len(p.Matchers) == 0 {
			v.fail("matchers", "at least one matcher is required")
		}
		for i, m := range p.Matchers {
			if m.Static() {
				if _, err := rules.ParseMatchers(m.String()); err != nil {
					v.errs = append(v.errs, strictyaml.At(indexNode(v, "matchers", i), strictyaml.Index(strictyaml.Key(v.path, "matchers"), i), "%s", err))
				}
			}
		}
		d := time.Duration(p.Duration)
		switch {
		case d <= 0:
			v.fail("duration", "must be positive")
		case d > MaxSilence:
			v.fail("duration", "%s exceeds the maximum of %s", d, MaxSilence)
		}
		if p.Comment.IsZero() {
			p.Comment = MustTemplate("silenced by incidentbot")
		}
	},
	plan: func(_ context.Context, p *SilenceParams, data PlanData) (string, error) {
		r, err := resolveSilence(p, data)
		if err != nil {
			return "", err
		}
		return r.text(), nil
	},
}}

func indexNode(v *validator, key string, i int) *yaml.Node {
	n := strictyaml.Lookup(v.node, key)
	if n != nil && i < len(n.Content) {
		return n.Content[i]
	}
	return v.node
}

// silencePlan is a silence plan's Params: the exact matchers (as
// Alertmanager prints them), duration and comment.
type silencePlan struct {
	Matchers  []string `json:"matchers"`
	Duration  string   `json:"duration"`
	Comment   string   `json:"comment"`
	CreatedBy string   `json:"created_by"`
}

func (r silencePlan) text() string {
	d, _ := time.ParseDuration(r.Duration)
	return fmt.Sprintf("alertmanager: silence {%s} for %s (%q)", strings.Join(r.Matchers, ", "), d, r.Comment)
}

func resolveSilence(p *SilenceParams, data PlanData) (silencePlan, error) {
	r := silencePlan{Duration: time.Duration(p.Duration).String(), CreatedBy: SilenceCreatedBy}
	for i, m := range p.Matchers {
		s, err := render(fmt.Sprintf("matchers[%d]", i), m, data, nil)
		if err != nil {
			return r, err
		}
		ms, err := rules.ParseMatchers(s)
		if err != nil {
			if missing := missingRefs(m, data); len(missing) > 0 && !m.Static() {
				return r, &MissingError{Source: data.Source, Type: data.Type, Missing: missing}
			}
			return r, fmt.Errorf("matchers[%d]: %w", i, err)
		}
		for _, x := range ms {
			r.Matchers = append(r.Matchers, x.String())
		}
	}
	c, err := render("comment", p.Comment, data, nil)
	if err != nil {
		return r, err
	}
	r.Comment = c
	return r, nil
}

type silenceSpec struct{ spec[SilenceParams] }

func (s silenceSpec) Load(n *yaml.Node, path string) (Bound, error) {
	b, err := s.spec.Load(n, path)
	if err != nil {
		return nil, err
	}
	return silenceBound{b.(bound[SilenceParams])}, nil
}

type silenceBound struct{ bound[SilenceParams] }

var _ Reverter = silenceBound{}

// silenceState is a silence in an Outcome.
type silenceState struct {
	// ID is the silence's id; empty in Before (there was none).
	ID     string    `json:"id,omitempty"`
	EndsAt time.Time `json:"ends_at,omitzero"`
}

// Resolve renders the exact matchers, duration and comment.
func (b silenceBound) Resolve(_ context.Context, _ Env, data PlanData) (Plan, error) {
	p := b.p
	r, err := resolveSilence(&p, data)
	if err != nil {
		var missing *MissingError
		if errors.As(err, &missing) {
			err = withAllMissing(missing, &b.p, data)
		}
		return Plan{}, fmt.Errorf("%s: %w", b.name, err)
	}
	return NewPlan(b.name, r.text(), "alertmanager silence {"+strings.Join(r.Matchers, ", ")+"}", r)
}

// silenceParams decodes a plan's Params and parses its matchers again.
func silenceParams(p Plan) (silencePlan, []*labels.Matcher, time.Duration, error) {
	var r silencePlan
	bad := fmt.Errorf("%s: bad plan params %q", p.Action, p.Params)
	if err := json.Unmarshal(p.Params, &r); err != nil || len(r.Matchers) == 0 {
		return r, nil, 0, bad
	}
	d, err := time.ParseDuration(r.Duration)
	if err != nil || d <= 0 || d > MaxSilence {
		return r, nil, 0, bad
	}
	var ms []*labels.Matcher
	for _, s := range r.Matchers {
		m, err := rules.ParseMatchers(s)
		if err != nil {
			return r, nil, 0, fmt.Errorf("%s: plan matcher %s: %w", p.Action, s, err)
		}
		ms = append(ms, m...)
	}
	return r, ms, d, nil
}

// Run creates the silence, from now for the plan's duration, and records
// its id.
func (b silenceBound) Run(ctx context.Context, env Env, p Plan) (Outcome, error) {
	r, ms, d, err := silenceParams(p)
	if err != nil {
		return Outcome{}, err
	}
	if env.Silences == nil {
		return Outcome{}, ErrAlertmanagerNotConfigured
	}
	now := time.Now()
	end := now.Add(d)
	id, err := env.Silences.Create(ctx, silence.Silence{Match: ms, StartsAt: now, EndsAt: end, CreatedBy: r.CreatedBy, Comment: r.Comment})
	if err != nil {
		return Outcome{}, fmt.Errorf("create silence {%s}: %w", strings.Join(r.Matchers, ", "), Unanswered(err))
	}
	bj, _ := json.Marshal(silenceState{})
	aj, _ := json.Marshal(silenceState{ID: id, EndsAt: end.UTC()})
	return Outcome{Before: bj, After: aj, Detail: fmt.Sprintf("silence %s {%s} until %s", id, strings.Join(r.Matchers, ", "), end.UTC().Format(time.RFC3339))}, nil
}

func silenceID(o Outcome) (string, error) {
	var st silenceState
	if err := json.Unmarshal(o.After, &st); err != nil || st.ID == "" {
		return "", fmt.Errorf("alertmanager.silence: no silence id recorded by the run")
	}
	return st.ID, nil
}

// Verify reads the silence back: active, with the plan's matchers.
func (b silenceBound) Verify(ctx context.Context, env Env, p Plan, o Outcome) error {
	r, _, _, err := silenceParams(p)
	if err != nil {
		return err
	}
	id, err := silenceID(o)
	if err != nil {
		return err
	}
	if env.Silences == nil {
		return ErrAlertmanagerNotConfigured
	}
	got, err := env.Silences.Get(ctx, id)
	if err != nil {
		return fmt.Errorf("read silence %s back: %w", id, err)
	}
	var have []string
	for _, m := range got.Matchers {
		have = append(have, m.String())
	}
	want := slices.Clone(r.Matchers)
	slices.Sort(have)
	slices.Sort(want)
	switch {
	case got.State == "pending":
		return fmt.Errorf("silence %s is pending: %w", id, ErrNotYet)
	case got.State != "active":
		return fmt.Errorf("silence %s is %s, want active", id, got.State)
	case !slices.Equal(have, want):
		return fmt.Errorf("silence %s matches {%s}, want {%s}", id, strings.Join(have, ", "), strings.Join(want, ", "))
	}
	return nil
}

// Revert expires the silence the run created (one already expired or
// gone is not an error).
func (b silenceBound) Revert(ctx context.Context, env Env, p Plan, o Outcome) error {
	id, err := silenceID(o)
	if err != nil {
		return err
	}
	if env.Silences == nil {
		return ErrAlertmanagerNotConfigured
	}
	if err := env.Silences.Expire(ctx, id); err != nil {
		return fmt.Errorf("expire silence %s: %w", id, err)
	}
	return nil
}
