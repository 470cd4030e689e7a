package actions

import (
	"context"
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/rules"
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

// Silence creates an Alertmanager silence for the given matchers.
var Silence Action = spec[SilenceParams]{
	desc: Description{
		Name:        "alertmanager.silence",
		Description: "Create an Alertmanager silence for the given matchers and duration (at most 24h).",
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
		var parts []string
		for i, m := range p.Matchers {
			s, err := render(fmt.Sprintf("matchers[%d]", i), m, data, nil)
			if err != nil {
				return "", err
			}
			ms, err := rules.ParseMatchers(s)
			if err != nil {
				return "", fmt.Errorf("matchers[%d]: %w", i, err)
			}
			for _, x := range ms {
				parts = append(parts, x.String())
			}
		}
		c, err := render("comment", p.Comment, data, nil)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("alertmanager: silence {%s} for %s (%q)", strings.Join(parts, ", "), time.Duration(p.Duration), c), nil
	},
}

func indexNode(v *validator, key string, i int) *yaml.Node {
	n := strictyaml.Lookup(v.node, key)
	if n != nil && i < len(n.Content) {
		return n.Content[i]
	}
	return v.node
}
