package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"

	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"
)

// FeatureFlagKey is the Redis key the app's FeatureFlagService reads for
// flag: "feature:<flag>". It treats "true" as enabled, a missing key as
// enabled, anything else as disabled.
func FeatureFlagKey(flag string) string { return "feature:" + flag }

// MaintenanceFlag is the flag the app's maintenance mode reads. The app
// treats a missing key as enabled, so maintenance off is SET "false",
// never DEL.
const MaintenanceFlag = "maintenance_mode"

// FeatureFlagParams are featureflag.disable's and featureflag.enable's
// parameters.
type FeatureFlagParams struct {
	Flag Template `yaml:"flag"`
}

// MaintenanceParams are featureflag.maintenance's parameters.
type MaintenanceParams struct {
	// Mode is "on" or "off".
	Mode string `yaml:"mode" required:"true"`
}

// FeatureFlagDisable switches a feature off in the app's Redis
// (FeatureFlagService.emergency_disable).
var FeatureFlagDisable = flagSwitch("featureflag.disable", "false",
	"Disable a feature of the app: Redis SET feature:<flag> false, the key and value its FeatureFlagService reads. Reverts to the value before (DEL when the key was missing).",
	`id: disable-escrow
title: Disable escrow
action: featureflag.disable
params:
  flag: enable_escrow
`)

// FeatureFlagEnable switches a feature on in the app's Redis.
var FeatureFlagEnable = flagSwitch("featureflag.enable", "true",
	"Enable a feature of the app: Redis SET feature:<flag> true. Reverts to the value before (DEL when the key was missing).",
	`id: enable-escrow
title: Enable escrow again
action: featureflag.enable
params:
  flag: enable_escrow
`)

// flagSwitch is an action that sets one feature flag, named by its flag
// parameter, to value.
func flagSwitch(name, value, description, example string) Action {
	return flagSpec[FeatureFlagParams]{
		spec: spec[FeatureFlagParams]{
			desc: Description{
				Name:        name,
				Description: description,
				Params: []Param{
					{Name: "flag", Type: "template", Required: true, Description: "flag name, e.g. enable_escrow (^[a-z0-9_]+$)"},
				},
				Example: example,
				Needs:   []string{"redis"},
			},
			check: func(p *FeatureFlagParams, v *validator) {
				if v.required("flag", p.Flag) {
					v.check("flag", p.Flag, checkFlag)
				}
			},
		},
		set: func(p *FeatureFlagParams, data PlanData) (flagSet, error) {
			f, err := render("flag", p.Flag, data, checkFlag)
			return flagSet{Flag: f, Value: value}, err
		},
	}
}

// Maintenance turns the app's maintenance mode on or off.
var Maintenance Action = flagSpec[MaintenanceParams]{
	spec: spec[MaintenanceParams]{
		desc: Description{
			Name:        "featureflag.maintenance",
			Description: "Turn the app's maintenance mode on or off: Redis SET feature:maintenance_mode true or false (the app reads a missing key as on, so off is never a DEL). Reverts to the value before.",
			Params: []Param{
				{Name: "mode", Type: "string", Required: true, Description: "on or off"},
			},
			Example: `id: maintenance-on
title: Put the app in maintenance mode
action: featureflag.maintenance
params:
  mode: "on"
`,
			Needs: []string{"redis"},
		},
		check: func(p *MaintenanceParams, v *validator) {
			if p.Mode != "on" && p.Mode != "off" {
				v.fail("mode", "%q: want on or off", p.Mode)
			}
		},
	},
	set: func(p *MaintenanceParams, _ PlanData) (flagSet, error) {
		return flagSet{Flag: MaintenanceFlag, Value: map[string]string{"on": "true", "off": "false"}[p.Mode]}, nil
	},
}

// flagSet is what a flag action does: SET feature:<Flag> <Value>.
type flagSet struct {
	Flag  string
	Value string
}

// flagSpec is a feature-flag action: a spec whose plan and run come from
// set.
type flagSpec[P any] struct {
	spec[P]
	set func(p *P, data PlanData) (flagSet, error)
}

func (s flagSpec[P]) Load(n *yaml.Node, path string) (Bound, error) {
	set := s.set
	s.spec.plan = func(_ context.Context, p *P, data PlanData) (string, error) {
		fs, err := set(p, data)
		if err != nil {
			return "", err
		}
		return fs.text(), nil
	}
	b, err := s.spec.Load(n, path)
	if err != nil {
		return nil, err
	}
	return flagBound[P]{bound: b.(bound[P]), set: set}, nil
}

func (fs flagSet) text() string {
	if fs.Flag == MaintenanceFlag {
		mode := map[string]string{"true": "on", "false": "off"}[fs.Value]
		return fmt.Sprintf("redis: SET %s %s (maintenance mode %s once the API's flag cache expires, within 60s)", FeatureFlagKey(fs.Flag), fs.Value, mode)
	}
	state := map[string]string{"true": "enabled", "false": "disabled"}[fs.Value]
	return fmt.Sprintf("redis: SET %s %s (the API reports %s %s once its flag cache expires, within 60s)", FeatureFlagKey(fs.Flag), fs.Value, fs.Flag, state)
}

// flagParams is a flag plan's Params: the exact key and value.
type flagParams struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// flagState is a key's state in an Outcome: its value, or missing.
type flagState struct {
	Missing bool   `json:"missing,omitempty"`
	Value   string `json:"value,omitempty"`
}

func (s flagState) String() string {
	if s.Missing {
		return "missing"
	}
	return fmt.Sprintf("%q", s.Value)
}

// ErrRedisNotConfigured is the dry run of a flag action without redis.url.
var ErrRedisNotConfigured = &DryRunError{Need: "redis.url"}

// DryRunError says which setting is missing for an action to run; it
// matches ErrDryRun.
type DryRunError struct{ Need string }

func (e *DryRunError) Error() string        { return "dry run: " + e.Need + " not configured" }
func (e *DryRunError) Is(target error) bool { return target == ErrDryRun }

type flagBound[P any] struct {
	bound[P]
	set func(p *P, data PlanData) (flagSet, error)
}

var _ Reverter = flagBound[FeatureFlagParams]{}

// Resolve renders the exact key and value.
func (b flagBound[P]) Resolve(_ context.Context, _ Env, data PlanData) (Plan, error) {
	p := b.p
	fs, err := b.set(&p, data)
	if err != nil {
		return Plan{}, fmt.Errorf("%s: %w", b.name, err)
	}
	key := FeatureFlagKey(fs.Flag)
	return NewPlan(b.name, fs.text(), "redis "+key, flagParams{Key: key, Value: fs.Value})
}

func flagPlan(p Plan) (flagParams, error) {
	var fp flagParams
	if err := json.Unmarshal(p.Params, &fp); err != nil || fp.Key == "" {
		return fp, fmt.Errorf("%s: bad plan params %q", p.Action, p.Params)
	}
	return fp, nil
}

// Run sets the key, reading the value before in the same command (SET …
// GET), so the state recorded is exactly the one replaced.
func (b flagBound[P]) Run(ctx context.Context, env Env, p Plan) (Outcome, error) {
	fp, err := flagPlan(p)
	if err != nil {
		return Outcome{}, err
	}
	if env.Redis == nil {
		return Outcome{}, ErrRedisNotConfigured
	}
	old, err := env.Redis.SetArgs(ctx, fp.Key, fp.Value, redis.SetArgs{Get: true}).Result()
	var before flagState
	switch {
	case errors.Is(err, redis.Nil):
		before = flagState{Missing: true}
	case err != nil && mayHaveRun(err):
		return Outcome{}, fmt.Errorf("redis SET %s: %w (%w)", fp.Key, err, ErrOutcomeUnknown)
	case err != nil:
		return Outcome{}, fmt.Errorf("redis SET %s: %w", fp.Key, err)
	default:
		before = flagState{Value: old}
	}
	after := flagState{Value: fp.Value}
	bj, _ := json.Marshal(before)
	aj, _ := json.Marshal(after)
	return Outcome{Before: bj, After: aj, Detail: fmt.Sprintf("SET %s %s (was %s)", fp.Key, fp.Value, before)}, nil
}

// mayHaveRun reports whether a Redis command that failed with err may
// still have been carried out: unless Redis answered with an error, or no
// connection was made, the command may have reached it.
func mayHaveRun(err error) bool {
	var reply redis.Error
	var op *net.OpError
	switch {
	case errors.As(err, &reply), errors.Is(err, redis.ErrClosed), errors.Is(err, redis.ErrPoolTimeout):
		return false
	case errors.As(err, &op) && op.Op == "dial":
		return false
	}
	return true
}

// Verify reads the key back.
func (b flagBound[P]) Verify(ctx context.Context, env Env, p Plan, _ Outcome) error {
	fp, err := flagPlan(p)
	if err != nil {
		return err
	}
	if env.Redis == nil {
		return ErrRedisNotConfigured
	}
	got, err := env.Redis.Get(ctx, fp.Key).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return fmt.Errorf("%s is missing, want %q", fp.Key, fp.Value)
	case err != nil:
		return fmt.Errorf("redis GET %s: %w", fp.Key, err)
	case got != fp.Value:
		return fmt.Errorf("%s is %q, want %q", fp.Key, got, fp.Value)
	}
	return nil
}

// revertScript restores the state before, only while the key still holds
// the value the run set: a change someone made since is not overwritten.
var revertScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then return {0, cur or false} end
if ARGV[2] == '1' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[3]) end
return {1}
`)

// ErrChangedSince is returned by Revert when the target no longer holds
// what the run set: someone changed it since, and Revert leaves it.
var ErrChangedSince = errors.New("changed since the run: not reverted")

// Revert restores Outcome.Before (DEL when the key was missing), unless
// the key was changed since the run.
func (b flagBound[P]) Revert(ctx context.Context, env Env, p Plan, o Outcome) error {
	fp, err := flagPlan(p)
	if err != nil {
		return err
	}
	if env.Redis == nil {
		return ErrRedisNotConfigured
	}
	var before flagState
	if err := json.Unmarshal(o.Before, &before); err != nil || len(o.Before) == 0 {
		return fmt.Errorf("%s: no state recorded before the run", p.Action)
	}
	del := "0"
	if before.Missing {
		del = "1"
	}
	res, err := revertScript.Run(ctx, env.Redis, []string{fp.Key}, fp.Value, del, before.Value).Slice()
	if err != nil {
		return fmt.Errorf("redis revert %s: %w", fp.Key, err)
	}
	if n, _ := res[0].(int64); n != 1 {
		cur := "missing"
		if len(res) > 1 {
			if s, ok := res[1].(string); ok {
				cur = fmt.Sprintf("%q", s)
			}
		}
		return fmt.Errorf("%s is %s, not %q: %w", fp.Key, cur, fp.Value, ErrChangedSince)
	}
	return nil
}
