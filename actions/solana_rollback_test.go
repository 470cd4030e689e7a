package actions

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	solana "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"
	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/internal/loaderv3"
	"github.com/incidentbot/incidentbot/watchers/solana/solanatest"
)

// rollbackChain is a fake node with an upgradeable program whose
// upgrade authority is auth, and a buffer staged by auth holding the
// previous binary.
type rollbackChain struct {
	node             *solanatest.Server
	env              Env
	program, buffer  solana.PublicKey
	programData      solana.PublicKey
	auth             solana.PrivateKey
	badCode, oldCode []byte
	deployedAt       uint64
}

func newRollbackChain(t testing.TB) *rollbackChain {
	t.Helper()
	node := solanatest.NewServer()
	t.Cleanup(node.Close)
	ch := &rollbackChain{
		node: node, program: solana.NewWallet().PublicKey(), buffer: solana.NewWallet().PublicKey(),
		auth:       solana.NewWallet().PrivateKey,
		badCode:    bytes.Repeat([]byte("\x7fELF bad release "), 8),
		oldCode:    []byte("\x7fELF previous release"),
		deployedAt: 356100000,
	}
	ch.programData, _ = loaderv3.ProgramDataAddress(ch.program)
	a := ch.auth.PublicKey()
	node.SetProgram(ch.program, ch.deployedAt, &a, ch.badCode)
	node.SetBuffer(ch.buffer, &a, ch.oldCode)
	ch.env = Env{
		SolanaPrimary: "helius",
		RPCURL: func(name string) (string, bool) {
			if name == "helius" || name == "backup" {
				return node.URL(), true
			}
			return "", false
		},
	}
	return ch
}

func (ch *rollbackChain) runner(t testing.TB, extra string) Runner {
	t.Helper()
	a, _ := Default().Lookup("solana.program_rollback")
	var n yaml.Node
	src := "program: '{{ .Labels.program_id }}'\nbuffer: '{{ .Annotations.rollback_buffer }}'\n" + extra
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	b, err := a.Load(n.Content[0], "remediation[0]")
	if err != nil {
		t.Fatal(err)
	}
	r, ok := b.(Runner)
	if !ok {
		t.Fatal("solana.program_rollback is not a Runner")
	}
	if _, ok := b.(Reverter); ok {
		t.Fatal("solana.program_rollback claims it can be reverted")
	}
	return r
}

func (ch *rollbackChain) data() PlanData {
	return PlanData{Labels: map[string]string{"program_id": ch.program.String()},
		Annotations: map[string]string{"rollback_buffer": ch.buffer.String()}}
}

func (ch *rollbackChain) params(t *testing.T, p Plan) rollbackParams {
	t.Helper()
	var q rollbackParams
	if err := json.Unmarshal(p.Params, &q); err != nil {
		t.Fatal(err)
	}
	return q
}

func (ch *rollbackChain) programDataNow(t *testing.T) (loaderv3.ProgramData, []byte) {
	t.Helper()
	raw, ok := ch.node.AccountData(ch.programData.String())
	if !ok {
		t.Fatal("no programdata")
	}
	pd, err := loaderv3.DecodeProgramData(raw)
	if err != nil {
		t.Fatal(err)
	}
	return pd, raw[loaderv3.ProgramDataMetaLen:]
}

// TestProgramRollbackUnsigned: the multisig mode. Run hands out the
// unsigned transaction and sends nothing; Verify waits until the signers
// send it, then passes.
func TestProgramRollbackUnsigned(t *testing.T) {
	ch := newRollbackChain(t)
	ctx := context.Background()
	r := ch.runner(t, "")
	p, err := r.Resolve(ctx, ch.env, ch.data())
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	q := ch.params(t, p)
	sum := sha256.Sum256(ch.oldCode)
	auth := ch.auth.PublicKey().String()
	want := rollbackParams{Program: ch.program.String(), ProgramData: ch.programData.String(), Buffer: ch.buffer.String(),
		Authority: auth, Spill: auth, Mode: RollbackUnsigned, Cluster: "mainnet-beta", Endpoint: "helius",
		BufferLen: len(ch.oldCode), BufferSHA256: hex.EncodeToString(sum[:])}
	if q != want {
		t.Fatalf("plan params\n got %+v\nwant %+v", q, want)
	}
	for _, s := range []string{ch.program.String(), ch.buffer.String(), auth, want.BufferSHA256, "holds no key"} {
		if !strings.Contains(p.Text, s) {
			t.Errorf("plan text lacks %q: %s", s, p.Text)
		}
	}

	o, err := r.Run(ctx, ch.env, p)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := ch.node.Calls("sendTransaction"); n != 0 {
		t.Fatalf("the bot sent %d transactions in multisig mode", n)
	}
	var res rollbackResult
	if err := json.Unmarshal(o.After, &res); err != nil || res.Transaction == "" {
		t.Fatalf("Outcome.After = %s, %v", o.After, err)
	}
	if !strings.Contains(o.Detail, res.Transaction) {
		t.Error("Detail lacks the transaction for the signers")
	}
	for _, s := range []string{ch.program.String(), ch.buffer.String(), auth, want.BufferSHA256, fmt.Sprintf("%d bytes", len(ch.oldCode)), "blockhash expires"} {
		if !strings.Contains(o.Detail, s) {
			t.Errorf("Detail lacks %q: %s", s, o.Detail)
		}
	}

	// The signers' view: the transaction decodes to exactly the Upgrade,
	// paid for by the authority, with its one signature slot empty.
	raw, err := base64.StdEncoding.DecodeString(res.Transaction)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := solana.TransactionFromBytes(raw)
	if err != nil {
		t.Fatalf("decode the unsigned transaction: %v", err)
	}
	if len(tx.Signatures) != 1 || tx.Signatures[0] != (solana.Signature{}) {
		t.Fatalf("signatures = %v, want one empty slot", tx.Signatures)
	}
	if tx.Message.Header.NumRequiredSignatures != 1 || tx.Message.AccountKeys[0] != ch.auth.PublicKey() {
		t.Fatalf("fee payer / signer = %s (%d signers), want the authority", tx.Message.AccountKeys[0], tx.Message.Header.NumRequiredSignatures)
	}
	u, err := loaderv3.DecodeUpgradeTransaction(tx)
	wantU := loaderv3.Upgrade{ProgramData: ch.programData, Program: ch.program, Buffer: ch.buffer, Spill: ch.auth.PublicKey(), Authority: ch.auth.PublicKey()}
	if err != nil || u != wantU {
		t.Fatalf("upgrade = %+v, %v; want %+v", u, err, wantU)
	}
	if tx.Message.RecentBlockhash.String() != res.Blockhash {
		t.Fatalf("blockhash %s, recorded %s", tx.Message.RecentBlockhash, res.Blockhash)
	}

	err = r.Verify(ctx, ch.env, p, o)
	if !errors.Is(err, ErrNotYet) || !strings.Contains(err.Error(), "signers") {
		t.Fatalf("Verify before the signers sign = %v, want ErrNotYet", err)
	}

	// The signers sign it and send it.
	signAs(t, tx, ch.auth)
	if _, err := rpc.New(ch.node.URL()).SendTransaction(ctx, tx); err != nil {
		t.Fatalf("the signers' send: %v", err)
	}
	if err := r.Verify(ctx, ch.env, p, o); err != nil {
		t.Fatalf("Verify after the upgrade: %v", err)
	}
	if pd, code := ch.programDataNow(t); pd.Slot == ch.deployedAt || !bytes.HasPrefix(code, ch.oldCode) {
		t.Fatalf("programdata slot %d, code %q", pd.Slot, code)
	}
}

func writeKeypair(t *testing.T, k solana.PrivateKey, mode os.FileMode) string {
	t.Helper()
	nums := make([]int, len(k))
	for i, b := range k {
		nums[i] = int(b)
	}
	j, _ := json.Marshal(nums)
	p := filepath.Join(t.TempDir(), "upgrade-signer.json")
	if err := os.WriteFile(p, j, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return p
}

// TestProgramRollbackSigned: with the authority's keypair file (devnet,
// staging) Run signs, sends and waits; the fake node checks the
// transaction and upgrades the program; Verify passes.
func TestProgramRollbackSigned(t *testing.T) {
	ch := newRollbackChain(t)
	ctx := context.Background()
	kp, err := LoadKeypairFile(writeKeypair(t, ch.auth, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	ch.env.UpgradeSigner = kp
	spill := solana.NewWallet().PublicKey()
	r := ch.runner(t, "cluster: devnet\nendpoint: backup\nspill: "+spill.String()+"\n")
	p, err := r.Resolve(ctx, ch.env, ch.data())
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	q := ch.params(t, p)
	if q.Mode != RollbackSign || q.Endpoint != "backup" || q.Spill != spill.String() {
		t.Fatalf("plan = %+v", q)
	}
	o, err := r.Run(ctx, ch.env, p)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	sent := ch.node.Sent()
	if len(sent) != 1 {
		t.Fatalf("%d transactions sent, want 1", len(sent))
	}
	if err := sent[0].VerifySignatures(); err != nil {
		t.Fatal(err)
	}
	var res rollbackResult
	_ = json.Unmarshal(o.After, &res)
	if res.Signature != sent[0].Signatures[0].String() || !strings.Contains(o.Detail, res.Signature) {
		t.Fatalf("outcome %s / %q does not name the signature %s", o.After, o.Detail, sent[0].Signatures[0])
	}
	if pd, code := ch.programDataNow(t); pd.Slot != res.Slot || !bytes.HasPrefix(code, ch.oldCode) {
		t.Fatalf("programdata slot %d (confirmed at %d), code %q", pd.Slot, res.Slot, code)
	}
	if _, open := ch.node.AccountData(ch.buffer.String()); open {
		t.Fatal("the buffer is still open")
	}
	if err := r.Verify(ctx, ch.env, p, o); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if strings.Contains(fmt.Sprintf("%v %+v %#v %s", ch.env, ch.env, ch.env, kp), ch.auth.String()) {
		t.Fatal("the signing key printed")
	}
}

// TestProgramRollbackSignerGuards: the signer is used only for its own
// program, off mainnet-beta, and a plan that signs never runs unsigned.
func TestProgramRollbackSignerGuards(t *testing.T) {
	ctx := context.Background()
	t.Run("another authority", func(t *testing.T) {
		ch := newRollbackChain(t)
		kp, _ := LoadKeypairFile(writeKeypair(t, solana.NewWallet().PrivateKey, 0o600))
		ch.env.UpgradeSigner = kp
		p, err := ch.runner(t, "cluster: devnet\n").Resolve(ctx, ch.env, ch.data())
		if err != nil || ch.params(t, p).Mode != RollbackUnsigned || !strings.Contains(p.Text, "not this program's authority") {
			t.Fatalf("plan %q, %v", p.Text, err)
		}
	})
	for name, tc := range map[string]struct {
		extra   string
		genesis string
	}{
		"cluster mainnet-beta (the default)": {"", ""},
		"node on mainnet-beta":               {"cluster: devnet\n", solanatest.MainnetGenesisHash},
	} {
		t.Run(name, func(t *testing.T) {
			ch := newRollbackChain(t)
			if tc.genesis != "" {
				ch.node.SetGenesisHash(tc.genesis)
			}
			kp, _ := LoadKeypairFile(writeKeypair(t, ch.auth, 0o600))
			ch.env.UpgradeSigner = kp
			r := ch.runner(t, tc.extra)
			p, err := r.Resolve(ctx, ch.env, ch.data())
			if err != nil || ch.params(t, p).Mode != RollbackUnsigned || !strings.Contains(p.Text, "never used") {
				t.Fatalf("plan %q, %v", p.Text, err)
			}
			if _, err := r.Run(ctx, ch.env, p); err != nil || ch.node.Calls("sendTransaction") != 0 {
				t.Fatalf("Run: %v; sent %d", err, ch.node.Calls("sendTransaction"))
			}
		})
	}
	t.Run("signer gone since the plan", func(t *testing.T) {
		ch := newRollbackChain(t)
		kp, _ := LoadKeypairFile(writeKeypair(t, ch.auth, 0o600))
		ch.env.UpgradeSigner = kp
		r := ch.runner(t, "cluster: devnet\n")
		p, err := r.Resolve(ctx, ch.env, ch.data())
		if err != nil {
			t.Fatal(err)
		}
		ch.env.UpgradeSigner = nil
		if _, err := r.Run(ctx, ch.env, p); err == nil || !strings.Contains(err.Error(), "nothing was sent") {
			t.Fatalf("Run = %v", err)
		}
		if ch.node.Calls("sendTransaction") != 0 {
			t.Fatal("sent without the planned signer")
		}
	})
}

// TestProgramRollbackRefusedAtResolve: what the loader would refuse is
// refused before anyone approves it.
func TestProgramRollbackRefusedAtResolve(t *testing.T) {
	ctx := context.Background()
	other := solana.NewWallet().PublicKey()
	for _, tc := range []struct {
		name  string
		setup func(ch *rollbackChain) string
		want  string
	}{
		{"missing buffer", func(ch *rollbackChain) string { ch.buffer = solana.NewWallet().PublicKey(); return "" }, "does not exist"},
		{"buffer of another authority", func(ch *rollbackChain) string {
			ch.node.SetBuffer(ch.buffer, &other, ch.oldCode)
			return ""
		}, "not the program's upgrade authority"},
		{"buffer with no authority", func(ch *rollbackChain) string {
			ch.node.SetBuffer(ch.buffer, nil, ch.oldCode)
			return ""
		}, "has authority none"},
		{"immutable program", func(ch *rollbackChain) string {
			ch.node.SetProgram(ch.program, ch.deployedAt, nil, ch.badCode)
			return ""
		}, "immutable"},
		{"no such program", func(ch *rollbackChain) string { ch.program = solana.NewWallet().PublicKey(); return "" }, "does not exist"},
		{"buffer larger than the program", func(ch *rollbackChain) string {
			a := ch.auth.PublicKey()
			ch.node.SetBuffer(ch.buffer, &a, bytes.Repeat([]byte{1}, len(ch.badCode)+10))
			return ""
		}, "solana program extend"},
		{"a program account as buffer", func(ch *rollbackChain) string {
			p2 := solana.NewWallet().PublicKey()
			a := ch.auth.PublicKey()
			ch.node.SetProgram(p2, 1, &a, []byte{1})
			ch.buffer = p2
			return ""
		}, "not a loader buffer"},
		{"unknown endpoint", func(*rollbackChain) string { return "endpoint: nowhere\n" }, `"nowhere" is not configured`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := newRollbackChain(t)
			extra := tc.setup(ch)
			_, err := ch.runner(t, extra).Resolve(ctx, ch.env, ch.data())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Resolve = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestProgramRollbackPlanHash: the approvals bind to the program, buffer
// (and its content), authority, spill and mode.
func TestProgramRollbackPlanHash(t *testing.T) {
	ctx := context.Background()
	ch := newRollbackChain(t)
	resolve := func(extra string) string {
		t.Helper()
		p, err := ch.runner(t, extra).Resolve(ctx, ch.env, ch.data())
		if err != nil {
			t.Fatal(err)
		}
		return p.Hash
	}
	base := resolve("")
	if resolve("") != base {
		t.Fatal("the same plan resolved to another hash")
	}
	if resolve("spill: "+solana.NewWallet().PublicKey().String()+"\n") == base {
		t.Error("spill not in the hash")
	}
	a := ch.auth.PublicKey()
	ch.node.SetBuffer(ch.buffer, &a, []byte("\x7fELF another binary"))
	if resolve("") == base {
		t.Error("the buffer's content not in the hash")
	}
	ch.node.SetBuffer(ch.buffer, &a, ch.oldCode)
	if resolve("") != base {
		t.Error("same state, other hash")
	}
	kp, _ := LoadKeypairFile(writeKeypair(t, ch.auth, 0o600))
	ch.env.UpgradeSigner = kp
	if resolve("") != base {
		t.Error("a signer that is not used (mainnet-beta) changed the hash")
	}
	if resolve("cluster: devnet\n") == resolve("cluster: testnet\n") {
		t.Error("cluster not in the hash")
	}
	// A new authority on both the program and the buffer.
	nk := solana.NewWallet().PublicKey()
	ch.node.SetProgram(ch.program, ch.deployedAt, &nk, ch.badCode)
	ch.node.SetBuffer(ch.buffer, &nk, ch.oldCode)
	ch.env.UpgradeSigner = nil
	if resolve("") == base {
		t.Error("authority not in the hash")
	}
}

// TestProgramRollbackVerify: someone else's upgrade is not this one, and
// a run against a changed authority does nothing.
func TestProgramRollbackVerify(t *testing.T) {
	ctx := context.Background()
	ch := newRollbackChain(t)
	r := ch.runner(t, "")
	p, err := r.Resolve(ctx, ch.env, ch.data())
	if err != nil {
		t.Fatal(err)
	}
	o, err := r.Run(ctx, ch.env, p)
	if err != nil {
		t.Fatal(err)
	}
	a := ch.auth.PublicKey()
	ch.node.SetProgram(ch.program, ch.deployedAt+500, &a, ch.badCode)
	err = r.Verify(ctx, ch.env, p, o)
	if err == nil || errors.Is(err, ErrNotYet) || !strings.Contains(err.Error(), "does not hold the buffer's binary") {
		t.Fatalf("Verify after another upgrade = %v", err)
	}
	if err := r.Verify(ctx, ch.env, p, Outcome{}); err == nil || errors.Is(err, ErrNotYet) {
		t.Fatalf("Verify with no state before = %v", err)
	}

	other := solana.NewWallet().PublicKey()
	ch.node.SetProgram(ch.program, ch.deployedAt, &other, ch.badCode)
	if _, err := r.Run(ctx, ch.env, p); err == nil || !strings.Contains(err.Error(), "nothing was done") {
		t.Fatalf("Run after the authority changed = %v", err)
	}

	tampered := p
	tampered.Params = bytes.Replace(p.Params, []byte(RollbackUnsigned), []byte(RollbackSign), 1)
	if _, err := r.Run(ctx, ch.env, tampered); err == nil || !strings.Contains(err.Error(), "hash") {
		t.Fatalf("Run of a tampered plan = %v", err)
	}
}

func TestProgramRollbackDryRun(t *testing.T) {
	ctx := context.Background()
	ch := newRollbackChain(t)
	r := ch.runner(t, "")
	p, err := r.Resolve(ctx, Env{}, ch.data())
	if err != nil || !strings.Contains(p.Text, "dry run") {
		t.Fatalf("Resolve = %q, %v", p.Text, err)
	}
	if _, err := r.Run(ctx, Env{}, p); !errors.Is(err, ErrDryRun) {
		t.Fatalf("Run = %v, want ErrDryRun", err)
	}
	if err := r.Verify(ctx, Env{}, p, Outcome{}); !errors.Is(err, ErrDryRun) {
		t.Fatalf("Verify = %v, want ErrDryRun", err)
	}
	if n := ch.node.Calls("getAccountInfo"); n != 0 {
		t.Fatalf("a dry run read %d accounts", n)
	}
}

func TestLoadKeypairFile(t *testing.T) {
	k := solana.NewWallet().PrivateKey
	good := writeKeypair(t, k, 0o600)
	kp, err := LoadKeypairFile(good)
	if err != nil || kp.PublicKey() != k.PublicKey() {
		t.Fatalf("LoadKeypairFile = %v, %v", kp, err)
	}
	msg := []byte("message")
	sig, _ := kp.Sign(msg)
	if !sig.Verify(k.PublicKey(), msg) {
		t.Fatal("signature does not verify")
	}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("signer", "key", kp, "env", Env{UpgradeSigner: kp})
	raw, _ := os.ReadFile(good)
	out := fmt.Sprintf("%v %+v %#v %s %q", kp, kp, kp, kp, kp) + logs.String()
	j, _ := json.Marshal(struct{ K *Keypair }{kp})
	out += string(j)
	if strings.Contains(out, k.String()) || strings.Contains(out, string(raw[:20])) || strings.Contains(out, fmt.Sprint([]byte(k))) {
		t.Fatalf("the key printed: %s", out)
	}

	for _, mode := range []os.FileMode{0o640, 0o604, 0o644, 0o660} {
		p := writeKeypair(t, k, mode)
		if _, err := LoadKeypairFile(p); !errors.Is(err, ErrKeypairExposed) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: err = %v", mode, err)
		}
	}
	if _, err := LoadKeypairFile(good + ".missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: err = %v", err)
	}
	mismatched := slices64(k)
	copy(mismatched[32:], solana.NewWallet().PublicKey().Bytes())
	for name, content := range map[string]string{
		"not json":       "secret-looking garbage",
		"63 bytes":       jsonBytes(slices64(k)[:63]),
		"not a byte":     "[" + strings.Repeat("256,", 63) + "256]",
		"halves differ":  jsonBytes(mismatched),
		"base58 instead": `"` + k.String() + `"`,
	} {
		p := filepath.Join(t.TempDir(), "k.json")
		_ = os.WriteFile(p, []byte(content), 0o600)
		_, err := LoadKeypairFile(p)
		if err == nil {
			t.Errorf("%s: loaded", name)
			continue
		}
		if strings.Contains(err.Error(), k.String()) || strings.Contains(err.Error(), "garbage") {
			t.Errorf("%s: error quotes the file: %v", name, err)
		}
	}
	if _, err := LoadKeypairFile(t.TempDir()); err == nil {
		t.Error("a directory loaded")
	}
}

func slices64(k solana.PrivateKey) []byte { return append([]byte(nil), k...) }

func jsonBytes(b []byte) string {
	nums := make([]int, len(b))
	for i, x := range b {
		nums[i] = int(x)
	}
	j, _ := json.Marshal(nums)
	return string(j)
}

// BenchmarkProgramRollbackResolve: Resolve reads the whole buffer (for
// its sha256) within runbooks.PlanTimeout; here a 1 MiB program through
// the fake node.
func BenchmarkProgramRollbackResolve(b *testing.B) {
	ch := newRollbackChain(b)
	a := ch.auth.PublicKey()
	big := bytes.Repeat([]byte{0x5a}, 1<<20)
	ch.node.SetProgram(ch.program, ch.deployedAt, &a, append(big, 0))
	ch.node.SetBuffer(ch.buffer, &a, big)
	r := ch.runner(b, "")
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := r.Resolve(ctx, ch.env, ch.data()); err != nil {
			b.Fatal(err)
		}
	}
}

// withNonce gives the chain a durable nonce account whose authority is
// the program's upgrade authority, configured as
// solana.upgrade_nonce_account; it returns the account.
func (ch *rollbackChain) withNonce(t *testing.T) solana.PublicKey {
	t.Helper()
	acct := solana.NewWallet().PublicKey()
	ch.node.SetNonceAccount(acct, ch.auth.PublicKey())
	ch.env.UpgradeNonceAccount = acct.String()
	return acct
}

func (ch *rollbackChain) nonceNow(t *testing.T, acct solana.PublicKey) loaderv3.Nonce {
	t.Helper()
	raw, _ := ch.node.AccountData(acct.String())
	n, err := loaderv3.DecodeNonce(raw)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// signAndSend signs the base64 transaction of a run with the authority's
// key, as the signers do, and sends it.
func (ch *rollbackChain) signAndSend(t *testing.T, b64 string) (*solana.Transaction, error) {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := solana.TransactionFromBytes(raw)
	if err != nil {
		t.Fatalf("decode the unsigned transaction: %v", err)
	}
	signAs(t, tx, ch.auth)
	_, err = rpc.New(ch.node.URL()).SendTransaction(context.Background(), tx)
	return tx, err
}

// TestProgramRollbackDurableNonce: with solana.upgrade_nonce_account the
// unsigned transaction advances the nonce first and uses it as its
// blockhash, so it still lands when signed long after any recent
// blockhash expired; Verify then passes, and it cannot land twice.
func TestProgramRollbackDurableNonce(t *testing.T) {
	ch := newRollbackChain(t)
	ctx := context.Background()
	acct := ch.withNonce(t)
	r := ch.runner(t, "")
	p, err := r.Resolve(ctx, ch.env, ch.data())
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if q := ch.params(t, p); q.Mode != RollbackUnsigned || q.NonceAccount != acct.String() {
		t.Fatalf("plan = %+v", q)
	}
	if !strings.Contains(p.Text, "durable nonce account "+acct.String()) {
		t.Errorf("plan text lacks the nonce account: %s", p.Text)
	}

	o, err := r.Run(ctx, ch.env, p)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := ch.node.Calls("sendTransaction"); n != 0 {
		t.Fatalf("the bot sent %d transactions", n)
	}
	nonce := ch.nonceNow(t, acct).Blockhash
	var res rollbackResult
	if err := json.Unmarshal(o.After, &res); err != nil || res.Transaction == "" || res.Blockhash != nonce.String() || res.NonceAccount != acct.String() {
		t.Fatalf("Outcome.After = %s, %v; want the nonce %s of %s", o.After, err, nonce, acct)
	}
	for _, s := range []string{res.Transaction, "AdvanceNonceAccount", "until that nonce is advanced", "no hurry", "`solana nonce " + acct.String() + "` must print " + nonce.String()} {
		if !strings.Contains(o.Detail, s) {
			t.Errorf("Detail lacks %q: %s", s, o.Detail)
		}
	}
	if strings.Contains(o.Detail, "sign at once") || strings.Contains(o.Detail, "expires") {
		t.Errorf("Detail still hurries the signers: %s", o.Detail)
	}
	raw, _ := base64.StdEncoding.DecodeString(res.Transaction)
	tx, err := solana.TransactionFromBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	u, adv, err := loaderv3.DecodeTransaction(tx)
	wantU := loaderv3.Upgrade{ProgramData: ch.programData, Program: ch.program, Buffer: ch.buffer, Spill: ch.auth.PublicKey(), Authority: ch.auth.PublicKey()}
	if err != nil || u != wantU || adv == nil || *adv != (loaderv3.AdvanceNonce{Account: acct, Authority: ch.auth.PublicKey()}) {
		t.Fatalf("transaction = %+v, %+v, %v", u, adv, err)
	}
	if tx.Message.RecentBlockhash != nonce || tx.Message.Header.NumRequiredSignatures != 1 || tx.Message.AccountKeys[0] != ch.auth.PublicKey() {
		t.Fatalf("blockhash %s (nonce %s), %d signers, payer %s", tx.Message.RecentBlockhash, nonce, tx.Message.Header.NumRequiredSignatures, tx.Message.AccountKeys[0])
	}

	// The signers take their time: far past any blockhash's validity.
	ch.node.SetSlot(ch.node.Slot() + 20*solanatest.BlockhashValiditySlots)
	if err := r.Verify(ctx, ch.env, p, o); !errors.Is(err, ErrNotYet) {
		t.Fatalf("Verify before the signers = %v, want ErrNotYet", err)
	}
	if _, err := ch.signAndSend(t, res.Transaction); err != nil {
		t.Fatalf("the signers' send, late: %v", err)
	}
	if err := r.Verify(ctx, ch.env, p, o); err != nil {
		t.Fatalf("Verify after the upgrade: %v", err)
	}
	if pd, code := ch.programDataNow(t); pd.Slot == ch.deployedAt || !bytes.HasPrefix(code, ch.oldCode) {
		t.Fatalf("programdata slot %d, code %q", pd.Slot, code)
	}
	if ch.nonceNow(t, acct).Blockhash == nonce {
		t.Fatal("the nonce did not advance")
	}
	if _, err := ch.signAndSend(t, res.Transaction); err == nil || !strings.Contains(err.Error(), "Blockhash not found") {
		t.Fatalf("the same transaction again = %v, want refused (nonce advanced)", err)
	}
	if n := len(ch.node.Sent()); n != 1 {
		t.Fatalf("%d transactions landed, want 1", n)
	}
}

// TestProgramRollbackRecentBlockhashExpires: without a nonce account,
// today's behaviour: a recent blockhash, and the same late signature is
// refused as expired.
func TestProgramRollbackRecentBlockhashExpires(t *testing.T) {
	ch := newRollbackChain(t)
	ctx := context.Background()
	r := ch.runner(t, "")
	p, err := r.Resolve(ctx, ch.env, ch.data())
	if err != nil {
		t.Fatal(err)
	}
	if q := ch.params(t, p); q.NonceAccount != "" || strings.Contains(p.Text, "nonce") {
		t.Fatalf("a plan without solana.upgrade_nonce_account names a nonce: %+v %q", q, p.Text)
	}
	o, err := r.Run(ctx, ch.env, p)
	if err != nil {
		t.Fatal(err)
	}
	var res rollbackResult
	_ = json.Unmarshal(o.After, &res)
	if res.NonceAccount != "" || res.LastValidBlockHeight == 0 || !strings.Contains(o.Detail, "sign at once") {
		t.Fatalf("outcome %s, %q", o.After, o.Detail)
	}
	ch.node.SetSlot(ch.node.Slot() + 20*solanatest.BlockhashValiditySlots)
	if _, err := ch.signAndSend(t, res.Transaction); err == nil || !strings.Contains(err.Error(), "Blockhash not found") {
		t.Fatalf("late send = %v, want refused as expired", err)
	}
	if err := r.Verify(ctx, ch.env, p, o); !errors.Is(err, ErrNotYet) {
		t.Fatalf("Verify = %v, want ErrNotYet", err)
	}
}

// TestProgramRollbackNonceRefused: a nonce account the signers cannot
// use is refused when the step resolves, saying what is wrong.
func TestProgramRollbackNonceRefused(t *testing.T) {
	ctx := context.Background()
	other := solana.NewWallet().PublicKey()
	for _, tc := range []struct {
		name  string
		setup func(ch *rollbackChain, acct solana.PublicKey)
		want  string
	}{
		{"another nonce authority", func(ch *rollbackChain, acct solana.PublicKey) { ch.node.SetNonceAccount(acct, other) },
			"has nonce authority " + other.String() + ", not program"},
		{"uninitialized", func(ch *rollbackChain, acct solana.PublicKey) {
			ch.node.SetAccount(acct.String(), solanatest.Account{Owner: solanatest.SystemProgramID, Data: make([]byte, loaderv3.NonceAccountLen)})
		}, "not initialized"},
		{"legacy", func(ch *rollbackChain, acct solana.PublicKey) {
			ch.node.SetAccount(acct.String(), solanatest.Account{Owner: solanatest.SystemProgramID, Data: loaderv3.EncodeNonce(loaderv3.Nonce{
				Version: loaderv3.NonceVersionLegacy, State: loaderv3.NonceInitialized, Authority: ch.auth.PublicKey(), Blockhash: solana.Hash{1}})})
		}, "solana upgrade-nonce-account"},
		{"a wallet", func(ch *rollbackChain, acct solana.PublicKey) {
			ch.node.SetAccount(acct.String(), solanatest.Account{Owner: solanatest.SystemProgramID, Lamports: 1})
		}, "is not a nonce account"},
		{"the buffer", func(ch *rollbackChain, acct solana.PublicKey) { ch.env.UpgradeNonceAccount = ch.buffer.String() }, "not the system program"},
		{"missing", func(*rollbackChain, solana.PublicKey) {}, "does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := newRollbackChain(t)
			acct := solana.NewWallet().PublicKey()
			ch.env.UpgradeNonceAccount = acct.String()
			tc.setup(ch, acct)
			_, err := ch.runner(t, "").Resolve(ctx, ch.env, ch.data())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "solana.upgrade_nonce_account") {
				t.Fatalf("Resolve = %v, want %q", err, tc.want)
			}
		})
	}

	// Between approval and run the nonce's authority changed: nothing
	// is built.
	ch := newRollbackChain(t)
	acct := ch.withNonce(t)
	r := ch.runner(t, "")
	p, err := r.Resolve(ctx, ch.env, ch.data())
	if err != nil {
		t.Fatal(err)
	}
	ch.node.SetNonceAccount(acct, other)
	if _, err := r.Run(ctx, ch.env, p); err == nil || !strings.Contains(err.Error(), "nothing was done") {
		t.Fatalf("Run after the nonce authority changed = %v", err)
	}
}

// TestProgramRollbackNoncePlan: the plan hash covers the nonce account,
// not its value (which moves); a signing plan (devnet) keeps a recent
// blockhash.
func TestProgramRollbackNoncePlan(t *testing.T) {
	ctx := context.Background()
	ch := newRollbackChain(t)
	resolve := func(extra string) Plan {
		t.Helper()
		p, err := ch.runner(t, extra).Resolve(ctx, ch.env, ch.data())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	without := resolve("").Hash
	acct := ch.withNonce(t)
	with := resolve("").Hash
	if with == without {
		t.Error("the nonce account is not in the hash")
	}
	ch.node.SetNonceAccount(acct, ch.auth.PublicKey()) // a new nonce value
	if resolve("").Hash != with {
		t.Error("the nonce value changed the hash")
	}
	ch.withNonce(t)
	if resolve("").Hash == with {
		t.Error("another nonce account, same hash")
	}

	kp, _ := LoadKeypairFile(writeKeypair(t, ch.auth, 0o600))
	ch.env.UpgradeSigner = kp
	p := resolve("cluster: devnet\n")
	if q := ch.params(t, p); q.Mode != RollbackSign || q.NonceAccount != "" {
		t.Fatalf("signing plan = %+v", q)
	}
	if _, err := ch.runner(t, "cluster: devnet\n").Run(ctx, ch.env, p); err != nil {
		t.Fatalf("signed run: %v", err)
	}
	if sent := ch.node.Sent(); len(sent) != 1 || len(sent[0].Message.Instructions) != 1 {
		t.Fatalf("signed run sent %d transactions, want one plain upgrade", len(sent))
	}
}

// signAs signs tx as key, as the upgrade authority's signers would.
func signAs(t *testing.T, tx *solana.Transaction, key solana.PrivateKey) {
	t.Helper()
	if _, err := tx.Sign(func(k solana.PublicKey) *solana.PrivateKey {
		if k == key.PublicKey() {
			return &key
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
