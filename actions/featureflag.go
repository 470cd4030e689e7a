package actions

import (
	"context"
	"fmt"
)

// FeatureFlagKey is the Redis key the app's FeatureFlagService reads for
// flag: "feature:<flag>". It treats "true" as enabled, a missing key as
// enabled, anything else as disabled.
func FeatureFlagKey(flag string) string { return "feature:" + flag }

// FeatureFlagDisableParams are featureflag.disable's parameters.
type FeatureFlagDisableParams struct {
	Flag Template `yaml:"flag"`
}

// FeatureFlagDisable switches a feature off in the app's Redis
// (FeatureFlagService.emergency_disable).
var FeatureFlagDisable Action = spec[FeatureFlagDisableParams]{
	desc: Description{
		Name:        "featureflag.disable",
		Description: "Disable a feature of the app: Redis SET feature:<flag> false, the key and value its FeatureFlagService reads.",
		Params: []Param{
			{Name: "flag", Type: "template", Required: true, Description: "flag name, e.g. enable_escrow (^[a-z0-9_]+$)"},
		},
		Example: `id: disable-escrow
title: Disable escrow
action: featureflag.disable
params:
  flag: enable_escrow
`,
		Needs: []string{"redis"},
	},
	check: func(p *FeatureFlagDisableParams, v *validator) {
		if v.required("flag", p.Flag) {
			v.check("flag", p.Flag, checkFlag)
		}
	},
	plan: func(_ context.Context, p *FeatureFlagDisableParams, data PlanData) (string, error) {
		f, err := render("flag", p.Flag, data, checkFlag)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("redis: SET %s false (the API reports %s disabled once its flag cache expires, within 60s)", FeatureFlagKey(f), f), nil
	},
}
