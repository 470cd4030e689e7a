package actions

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
)

// kubeSpec is a Kubernetes action that runs: its spec (load-time checks,
// dry-run plan) and what Resolve, Run, Verify and Revert do. Q is the
// resolved plan's parameters, stored as Plan.Params and decoded again by
// Run, Verify and Revert, which see nothing else of the runbook.
type kubeSpec[P, Q any] struct {
	spec[P]
	// resolve renders the plan for data: its parameters, what it touches
	// and the text a person reads. env.Kube may be nil (dry run): resolve
	// then reads nothing from the cluster.
	resolve func(ctx context.Context, env Env, p *P, data PlanData) (q Q, target, text string, err error)
	run     func(ctx context.Context, env Env, kube kubernetes.Interface, q Q) (Outcome, error)
	verify  func(ctx context.Context, env Env, kube kubernetes.Interface, q Q, o Outcome) error
	// revert is nil for an action that cannot be undone.
	revert func(ctx context.Context, env Env, kube kubernetes.Interface, q Q, o Outcome) error
}

func (s kubeSpec[P, Q]) Load(n *yaml.Node, path string) (Bound, error) {
	b, err := s.spec.Load(n, path)
	if err != nil {
		return nil, err
	}
	kb := kubeBound[P, Q]{bound: b.(bound[P]), s: s}
	if s.revert == nil {
		return kb, nil
	}
	return kubeRevertBound[P, Q]{kb}, nil
}

type kubeBound[P, Q any] struct {
	bound[P]
	s kubeSpec[P, Q]
}

func (b kubeBound[P, Q]) Resolve(ctx context.Context, env Env, data PlanData) (Plan, error) {
	p := b.p
	q, tgt, text, err := b.s.resolve(ctx, env, &p, data)
	var missing *MissingError
	if errors.As(err, &missing) {
		err = withAllMissing(missing, &b.p, data)
	}
	if err != nil {
		return Plan{}, fmt.Errorf("%s: %w", b.name, err)
	}
	params, err := json.Marshal(q)
	if err != nil {
		return Plan{}, fmt.Errorf("%s: encode plan: %w", b.name, err)
	}
	return Plan{Action: b.name, Text: text, Target: tgt, Params: params, Hash: planHash(b.name, params)}, nil
}

// planHash identifies a plan by its action and resolved parameters.
func planHash(action string, params []byte) string {
	h := sha256.New()
	h.Write([]byte(action))
	h.Write([]byte{0})
	h.Write(params)
	return hex.EncodeToString(h.Sum(nil))
}

// decode checks that p is a plan of this action, unaltered since Resolve,
// and that the cluster is configured.
func (b kubeBound[P, Q]) decode(env Env, p Plan) (Q, kubernetes.Interface, error) {
	var q Q
	if p.Action != b.name {
		return q, nil, fmt.Errorf("%s: plan is for %s", b.name, p.Action)
	}
	if p.Hash != planHash(p.Action, p.Params) {
		return q, nil, fmt.Errorf("%s: plan hash does not match its parameters", b.name)
	}
	if err := json.Unmarshal(p.Params, &q); err != nil {
		return q, nil, fmt.Errorf("%s: decode plan: %w", b.name, err)
	}
	if env.Kube == nil {
		return q, nil, ErrDryRun
	}
	return q, env.Kube, nil
}

func (b kubeBound[P, Q]) Run(ctx context.Context, env Env, p Plan) (Outcome, error) {
	q, kube, err := b.decode(env, p)
	if err != nil {
		return Outcome{}, err
	}
	o, err := b.s.run(ctx, env, kube, q)
	if err != nil {
		return o, fmt.Errorf("%s %s: %w", b.name, p.Target, err)
	}
	return o, nil
}

func (b kubeBound[P, Q]) Verify(ctx context.Context, env Env, p Plan, o Outcome) error {
	q, kube, err := b.decode(env, p)
	if err != nil {
		return err
	}
	if err := b.s.verify(ctx, env, kube, q, o); err != nil {
		return fmt.Errorf("%s %s: not verified: %w", b.name, p.Target, err)
	}
	return nil
}

type kubeRevertBound[P, Q any] struct{ kubeBound[P, Q] }

func (b kubeRevertBound[P, Q]) Revert(ctx context.Context, env Env, p Plan, o Outcome) error {
	q, kube, err := b.decode(env, p)
	if err != nil {
		return err
	}
	if err := b.s.revert(ctx, env, kube, q, o); err != nil {
		return fmt.Errorf("%s %s: revert: %w", b.name, p.Target, err)
	}
	return nil
}

// errChanged wraps the API server's refusal of a precondition in words
// for the card: a resourceVersion conflict (409), or a failed JSON patch
// `test` op, which the server answers 422 with no field causes (a patched
// object that fails validation lists its fields).
func errChanged(what string, err error) error {
	var st apierrors.APIStatus
	if apierrors.IsConflict(err) || errors.As(err, &st) && st.Status().Code == 422 &&
		(st.Status().Details == nil || len(st.Status().Details.Causes) == 0) {
		return fmt.Errorf("%s changed since it was read; nothing was changed: %w", what, err)
	}
	return err
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain data is encoded here
	}
	return b
}
