package actions

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"
	"k8s.io/client-go/kubernetes"
)

// Running an action. A Bound action that can run also implements Runner;
// one that can be undone from the state recorded before it ran also
// implements Reverter. The engine's runner (engine/actions) calls them
// only after the runbook's approval policy is met and an exactly-once key
// for (incident, step, plan hash) was created, and records every Outcome
// in the audit trail.
//
// Resolve comes first: it turns the templated parameters and the live
// view into the exact Plan that will run (names rendered, the healthiest
// backup chosen, its real URL looked up by endpoint name). Approvals bind
// to Plan.Hash; if a later Resolve gives another hash, the approvals are
// void. Run does what the plan says and nothing else, and returns what it
// changed, with the state before the change, so Verify can check it and
// Revert can restore it.

// Runner is a bound action that can run.
type Runner interface {
	Bound
	// Resolve renders the exact plan for data without changing anything.
	Resolve(ctx context.Context, env Env, data PlanData) (Plan, error)
	// Run carries out p, which Resolve returned. It reports the state
	// before and after, for Verify and Revert.
	Run(ctx context.Context, env Env, p Plan) (Outcome, error)
	// Verify checks that the change took: the patched value is live, the
	// scale is accepted, the flag reads back. A nil error means verified.
	Verify(ctx context.Context, env Env, p Plan, o Outcome) error
}

// Reverter is a runner whose change can be undone from Outcome.Before.
type Reverter interface {
	Runner
	Revert(ctx context.Context, env Env, p Plan, o Outcome) error
}

// Plan is a resolved action: what exactly will run.
type Plan struct {
	// Action is the action name; Text is what a person reads (the same
	// text the card shows); Target names what it touches
	// ("deployment solana-dapps/api", "redis feature:enable_escrow").
	Action string `json:"action"`
	Text   string `json:"text"`
	Target string `json:"target"`
	// Params are the resolved parameters, encoded by the action (JSON);
	// secrets (a real RPC URL) are never in Text and are kept out of the
	// audit trail by the action (Params holds an endpoint name to look up
	// again, not the URL).
	Params []byte `json:"params"`
	// Hash identifies the plan: approvals are bound to it.
	Hash string `json:"hash"`
}

// Outcome is what a run changed.
type Outcome struct {
	// Before and After are the target's state before and after, encoded by
	// the action (e.g. the env value, the replica count, the selector).
	Before []byte `json:"before,omitempty"`
	After  []byte `json:"after,omitempty"`
	// Detail is one line for the card and the audit trail.
	Detail string `json:"detail"`
}

// Env carries the clients actions run with. A nil client means the
// action's system is not configured: the action reports ErrDryRun from
// Run, and the card says it would run in dry-run only.
type Env struct {
	// Kube is the Kubernetes API (kubernetes.kubeconfig, or in-cluster);
	// Redis the app's feature-flag store (redis.url). Set by the app from
	// configuration; nil when not configured.
	Kube  kubernetes.Interface
	Redis redis.Cmdable
	// RPCURL looks up an RPC endpoint's real URL by its configured name
	// (the live view holds redacted URLs only).
	RPCURL func(name string) (string, bool)
	// Silences is Alertmanager's API v2 (alertmanager.url), shared with
	// the silences asked for from Slack; nil when not configured.
	Silences Silencer
	// Webhooks posts the webhook action's requests (actions.webhook: its
	// allowlist and header secrets); nil when no allowlist is configured.
	Webhooks Webhooks
	// SolanaPrimary names the primary RPC endpoint (role primary in
	// solana.endpoints): the node Solana actions read and send through
	// unless a step names another endpoint.
	SolanaPrimary string
	// UpgradeSigner signs program upgrades (solana.program_rollback) when
	// solana.upgrade_signer_keypair_file is configured, for devnet and
	// staging; nil otherwise, and the action then builds the unsigned
	// transaction for the upgrade authority's signers (a multisig).
	UpgradeSigner TxSigner
	// UpgradeNonceAccount is solana.upgrade_nonce_account (base58): the
	// durable nonce account the unsigned upgrade transaction of
	// solana.program_rollback uses instead of a recent blockhash; empty
	// for a recent blockhash.
	UpgradeNonceAccount string
}

// ErrDryRun is returned by Run when the system the action needs is not
// configured: nothing was changed.
var ErrDryRun = errors.New("dry run: the system this action needs is not configured")

// ErrOutcomeUnknown is returned (wrapped, with what was sent) by Run when
// the change may or may not have happened: the command went out and no
// answer came back (a timeout, a dropped connection). The engine reports
// the run's outcome as unknown, for a person to check, and never retries
// it; a plain error means nothing was changed.
var ErrOutcomeUnknown = errors.New("no answer: it may or may not have been applied")

// ErrNotYet is returned (wrapped, saying what is awaited) by Verify when
// the change is not visible yet but may still become so: a rollout still
// progressing, a multisig upgrade waiting for its signers. The engine
// probes again until the step's verify window (`verify.within`) ends; any
// other error fails the check at once.
var ErrNotYet = errors.New("not verified yet")

// Runs reports whether the action can run (its bound form is a Runner), by
// binding its own example; the others render a plan for a person to carry
// out.
func Runs(a Action) bool {
	var doc yaml.Node
	if yaml.Unmarshal([]byte(a.Describe().Example), &doc) != nil || len(doc.Content) == 0 {
		return false
	}
	var params *yaml.Node
	if m := doc.Content[0]; m.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == "params" {
				params = m.Content[i+1]
			}
		}
	}
	b, err := a.Load(params, "example")
	if err != nil {
		return false
	}
	_, ok := b.(Runner)
	return ok
}
