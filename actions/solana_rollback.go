package actions

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	solana "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"
	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/internal/loaderv3"
	"github.com/incidentbot/incidentbot/redact"
)

// solana.program_rollback runs in one of two modes, chosen when the plan
// is resolved (the plan hash covers it):
//
//   - RollbackUnsigned (the default, and the course's rule for mainnet,
//     where the upgrade authority is a multisig): Run builds the unsigned
//     Upgrade transaction and hands it, with what the signers must check,
//     to the thread. The bot never holds the authority's key. Verify
//     waits (ErrNotYet) until the signers have sent it. With
//     solana.upgrade_nonce_account the transaction uses that durable
//     nonce (AdvanceNonceAccount first, the nonce as its blockhash)
//     instead of a recent blockhash, so it does not expire while the
//     signers review and sign it.
//   - RollbackSign: only when solana.upgrade_signer_keypair_file is
//     configured, its key is the program's upgrade authority, the step's
//     cluster is not mainnet-beta and the node's genesis hash is not
//     mainnet-beta's (devnet, staging). Run signs, sends and waits for
//     confirmation.
//
// A rollback is not undone by the bot: the action is a Runner, not a
// Reverter.
const (
	RollbackUnsigned = "unsigned"
	RollbackSign     = "sign"
)

// mainnetGenesisHash is mainnet-beta's genesis hash: the bot never signs
// on a node that reports it.
const mainnetGenesisHash = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d"

// rollbackParams are a resolved rollback's Plan.Params: everything the
// approvers approve. The endpoint is a name: its URL (which may hold an
// API key) is looked up again when the plan runs.
type rollbackParams struct {
	Program      string `json:"program"`
	ProgramData  string `json:"programdata"`
	Buffer       string `json:"buffer"`
	Authority    string `json:"authority"`
	Spill        string `json:"spill"`
	Mode         string `json:"mode"`
	Cluster      string `json:"cluster"`
	Endpoint     string `json:"endpoint"`
	BufferLen    int    `json:"buffer_len"`
	BufferSHA256 string `json:"buffer_sha256"`
	// NonceAccount is the durable nonce account of an unsigned plan
	// (solana.upgrade_nonce_account); empty for a recent blockhash. Its
	// nonce value is not part of the plan: it changes.
	NonceAccount string `json:"nonce_account,omitempty"`
}

// programDataState is the ProgramData before the run (Outcome.Before).
type programDataState struct {
	Slot uint64 `json:"programdata_slot"`
}

// rollbackResult is what the run produced (Outcome.After): the unsigned
// transaction, or the signature of the one sent.
type rollbackResult struct {
	Transaction          string `json:"transaction,omitempty"`
	Blockhash            string `json:"blockhash,omitempty"`
	NonceAccount         string `json:"nonce_account,omitempty"`
	LastValidBlockHeight uint64 `json:"last_valid_block_height,omitempty"`
	Signature            string `json:"signature,omitempty"`
	Slot                 uint64 `json:"slot,omitempty"`
}

type rollbackSpec struct{ spec[ProgramRollbackParams] }

func (s rollbackSpec) Load(n *yaml.Node, path string) (Bound, error) {
	b, err := s.spec.Load(n, path)
	if err != nil {
		return nil, err
	}
	return rollbackBound{b.(bound[ProgramRollbackParams])}, nil
}

type rollbackBound struct{ bound[ProgramRollbackParams] }

var _ Runner = rollbackBound{}

// renderedRollback is a rollback's parameters rendered for one signal.
type renderedRollback struct {
	Program, Buffer, Cluster, Endpoint, Spill string
}

func renderRollback(p *ProgramRollbackParams, data PlanData) (renderedRollback, error) {
	var r renderedRollback
	var err error
	if r.Program, err = render("program", p.Program, data, checkBase58("program id")); err != nil {
		return r, err
	}
	if r.Buffer, err = render("buffer", p.Buffer, data, checkBase58("buffer address")); err != nil {
		return r, err
	}
	if r.Cluster, err = render("cluster", p.Cluster, data, checkCluster); err != nil {
		return r, err
	}
	if !p.Endpoint.IsZero() {
		if r.Endpoint, err = render("endpoint", p.Endpoint, data, checkEndpointName); err != nil {
			return r, err
		}
	}
	if !p.Spill.IsZero() {
		if r.Spill, err = render("spill", p.Spill, data, checkBase58("spill address")); err != nil {
			return r, err
		}
	}
	return r, nil
}

func parseKey(what, s string) (solana.PublicKey, error) {
	k, err := solana.PublicKeyFromBase58(s)
	if err != nil {
		return k, fmt.Errorf("%s %q is not a public key: %w", what, s, err)
	}
	return k, nil
}

// rollbackNode is the RPC node a rollback reads and sends through.
type rollbackNode struct {
	name string
	c    *rpc.Client
}

// node looks the endpoint up by name (the primary when name is empty).
// ok is false when Solana is not configured at all: a dry run.
func rollbackEndpoint(env Env, name string) (node rollbackNode, ok bool, err error) {
	if name == "" {
		name = env.SolanaPrimary
	}
	if env.RPCURL == nil || name == "" {
		return rollbackNode{}, false, nil
	}
	u, found := env.RPCURL(name)
	if !found {
		return rollbackNode{}, false, fmt.Errorf("RPC endpoint %q is not configured in solana.endpoints", name)
	}
	return rollbackNode{name: name, c: rpc.New(u)}, true, nil
}

// account reads an account; nil, nil when it does not exist.
func (n rollbackNode) account(ctx context.Context, what string, k solana.PublicKey, slice *rpc.DataSlice) (*rpc.Account, error) {
	res, err := n.c.GetAccountInfoWithOpts(ctx, k, &rpc.GetAccountInfoOpts{
		Encoding: solana.EncodingBase64, Commitment: rpc.CommitmentConfirmed, DataSlice: slice,
	})
	switch {
	case errors.Is(err, rpc.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read %s %s from endpoint %s: %w", what, k, n.name, err)
	case res == nil || res.Value == nil:
		return nil, nil
	}
	return res.Value, nil
}

// nonce reads a durable nonce account (solana.upgrade_nonce_account) and
// refuses one a transaction cannot use.
func (n rollbackNode) nonce(ctx context.Context, k solana.PublicKey) (loaderv3.Nonce, error) {
	a, err := n.account(ctx, "nonce account", k, nil)
	if err != nil {
		return loaderv3.Nonce{}, err
	}
	if a == nil {
		return loaderv3.Nonce{}, fmt.Errorf("nonce account %s (solana.upgrade_nonce_account) does not exist on endpoint %s: create it with `solana create-nonce-account <keypair> <amount> --nonce-authority <upgrade authority>`", k, n.name)
	}
	if !a.Owner.Equals(solana.SystemProgramID) {
		return loaderv3.Nonce{}, fmt.Errorf("account %s (solana.upgrade_nonce_account) is owned by %s, not the system program: it is not a nonce account", k, a.Owner)
	}
	nd, err := loaderv3.DecodeNonce(a.Data.GetBinary())
	if err != nil {
		return loaderv3.Nonce{}, fmt.Errorf("account %s (solana.upgrade_nonce_account) is not a nonce account: %w", k, err)
	}
	if err := nd.Usable(); err != nil {
		return loaderv3.Nonce{}, fmt.Errorf("account %s (solana.upgrade_nonce_account): %w", k, err)
	}
	return nd, nil
}

func headerSlice(n int) *rpc.DataSlice {
	off, length := uint64(0), uint64(n)
	return &rpc.DataSlice{Offset: &off, Length: &length}
}

// programData reads a program's ProgramData header and the size of its
// account, refusing an account that is not the loader's.
func (n rollbackNode) programData(ctx context.Context, program, pdAddr solana.PublicKey, codeLen int) (loaderv3.ProgramData, []byte, uint64, error) {
	a, err := n.account(ctx, "programdata", pdAddr, headerSlice(loaderv3.ProgramDataMetaLen+codeLen))
	if err != nil {
		return loaderv3.ProgramData{}, nil, 0, err
	}
	if a == nil {
		return loaderv3.ProgramData{}, nil, 0, fmt.Errorf("program %s has no ProgramData account %s on endpoint %s", program, pdAddr, n.name)
	}
	data := a.Data.GetBinary()
	pd, err := loaderv3.DecodeProgramData(data)
	if err != nil || !a.Owner.Equals(loaderv3.ProgramID) {
		return loaderv3.ProgramData{}, nil, 0, fmt.Errorf("account %s is not the ProgramData of an upgradeable program (owner %s): %v", pdAddr, a.Owner, err)
	}
	return pd, data, a.Space, nil
}

// Resolve reads the program, its ProgramData and the buffer, and refuses
// what the loader would refuse: a missing buffer, a buffer whose
// authority is not the program's upgrade authority, an immutable program,
// a buffer larger than the program's account.
func (b rollbackBound) Resolve(ctx context.Context, env Env, data PlanData) (Plan, error) {
	p := b.p
	r, err := renderRollback(&p, data)
	var missing *MissingError
	if errors.As(err, &missing) {
		err = withAllMissing(missing, &b.p, data)
	}
	if err != nil {
		return Plan{}, fmt.Errorf("%s: %w", b.name, err)
	}
	q, text, err := resolveProgramRollback(ctx, env, r)
	if err != nil {
		return Plan{}, fmt.Errorf("%s: %w", b.name, err)
	}
	return NewPlan(b.name, text, "program "+q.Program, q)
}

func resolveProgramRollback(ctx context.Context, env Env, r renderedRollback) (rollbackParams, string, error) {
	q := rollbackParams{Program: r.Program, Buffer: r.Buffer, Cluster: r.Cluster}
	program, err := parseKey("program id", r.Program)
	if err != nil {
		return q, "", err
	}
	buffer, err := parseKey("buffer", r.Buffer)
	if err != nil {
		return q, "", err
	}
	pdAddr, err := loaderv3.ProgramDataAddress(program)
	if err != nil {
		return q, "", err
	}
	q.ProgramData = pdAddr.String()
	node, ok, err := rollbackEndpoint(env, r.Endpoint)
	if err != nil {
		return q, "", err
	}
	where := redact.URL(r.Cluster)
	if !ok {
		return q, fmt.Sprintf("program %s on %s: upgrade from staged buffer %s (dry run: no Solana RPC endpoint is configured to read the program, the buffer and the upgrade authority)",
			r.Program, where, r.Buffer), nil
	}
	q.Endpoint = node.name

	prog, err := node.account(ctx, "program", program, nil)
	if err != nil {
		return q, "", err
	}
	if prog == nil {
		return q, "", fmt.Errorf("program %s does not exist on endpoint %s (%s)", program, node.name, where)
	}
	if !prog.Owner.Equals(loaderv3.ProgramID) {
		return q, "", fmt.Errorf("program %s is owned by %s, not the upgradeable loader: it cannot be upgraded from a buffer", program, prog.Owner)
	}
	if got, err := loaderv3.DecodeProgram(prog.Data.GetBinary()); err != nil || got != pdAddr {
		return q, "", fmt.Errorf("account %s is not an upgradeable program (its ProgramData should be %s)", program, pdAddr)
	}

	buf, err := node.account(ctx, "buffer", buffer, nil)
	if err != nil {
		return q, "", err
	}
	if buf == nil {
		return q, "", fmt.Errorf("buffer %s does not exist on endpoint %s: it was never staged, or an upgrade already used and closed it; stage the previous binary with `solana program write-buffer`", buffer, node.name)
	}
	bufData := buf.Data.GetBinary()
	bh, err := loaderv3.DecodeBuffer(bufData)
	if err != nil || !buf.Owner.Equals(loaderv3.ProgramID) {
		return q, "", fmt.Errorf("account %s is not a loader buffer (owner %s)", buffer, buf.Owner)
	}
	code := bufData[loaderv3.BufferMetaLen:]
	if len(code) == 0 {
		return q, "", fmt.Errorf("buffer %s holds no program", buffer)
	}
	sum := sha256.Sum256(code)
	q.BufferLen, q.BufferSHA256 = len(code), hex.EncodeToString(sum[:])

	pd, _, space, err := node.programData(ctx, program, pdAddr, 0)
	if err != nil {
		return q, "", err
	}
	if pd.Authority == nil {
		return q, "", fmt.Errorf("program %s is immutable (it has no upgrade authority): it cannot be rolled back", program)
	}
	auth := *pd.Authority
	if bh.Authority == nil || *bh.Authority != auth {
		got := "none"
		if bh.Authority != nil {
			got = bh.Authority.String()
		}
		return q, "", fmt.Errorf("buffer %s has authority %s, not the program's upgrade authority %s: the loader would refuse it; `solana program set-buffer-authority %s --new-buffer-authority %s`",
			buffer, got, auth, buffer, auth)
	}
	if room := int64(space) - loaderv3.ProgramDataMetaLen; int64(len(code)) > room {
		return q, "", fmt.Errorf("the buffer's program (%d bytes) does not fit program %s's account (%d bytes): `solana program extend %s %d` first",
			len(code), program, room, program, int64(len(code))-room)
	}
	q.Authority = auth.String()
	q.Spill = q.Authority
	if r.Spill != "" {
		spill, err := parseKey("spill", r.Spill)
		if err != nil {
			return q, "", err
		}
		q.Spill = spill.String()
	}

	q.Mode = RollbackUnsigned
	how := "the bot builds the unsigned transaction for the upgrade authority's signers and holds no key"
	if s := env.UpgradeSigner; s != nil {
		switch {
		case s.PublicKey() != auth:
			how += fmt.Sprintf(" (the configured upgrade signer %s is not this program's authority)", s.PublicKey())
		case r.Cluster == "mainnet-beta":
			how += " (the configured upgrade signer is never used on mainnet-beta)"
		default:
			genesis, err := node.c.GetGenesisHash(ctx)
			switch {
			case err != nil:
				return q, "", fmt.Errorf("read the genesis hash of endpoint %s: %w", node.name, err)
			case genesis.String() == mainnetGenesisHash:
				how += fmt.Sprintf(" (endpoint %s is on mainnet-beta: the configured upgrade signer is never used there)", node.name)
			default:
				q.Mode = RollbackSign
				how = "the bot signs with the configured upgrade signer and sends it"
			}
		}
	}
	if q.Mode == RollbackUnsigned && env.UpgradeNonceAccount != "" {
		acct, err := parseKey("solana.upgrade_nonce_account", env.UpgradeNonceAccount)
		if err != nil {
			return q, "", err
		}
		nd, err := node.nonce(ctx, acct)
		if err != nil {
			return q, "", err
		}
		if nd.Authority != auth {
			return q, "", fmt.Errorf("nonce account %s (solana.upgrade_nonce_account) has nonce authority %s, not program %s's upgrade authority %s: the upgrade's signers must also sign the nonce advance; `solana authorize-nonce-account %s %s` (signed by %s), or unset solana.upgrade_nonce_account",
				acct, nd.Authority, program, auth, acct, auth, nd.Authority)
		}
		q.NonceAccount = acct.String()
		how += fmt.Sprintf(", with durable nonce account %s (nonce authority %s) instead of a recent blockhash, so it does not expire before it is signed", acct, auth)
	}
	text := fmt.Sprintf("program %s on %s (endpoint %s): upgrade from staged buffer %s (%d bytes, sha256 %s) with upgrade authority %s, spill %s; %s",
		q.Program, where, node.name, q.Buffer, q.BufferLen, q.BufferSHA256, q.Authority, q.Spill, how)
	return q, text, nil
}

// decode checks that p is a plan of this action, unaltered since Resolve.
func (b rollbackBound) decode(p Plan) (rollbackParams, error) {
	var q rollbackParams
	if p.Action != b.name {
		return q, fmt.Errorf("%s: plan is for %s", b.name, p.Action)
	}
	if p.Hash != PlanHash(p) {
		return q, fmt.Errorf("%s: plan hash does not match its parameters", b.name)
	}
	if err := json.Unmarshal(p.Params, &q); err != nil {
		return q, fmt.Errorf("%s: decode plan: %w", b.name, err)
	}
	return q, nil
}

// ErrSolanaNotConfigured is the dry run of a rollback without an RPC
// endpoint.
var ErrSolanaNotConfigured = &DryRunError{Need: "solana.endpoints"}

type rollbackKeys struct {
	program, programData, buffer, authority, spill solana.PublicKey
}

func (q rollbackParams) keys() (rollbackKeys, error) {
	var k rollbackKeys
	for _, f := range []struct {
		dst       *solana.PublicKey
		what, val string
	}{{&k.program, "program", q.Program}, {&k.programData, "programdata", q.ProgramData}, {&k.buffer, "buffer", q.Buffer},
		{&k.authority, "authority", q.Authority}, {&k.spill, "spill", q.Spill}} {
		v, err := parseKey(f.what, f.val)
		if err != nil {
			return k, err
		}
		*f.dst = v
	}
	return k, nil
}

// Run builds the Upgrade transaction with a recent blockhash, paid for by
// the authority. Unsigned: it returns it for the signers. Sign: it signs,
// sends and waits for confirmation within ctx.
func (b rollbackBound) Run(ctx context.Context, env Env, p Plan) (Outcome, error) {
	q, err := b.decode(p)
	if err != nil {
		return Outcome{}, err
	}
	if q.Mode == "" {
		return Outcome{}, ErrSolanaNotConfigured
	}
	o, err := runProgramRollback(ctx, env, q)
	if err != nil {
		return o, fmt.Errorf("%s %s: %w", b.name, p.Target, err)
	}
	return o, nil
}

func runProgramRollback(ctx context.Context, env Env, q rollbackParams) (Outcome, error) {
	k, err := q.keys()
	if err != nil {
		return Outcome{}, err
	}
	node, ok, err := rollbackEndpoint(env, q.Endpoint)
	if err != nil {
		return Outcome{}, err
	}
	if !ok {
		return Outcome{}, ErrSolanaNotConfigured
	}
	var signer TxSigner
	if q.Mode == RollbackSign {
		signer = env.UpgradeSigner
		if signer == nil || signer.PublicKey() != k.authority {
			return Outcome{}, fmt.Errorf("the plan signs with the upgrade authority %s, but no signer with that key is configured now: nothing was sent", k.authority)
		}
	}
	pd, _, _, err := node.programData(ctx, k.program, k.programData, 0)
	if err != nil {
		return Outcome{}, err
	}
	if pd.Authority == nil || *pd.Authority != k.authority {
		return Outcome{}, fmt.Errorf("the program's upgrade authority is now %s, not %s as planned: nothing was done; resolve the step again", loaderAuthority(pd.Authority), k.authority)
	}
	before := mustJSON(programDataState{Slot: pd.Slot})
	u := loaderv3.Upgrade{ProgramData: k.programData, Program: k.program, Buffer: k.buffer, Spill: k.spill, Authority: k.authority}
	if signer == nil && q.NonceAccount != "" {
		return runWithNonce(ctx, node, q, u, pd.Slot, before)
	}
	bh, err := node.c.GetLatestBlockhash(ctx, rpc.CommitmentFinalized)
	if err != nil {
		return Outcome{Before: before}, fmt.Errorf("get a recent blockhash from endpoint %s: %w", node.name, err)
	}
	if bh == nil || bh.Value == nil {
		return Outcome{Before: before}, fmt.Errorf("get a recent blockhash from endpoint %s: empty answer", node.name)
	}
	tx, err := u.Transaction(bh.Value.Blockhash)
	if err != nil {
		return Outcome{Before: before}, err
	}
	if signer == nil {
		b64, err := tx.ToBase64()
		if err != nil {
			return Outcome{Before: before}, fmt.Errorf("encode the transaction: %w", err)
		}
		after := mustJSON(rollbackResult{Transaction: b64, Blockhash: bh.Value.Blockhash.String(), LastValidBlockHeight: bh.Value.LastValidBlockHeight})
		return Outcome{Before: before, After: after, Detail: unsignedDetail(q, pd.Slot, b64, nil)}, nil
	}
	msg, err := tx.Message.MarshalBinary()
	if err != nil {
		return Outcome{Before: before}, fmt.Errorf("encode the transaction message: %w", err)
	}
	sig, err := signer.Sign(msg)
	if err != nil {
		return Outcome{Before: before}, fmt.Errorf("sign: %w", err)
	}
	tx.Signatures = []solana.Signature{sig}
	if _, err := node.c.SendTransactionWithOpts(ctx, tx, rpc.TransactionOpts{PreflightCommitment: rpc.CommitmentConfirmed}); err != nil {
		return Outcome{Before: before}, fmt.Errorf("send the upgrade transaction through endpoint %s: %w", node.name, Unanswered(err))
	}
	slot, err := confirm(ctx, node, sig)
	if err != nil {
		// Sent, but not seen confirmed: the outcome is unknown (Verify,
		// the ProgramData slot, tells), unless the chain said it failed.
		if !errors.Is(err, errTxFailed) {
			err = fmt.Errorf("%w (%w)", err, ErrOutcomeUnknown)
		}
		return Outcome{Before: before, After: mustJSON(rollbackResult{Signature: sig.String()})},
			fmt.Errorf("sent upgrade transaction %s, not confirmed: %w; check with `solana confirm %s`", sig, err, sig)
	}
	return Outcome{
		Before: before,
		After:  mustJSON(rollbackResult{Signature: sig.String(), Slot: slot}),
		Detail: fmt.Sprintf("upgraded program %s from buffer %s (%d bytes, sha256 %s): transaction %s confirmed at slot %d (ProgramData slot was %d)",
			q.Program, q.Buffer, q.BufferLen, q.BufferSHA256, sig, slot, pd.Slot),
	}, nil
}

// runWithNonce builds the unsigned transaction with the plan's durable
// nonce: AdvanceNonceAccount first, the nonce read now as its blockhash.
func runWithNonce(ctx context.Context, node rollbackNode, q rollbackParams, u loaderv3.Upgrade, slot uint64, before []byte) (Outcome, error) {
	acct, err := parseKey("nonce account", q.NonceAccount)
	if err != nil {
		return Outcome{Before: before}, err
	}
	nd, err := node.nonce(ctx, acct)
	if err != nil {
		return Outcome{Before: before}, fmt.Errorf("%w: nothing was done; resolve the step again", err)
	}
	if nd.Authority != u.Authority {
		return Outcome{Before: before}, fmt.Errorf("nonce account %s's authority is now %s, not the upgrade authority %s as planned: nothing was done; resolve the step again", acct, nd.Authority, u.Authority)
	}
	tx, err := u.NonceTransaction(loaderv3.AdvanceNonce{Account: acct, Authority: u.Authority}, nd.Blockhash)
	if err != nil {
		return Outcome{Before: before}, err
	}
	b64, err := tx.ToBase64()
	if err != nil {
		return Outcome{Before: before}, fmt.Errorf("encode the transaction: %w", err)
	}
	after := mustJSON(rollbackResult{Transaction: b64, Blockhash: nd.Blockhash.String(), NonceAccount: acct.String()})
	return Outcome{Before: before, After: after, Detail: unsignedDetail(q, slot, b64, &nd)}, nil
}

func loaderAuthority(k *solana.PublicKey) string {
	if k == nil {
		return "none (immutable)"
	}
	return k.String()
}

// unsignedDetail is what the thread shows the signers; nonce is the
// durable nonce the transaction uses, nil for a recent blockhash.
func unsignedDetail(q rollbackParams, slot uint64, b64 string, nonce *loaderv3.Nonce) string {
	check := fmt.Sprintf("Unsigned upgrade transaction for the upgrade authority's signers (the bot holds no key). "+
		"Before signing, check: program %s; buffer %s holding %d bytes with sha256 %s (compare with the previous release's binary, e.g. `solana program dump`, or `sha256sum` of the .so); "+
		"upgrade authority and fee payer %s; spill %s; ",
		q.Program, q.Buffer, q.BufferLen, q.BufferSHA256, q.Authority, q.Spill)
	var validity string
	if nonce == nil {
		check += "instruction: BPF upgradeable loader Upgrade (data 03000000). "
		validity = "Its blockhash expires after about 150 blocks (a minute or two): sign at once, or build the same instruction in the multisig (e.g. a Squads program upgrade with this program and buffer). "
	} else {
		check += fmt.Sprintf("instructions: 1. system program AdvanceNonceAccount (data 04000000) of durable nonce account %s, nonce authority %s; 2. BPF upgradeable loader Upgrade (data 03000000). ",
			q.NonceAccount, q.Authority)
		validity = fmt.Sprintf("Its blockhash is the durable nonce %s stored in %s, not a recent blockhash: the transaction stays valid until that nonce is advanced, so there is no hurry (hardware wallets, several signers, offline signing). "+
			"Landing it advances the nonce, so it lands once; anything else that advances the nonce first (another transaction using %s, `solana new-nonce`) voids it (then build the same two instructions with the new nonce, or the Upgrade in the multisig). "+
			"To check it is still valid: `solana nonce %s` must print %s. ",
			nonce.Blockhash, q.NonceAccount, q.NonceAccount, q.NonceAccount, nonce.Blockhash)
	}
	return check + validity + fmt.Sprintf("The step verifies when the ProgramData slot (now %d) changes. Transaction (base64): %s", slot, b64)
}

// errTxFailed is a sent transaction the chain executed and failed:
// nothing changed.
var errTxFailed = errors.New("transaction failed")

// confirmInterval is how often a sent transaction's status is read.
const confirmInterval = 400 * time.Millisecond

// confirm waits until sig is confirmed or ctx ends; it returns the slot.
func confirm(ctx context.Context, node rollbackNode, sig solana.Signature) (uint64, error) {
	t := time.NewTicker(confirmInterval)
	defer t.Stop()
	for {
		st, err := node.c.GetSignatureStatuses(ctx, false, sig)
		switch {
		case errors.Is(err, rpc.ErrNotFound):
		case err != nil:
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
		case len(st.Value) == 1 && st.Value[0] != nil:
			s := st.Value[0]
			if s.Err != nil {
				return 0, fmt.Errorf("%w at slot %d: %v", errTxFailed, s.Slot, s.Err)
			}
			if s.ConfirmationStatus == rpc.ConfirmationStatusConfirmed || s.ConfirmationStatus == rpc.ConfirmationStatusFinalized {
				return s.Slot, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-t.C:
		}
	}
}

// Verify reads the ProgramData: not yet (ErrNotYet) while its slot is the
// one recorded before the run; verified once it changed and the program
// holds the buffer's binary.
func (b rollbackBound) Verify(ctx context.Context, env Env, p Plan, o Outcome) error {
	q, err := b.decode(p)
	if err != nil {
		return err
	}
	if q.Mode == "" {
		return ErrSolanaNotConfigured
	}
	if err := verifyProgramRollback(ctx, env, q, o); err != nil {
		return fmt.Errorf("%s %s: not verified: %w", b.name, p.Target, err)
	}
	return nil
}

func verifyProgramRollback(ctx context.Context, env Env, q rollbackParams, o Outcome) error {
	var before programDataState
	if err := json.Unmarshal(o.Before, &before); err != nil || len(o.Before) == 0 {
		return errors.New("no ProgramData slot recorded before the run")
	}
	k, err := q.keys()
	if err != nil {
		return err
	}
	node, ok, err := rollbackEndpoint(env, q.Endpoint)
	if err != nil {
		return err
	}
	if !ok {
		return ErrSolanaNotConfigured
	}
	pd, data, _, err := node.programData(ctx, k.program, k.programData, q.BufferLen)
	if err != nil {
		return err
	}
	if pd.Slot == before.Slot {
		if q.Mode == RollbackUnsigned {
			return fmt.Errorf("waiting for the upgrade authority's signers: ProgramData slot still %d: %w", pd.Slot, ErrNotYet)
		}
		return fmt.Errorf("ProgramData slot still %d: %w", pd.Slot, ErrNotYet)
	}
	code := data[min(len(data), loaderv3.ProgramDataMetaLen):]
	sum := sha256.Sum256(code)
	if len(code) != q.BufferLen || hex.EncodeToString(sum[:]) != q.BufferSHA256 {
		return fmt.Errorf("the program was upgraded at slot %d (was %d) but does not hold the buffer's binary (%d bytes, sha256 %s): someone else upgraded it",
			pd.Slot, before.Slot, q.BufferLen, q.BufferSHA256)
	}
	return nil
}
