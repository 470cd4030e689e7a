package actions

import (
	"context"
	"strings"
)

// ManualParams are manual's parameters.
type ManualParams struct {
	Text Template `yaml:"text"`
}

// Manual is a step a person does ("Notify RPC provider"); running it
// records who did it.
var Manual Action = spec[ManualParams]{
	desc: Description{
		Name:        "manual",
		Description: "A step a person does by hand; the plan is its text.",
		Params: []Param{
			{Name: "text", Type: "template", Required: true, Description: "what to do"},
		},
		Example: `id: notify-provider
title: Notify RPC provider
action: manual
params:
  text: "Open a ticket with the RPC provider for {{ .Labels.endpoint }}"
`,
	},
	check: func(p *ManualParams, v *validator) {
		v.required("text", p.Text)
	},
	plan: func(_ context.Context, p *ManualParams, data PlanData) (string, error) {
		s, err := render("text", p.Text, data, nil)
		if err != nil {
			return "", err
		}
		return "manual: " + strings.TrimSpace(s), nil
	},
}
