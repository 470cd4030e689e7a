package actions

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/incidentbot/incidentbot/redact"
	"github.com/incidentbot/incidentbot/rpcview"
)

// HealthiestBackup is the solana.switch_rpc url value that picks the
// healthiest backup endpoint from the RPC view when the plan is made.
const HealthiestBackup = "healthiest_backup"

// SwitchRPCParams are solana.switch_rpc's parameters.
type SwitchRPCParams struct {
	Namespace  Template `yaml:"namespace"`
	Deployment Template `yaml:"deployment"`
	Container  Template `yaml:"container"`
	// Env is the variable holding the app's RPC URL, SOLANA_RPC_URL by default.
	Env Template `yaml:"env"`
	// URL is an explicit endpoint URL or "healthiest_backup".
	URL Template `yaml:"url"`
}

// SwitchRPC points the app at another Solana RPC endpoint
// (`kubectl set env deployment/api SOLANA_RPC_URL=<backup>`).
var SwitchRPC Action = kubeSpec[SwitchRPCParams, rpcQ]{spec: spec[SwitchRPCParams]{
	desc: Description{
		Name: "solana.switch_rpc",
		Description: "Point a deployment at another Solana RPC endpoint by setting its RPC URL variable; " +
			"url: healthiest_backup picks the healthiest backup from the RPC watcher's live view.",
		Params: []Param{paramNamespace, paramDeployment, paramContainer,
			{Name: "env", Type: "template", Default: "SOLANA_RPC_URL", Description: "environment variable holding the RPC URL"},
			{Name: "url", Type: "template", Required: true, Description: "http(s) URL, or healthiest_backup"},
		},
		Example: `id: switch-rpc
title: Switch to backup RPC
action: solana.switch_rpc
params:
  namespace: solana-dapps
  deployment: api
  env: SOLANA_RPC_URL
  url: healthiest_backup
`,
		RBAC: []Permission{rbacDeploymentPatch},
	},
	check: func(p *SwitchRPCParams, v *validator) {
		checkDeployment(v, p.Namespace, p.Deployment)
		v.check("container", p.Container, checkContainer)
		if p.Env.IsZero() {
			p.Env = MustTemplate("SOLANA_RPC_URL")
		}
		v.check("env", p.Env, checkEnvName)
		if v.required("url", p.URL) {
			v.check("url", p.URL, checkRPCURL)
		}
	},
	plan: func(ctx context.Context, p *SwitchRPCParams, data PlanData) (string, error) {
		t, err := renderEnvTarget(p.Namespace, p.Deployment, p.Container, "env", p.Env, data)
		if err != nil {
			return "", err
		}
		u, err := render("url", p.URL, data, checkRPCURL)
		if err != nil {
			return "", err
		}
		if u != HealthiestBackup {
			return t.plan(redact.URL(u)), nil
		}
		b, how, err := healthiestBackup(ctx, data)
		if err != nil {
			return "", err
		}
		return t.plan(redact.URL(b.URL) + " (" + how + ")"), nil
	},
},
	resolve: resolveSwitchRPC,
	run:     runSwitchRPC,
	verify:  verifySwitchRPC,
	revert:  revertSwitchRPC,
}

func checkRPCURL(s string) error {
	if s == HealthiestBackup {
		return nil
	}
	if err := checkURL(s); err != nil {
		return fmt.Errorf("%w; want an http(s) URL or %s", err, HealthiestBackup)
	}
	return nil
}

// healthiestBackup picks the backup endpoint: from the live RPC view when
// there is one, else from the signal's healthiest_backup field (what the
// watcher saw when it fired).
func healthiestBackup(ctx context.Context, data PlanData) (rpcview.Endpoint, string, error) {
	var why string
	if data.RPC == nil {
		why = "no RPC view: no Solana RPC watcher is configured"
	} else {
		v, err := data.RPC.View(ctx)
		switch {
		case err != nil:
			why = err.Error()
		default:
			if e, ok := v.HealthiestBackup(); ok {
				return e, fmt.Sprintf("healthiest backup %q, lag %d slots", e.Name, e.SlotLag), nil
			}
			why = fmt.Sprintf("the RPC view lists no healthy backup endpoint (%d endpoints)", len(v.Endpoints))
		}
	}
	if e, ok := backupFromFields(data.Fields); ok {
		return e, fmt.Sprintf("healthiest backup %q as reported when the alert fired; live view unavailable: %s", e.Name, why), nil
	}
	return rpcview.Endpoint{}, "", errors.New("no healthy backup RPC endpoint to switch to: " + why + "; pick an endpoint by hand")
}

func backupFromFields(f map[string]any) (rpcview.Endpoint, bool) {
	m, ok := f["healthiest_backup"].(map[string]any)
	if !ok {
		return rpcview.Endpoint{}, false
	}
	name, _ := m["name"].(string)
	u, _ := m["url"].(string)
	if checkURL(u) != nil {
		return rpcview.Endpoint{}, false
	}
	return rpcview.Endpoint{Name: name, URL: u, Role: rpcview.RoleBackup, Healthy: true}, true
}

// ProgramRollbackParams are solana.program_rollback's parameters.
type ProgramRollbackParams struct {
	// Program is the program id.
	Program Template `yaml:"program"`
	// Buffer is the staged buffer account holding the previous binary.
	Buffer Template `yaml:"buffer"`
	// Cluster is mainnet-beta (default), devnet, testnet, localnet or an
	// RPC URL: what the card says, and the guard of the signer: the bot
	// never signs on mainnet-beta.
	Cluster Template `yaml:"cluster"`
	// Endpoint names the configured RPC endpoint (solana.endpoints[].name)
	// the action reads and sends through; the primary by default.
	Endpoint Template `yaml:"endpoint"`
	// Spill receives the buffer's lamports when the upgrade closes it; the
	// upgrade authority by default.
	Spill Template `yaml:"spill"`
}

// ProgramRollback redeploys a program from a staged buffer holding its
// previous binary: the upgradeable loader's Upgrade instruction (what
// `solana program deploy --buffer` sends for an existing program).
var ProgramRollback Action = rollbackSpec{spec[ProgramRollbackParams]{
	desc: Description{
		Name: "solana.program_rollback",
		Description: "Roll a Solana program back by upgrading it from a staged buffer that holds the previous binary. " +
			"With a multisig upgrade authority (mainnet) it builds the unsigned transaction for the signers and posts it with what to check " +
			"(with solana.upgrade_nonce_account it uses that durable nonce, so it stays valid until signed; otherwise a recent blockhash, valid a minute or two); " +
			"with solana.upgrade_signer_keypair_file (devnet, staging; never on mainnet-beta) it signs and sends. " +
			"Verified when the ProgramData slot changes and the program holds the buffer's binary.",
		Params: []Param{
			{Name: "program", Type: "template", Required: true, Description: "program id (base58)"},
			{Name: "buffer", Type: "template", Required: true, Description: "buffer account with the previous binary (base58)"},
			{Name: "cluster", Type: "template", Default: "mainnet-beta", Description: "mainnet-beta, devnet, testnet, localnet or an RPC URL; the bot never signs on mainnet-beta"},
			{Name: "endpoint", Type: "template", Default: "the primary", Description: "configured RPC endpoint (solana.endpoints[].name) to read and send through"},
			{Name: "spill", Type: "template", Default: "the upgrade authority", Description: "account that receives the closed buffer's lamports (base58)"},
		},
		Example: `id: rollback-program
title: Roll back the escrow program
action: solana.program_rollback
params:
  program: "{{ .Labels.program }}"
  buffer: 9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin
`,
		Needs: []string{"solana RPC endpoint", "solana upgrade authority (multisig signers, or solana.upgrade_signer_keypair_file off mainnet)"},
	},
	check: func(p *ProgramRollbackParams, v *validator) {
		if v.required("program", p.Program) {
			v.check("program", p.Program, checkBase58("program id"))
		}
		if v.required("buffer", p.Buffer) {
			v.check("buffer", p.Buffer, checkBase58("buffer address"))
		}
		if p.Cluster.IsZero() {
			p.Cluster = MustTemplate("mainnet-beta")
		}
		v.check("cluster", p.Cluster, checkCluster)
		v.check("endpoint", p.Endpoint, checkEndpointName)
		v.check("spill", p.Spill, checkBase58("spill address"))
		if p.Program.Static() && p.Buffer.Static() && p.Program.String() == p.Buffer.String() {
			v.fail("buffer", "is the program id itself")
		}
	},
	plan: func(_ context.Context, p *ProgramRollbackParams, data PlanData) (string, error) {
		r, err := renderRollback(p, data)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("program %s on %s: upgrade from staged buffer %s (solana program deploy --program-id %s --buffer %s); needs the upgrade authority's signature",
			r.Program, redact.URL(r.Cluster), r.Buffer, r.Program, r.Buffer), nil
	},
}}

func checkCluster(s string) error {
	switch s {
	case "mainnet-beta", "devnet", "testnet", "localnet":
		return nil
	}
	if checkURL(s) == nil {
		return nil
	}
	return fmt.Errorf("%q is not a cluster (mainnet-beta, devnet, testnet, localnet or an http(s) URL)", s)
}

func checkEndpointName(s string) error {
	if s == "" || strings.ContainsAny(s, " \t\r\n/:") {
		return fmt.Errorf("%q is not an endpoint name (solana.endpoints[].name)", s)
	}
	return nil
}
