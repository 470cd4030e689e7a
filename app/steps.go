package app

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/config"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/runbooks"
)

// Steps resolves an incident's remediation steps as they would run now,
// for requests and votes (handlers/slack.Steps): the step's policy, and
// the exact plan with the hash approvals bind to.
type Steps struct {
	Catalog Catalog
	// Env is what the actions resolve with (the RPC URL lookup).
	Env actions.Env
}

// Resolve implements handlers/slack.Steps.
func (s Steps) Resolve(ctx context.Context, rec *engine.Record, step string) (engine.StepPolicy, actions.Plan, error) {
	rb := s.Catalog.Set.Get(rec.Runbook)
	if rb == nil {
		return engine.StepPolicy{}, actions.Plan{}, fmt.Errorf("runbook %s is no longer loaded", rec.Runbook)
	}
	if orig, ok := strings.CutPrefix(step, engine.RevertPrefix); ok {
		// A revert step: the step's policy, and a plan read from the
		// record of its run.
		st := rb.Step(orig)
		if st == nil || st.Revert == runbooks.RevertNever {
			return engine.StepPolicy{}, actions.Plan{}, fmt.Errorf("runbook %s has no remediation step %q that can be reverted", rec.Runbook, orig)
		}
		pol, _ := runbook{rb: rb, c: s.Catalog}.Step(orig)
		p, err := engine.RevertPlan(rec, step)
		return engine.RevertPolicy(pol), p, err
	}
	st := rb.Step(step)
	if st == nil || st.Bound == nil {
		return engine.StepPolicy{}, actions.Plan{}, fmt.Errorf("runbook %s has no remediation step %q", rec.Runbook, step)
	}
	pol, _ := runbook{rb: rb, c: s.Catalog}.Step(step)
	data := actions.DataFromSignal(engine.Representative(rec), s.Catalog.RPC)
	pctx, cancel := context.WithTimeout(ctx, runbooks.PlanTimeout)
	defer cancel()
	p, err := st.Resolve(pctx, s.Env, data)
	return pol, p, err
}

// StepRunner resolves approved steps for the engine's action reconciler
// (engine.StepRunner): the plan as it resolves now, and the action that
// runs it. An action that cannot run yet is refused.
type StepRunner struct{ Steps Steps }

// Resolve implements engine.StepRunner.
func (s StepRunner) Resolve(ctx context.Context, rec *engine.Record, step string) (actions.Plan, actions.Runner, error) {
	_, p, err := s.Steps.Resolve(ctx, rec, step)
	if err != nil {
		return p, nil, err
	}
	rb := s.Steps.Catalog.Set.Get(rec.Runbook)
	r, ok := rb.Step(step).Bound.(actions.Runner)
	if !ok {
		return p, nil, fmt.Errorf("%s cannot run yet: only its dry-run plan exists", p.Action)
	}
	return p, r, nil
}

// RedisClient opens the feature-flag store of redis.url, or returns nil
// (the flag actions then run as dry runs) when it is not configured.
//
// A command is sent at most once: go-redis would by default send it again
// after a read timeout or a dropped connection, when the first may have
// been applied, so a flag run could be carried out twice and record as
// its state before the value it had set itself. Without retries such a
// run is an unknown outcome instead (actions.ErrOutcomeUnknown). Commands
// also end with the run's deadline.
func RedisClient(cfg config.Config) (*redis.Client, error) {
	if !cfg.Redis.URL.IsSet() {
		return nil, nil
	}
	opt, err := redis.ParseURL(cfg.Redis.URL.Reveal())
	if err != nil {
		return nil, fmt.Errorf("redis.url: not a Redis URL") // never the URL: it may hold a password
	}
	opt.MaxRetries = -1
	opt.ContextTimeoutEnabled = true
	return redis.NewClient(opt), nil
}
