package solanatest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	solana "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"
	"github.com/gagliardetto/solana-go/rpc/jsonrpc"
	"github.com/gorilla/websocket"

	"github.com/incidentbot/incidentbot/internal/loaderv3"
)

type chain struct {
	s                *Server
	c                *rpc.Client
	program, buffer  solana.PublicKey
	programData      solana.PublicKey
	authority        solana.PrivateKey
	oldCode, newCode []byte
	deployedAt       uint64
	spill            solana.PublicKey
	bufLamports      uint64
}

func newChain(t *testing.T) *chain {
	t.Helper()
	s := NewServer()
	t.Cleanup(s.Close)
	ch := &chain{
		s: s, c: rpc.New(s.URL()),
		program: solana.NewWallet().PublicKey(), buffer: solana.NewWallet().PublicKey(),
		authority: solana.NewWallet().PrivateKey, spill: solana.NewWallet().PublicKey(),
		oldCode: bytes.Repeat([]byte("new-bad-binary"), 10), newCode: []byte("\x7fELF previous good binary"),
		deployedAt: 356100000,
	}
	ch.programData, _ = loaderv3.ProgramDataAddress(ch.program)
	auth := ch.authority.PublicKey()
	s.SetProgram(ch.program, ch.deployedAt, &auth, ch.oldCode)
	s.SetBuffer(ch.buffer, &auth, ch.newCode)
	ch.bufLamports = 1_500_000_000
	return ch
}

func (ch *chain) tx(t *testing.T, authority solana.PublicKey) *solana.Transaction {
	t.Helper()
	bh, err := ch.c.GetLatestBlockhash(context.Background(), rpc.CommitmentFinalized)
	if err != nil {
		t.Fatalf("getLatestBlockhash: %v", err)
	}
	u, err := loaderv3.NewUpgrade(ch.program, ch.buffer, authority, ch.spill)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := u.Transaction(bh.Value.Blockhash)
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

func sign(t *testing.T, tx *solana.Transaction, keys ...solana.PrivateKey) {
	t.Helper()
	if _, err := tx.Sign(func(k solana.PublicKey) *solana.PrivateKey {
		for _, p := range keys {
			if p.PublicKey() == k {
				return &p
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func rpcErr(t *testing.T, err error) *jsonrpc.RPCError {
	t.Helper()
	var re *jsonrpc.RPCError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want a JSON-RPC error", err)
	}
	return re
}

func TestUpgradeTransaction(t *testing.T) {
	ch := newChain(t)
	ctx := context.Background()

	// The ProgramData watcher's view: a subscriber sees the upgrade.
	conn, _, err := websocket.DefaultDialer.Dial(ch.s.WSURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":1,"method":"accountSubscribe","params":["`+ch.programData.String()+`",{"encoding":"base64"}]}`))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var confirm map[string]json.RawMessage
	if err := conn.ReadJSON(&confirm); err != nil || confirm["result"] == nil {
		t.Fatalf("subscribe: %v %v", confirm, err)
	}

	tx := ch.tx(t, ch.authority.PublicKey())
	sign(t, tx, ch.authority)
	sig, err := ch.c.SendTransactionWithOpts(ctx, tx, rpc.TransactionOpts{PreflightCommitment: rpc.CommitmentConfirmed})
	if err != nil {
		t.Fatalf("sendTransaction: %v", err)
	}
	if sig != tx.Signatures[0] {
		t.Fatalf("signature %s, want %s", sig, tx.Signatures[0])
	}
	st, err := ch.c.GetSignatureStatuses(ctx, false, sig, solana.Signature{1})
	if err != nil || len(st.Value) != 2 || st.Value[0] == nil || st.Value[0].ConfirmationStatus != rpc.ConfirmationStatusFinalized || st.Value[0].Err != nil || st.Value[1] != nil {
		t.Fatalf("getSignatureStatuses = %+v, %v", st, err)
	}

	data, _ := ch.s.AccountData(ch.programData.String())
	pd, err := loaderv3.DecodeProgramData(data)
	if err != nil || pd.Slot == ch.deployedAt || pd.Slot != st.Value[0].Slot || pd.Authority == nil || *pd.Authority != ch.authority.PublicKey() {
		t.Fatalf("programdata after upgrade = %+v, %v (landed at %d)", pd, err, st.Value[0].Slot)
	}
	code := data[loaderv3.ProgramDataMetaLen:]
	if len(code) != len(ch.oldCode) || !bytes.HasPrefix(code, ch.newCode) || bytes.ContainsFunc(code[len(ch.newCode):], func(r rune) bool { return r != 0 }) {
		t.Fatalf("code after upgrade = %q, want the buffer's, zero-filled", code)
	}
	if _, ok := ch.s.AccountData(ch.buffer.String()); ok {
		t.Fatal("buffer still open after the upgrade")
	}
	if bal, err := ch.c.GetBalance(ctx, ch.spill, rpc.CommitmentConfirmed); err != nil || bal.Value != ch.bufLamports {
		t.Fatalf("spill balance = %+v, %v; want the buffer's %d lamports", bal, err, ch.bufLamports)
	}
	var note struct {
		Method string `json:"method"`
		Params struct {
			Result struct {
				Value struct {
					Data []string `json:"data"`
				} `json:"value"`
			} `json:"result"`
		} `json:"params"`
	}
	if err := conn.ReadJSON(&note); err != nil || note.Method != "accountNotification" {
		t.Fatalf("notification: %+v, %v", note, err)
	}
	got, _ := base64.StdEncoding.DecodeString(note.Params.Result.Value.Data[0])
	if !bytes.Equal(got, data) {
		t.Fatal("notified data differs from the stored account")
	}
	if len(ch.s.Sent()) != 1 {
		t.Fatalf("Sent = %d transactions", len(ch.s.Sent()))
	}

	// The same transaction again: already processed.
	if _, err := ch.c.SendTransaction(ctx, tx); err == nil {
		t.Fatal("replayed transaction accepted")
	}
}

func TestUpgradeRefusals(t *testing.T) {
	ctx := context.Background()
	other := solana.NewWallet().PrivateKey
	for _, tc := range []struct {
		name  string
		setup func(ch *chain) *solana.Transaction
		code  int
		want  string
	}{
		{"unsigned", func(ch *chain) *solana.Transaction { return ch.tx(t, ch.authority.PublicKey()) }, -32003, "signature verification"},
		{"signed by another key", func(ch *chain) *solana.Transaction {
			tx := ch.tx(t, ch.authority.PublicKey())
			sign(t, tx, ch.authority)
			sig, _ := other.Sign([]byte("x"))
			tx.Signatures[0] = sig
			return tx
		}, -32003, "signature verification"},
		{"not the upgrade authority", func(ch *chain) *solana.Transaction {
			tx := ch.tx(t, other.PublicKey())
			sign(t, tx, other)
			return tx
		}, -32002, "Incorrect upgrade authority"},
		{"buffer of another authority", func(ch *chain) *solana.Transaction {
			o := other.PublicKey()
			ch.s.SetBuffer(ch.buffer, &o, ch.newCode)
			tx := ch.tx(t, ch.authority.PublicKey())
			sign(t, tx, ch.authority)
			return tx
		}, -32002, "Buffer and upgrade authority don't match"},
		{"immutable", func(ch *chain) *solana.Transaction {
			ch.s.SetProgram(ch.program, ch.deployedAt, nil, ch.oldCode)
			tx := ch.tx(t, ch.authority.PublicKey())
			sign(t, tx, ch.authority)
			return tx
		}, -32002, "Program not upgradeable"},
		{"no buffer", func(ch *chain) *solana.Transaction {
			ch.buffer = solana.NewWallet().PublicKey()
			tx := ch.tx(t, ch.authority.PublicKey())
			sign(t, tx, ch.authority)
			return tx
		}, -32002, "Buffer account not found"},
		{"unknown blockhash", func(ch *chain) *solana.Transaction {
			u, _ := loaderv3.NewUpgrade(ch.program, ch.buffer, ch.authority.PublicKey(), ch.spill)
			tx, _ := u.Transaction(solana.Hash{7})
			sign(t, tx, ch.authority)
			return tx
		}, -32002, "Blockhash not found"},
		{"another instruction", func(ch *chain) *solana.Transaction {
			bh, _ := ch.c.GetLatestBlockhash(ctx, rpc.CommitmentFinalized)
			tx, _ := solana.NewTransaction([]solana.Instruction{solana.NewInstruction(solana.SystemProgramID,
				[]*solana.AccountMeta{solana.Meta(ch.authority.PublicKey()).SIGNER().WRITE()}, []byte{2, 0, 0, 0})}, bh.Value.Blockhash)
			sign(t, tx, ch.authority)
			return tx
		}, -32002, "want the upgradeable loader"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := newChain(t)
			tx := tc.setup(ch)
			before, _ := ch.s.AccountData(ch.programData.String())
			_, err := ch.c.SendTransactionWithOpts(ctx, tx, rpc.TransactionOpts{})
			re := rpcErr(t, err)
			if re.Code != tc.code || !strings.Contains(re.Message, tc.want) {
				t.Fatalf("error = %d %q, want %d %q", re.Code, re.Message, tc.code, tc.want)
			}
			if after, _ := ch.s.AccountData(ch.programData.String()); !bytes.Equal(before, after) {
				t.Fatal("a refused transaction changed the program")
			}
			if len(ch.s.Sent()) != 0 {
				t.Fatal("a refused transaction was recorded")
			}
		})
	}
}

// TestBlockhashExpires: a transaction is refused once its blockhash is
// older than BlockhashValiditySlots, as on a real cluster.
func TestBlockhashExpires(t *testing.T) {
	ch := newChain(t)
	tx := ch.tx(t, ch.authority.PublicKey())
	sign(t, tx, ch.authority)
	ch.s.SetSlot(ch.s.Slot() + BlockhashValiditySlots + 1)
	_, err := ch.c.SendTransaction(context.Background(), tx)
	if re := rpcErr(t, err); re.Code != -32002 || !strings.Contains(re.Message, "Blockhash not found") {
		t.Fatalf("expired blockhash: %d %q", re.Code, re.Message)
	}
	if len(ch.s.Sent()) != 0 {
		t.Fatal("an expired transaction landed")
	}
}

// nonceTx is the chain's upgrade behind the durable nonce of account.
func (ch *chain) nonceTx(t *testing.T, account, nonceAuthority solana.PublicKey, nonce solana.Hash) *solana.Transaction {
	t.Helper()
	u, err := loaderv3.NewUpgrade(ch.program, ch.buffer, ch.authority.PublicKey(), ch.spill)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := u.NonceTransaction(loaderv3.AdvanceNonce{Account: account, Authority: nonceAuthority}, nonce)
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

// TestNonceUpgrade: a durable-nonce upgrade signed long after any
// blockhash expired lands, advances the nonce, and cannot land again.
func TestNonceUpgrade(t *testing.T) {
	ch := newChain(t)
	ctx := context.Background()
	acct := solana.NewWallet().PublicKey()
	nonce := ch.s.SetNonceAccount(acct, ch.authority.PublicKey())

	// getAccountInfo serves the system program's layout.
	info, err := ch.c.GetAccountInfoWithOpts(ctx, acct, &rpc.GetAccountInfoOpts{Encoding: solana.EncodingBase64})
	if err != nil {
		t.Fatal(err)
	}
	n, err := loaderv3.DecodeNonce(info.Value.Data.GetBinary())
	if err != nil || info.Value.Owner != solana.SystemProgramID || n.Blockhash != nonce || n.Authority != ch.authority.PublicKey() || n.Usable() != nil {
		t.Fatalf("nonce account = owner %s, %+v, %v", info.Value.Owner, n, err)
	}

	tx := ch.nonceTx(t, acct, ch.authority.PublicKey(), nonce)
	ch.s.SetSlot(ch.s.Slot() + 100*BlockhashValiditySlots) // the signers took their time
	sign(t, tx, ch.authority)
	if _, err := ch.c.SendTransaction(ctx, tx); err != nil {
		t.Fatalf("durable transaction: %v", err)
	}
	data, _ := ch.s.AccountData(ch.programData.String())
	if pd, err := loaderv3.DecodeProgramData(data); err != nil || pd.Slot == ch.deployedAt || !bytes.HasPrefix(data[loaderv3.ProgramDataMetaLen:], ch.newCode) {
		t.Fatalf("programdata after the upgrade = %+v, %v", pd, err)
	}
	raw, _ := ch.s.AccountData(acct.String())
	after, err := loaderv3.DecodeNonce(raw)
	if err != nil || after.Blockhash == nonce || after.Authority != n.Authority {
		t.Fatalf("nonce after = %+v, %v; want it advanced from %s", after, err, nonce)
	}

	// The same transaction again: the nonce moved on.
	_, err = ch.c.SendTransaction(ctx, tx)
	if re := rpcErr(t, err); !strings.Contains(re.Message, "Blockhash not found") {
		t.Fatalf("replay: %d %q", re.Code, re.Message)
	}
	if len(ch.s.Sent()) != 1 {
		t.Fatalf("%d transactions landed, want 1", len(ch.s.Sent()))
	}
}

func TestNonceRefusals(t *testing.T) {
	ctx := context.Background()
	other := solana.NewWallet().PrivateKey
	for _, tc := range []struct {
		name  string
		setup func(ch *chain, acct solana.PublicKey) *solana.Transaction
		want  string
	}{
		{"another nonce value", func(ch *chain, acct solana.PublicKey) *solana.Transaction {
			ch.s.SetNonceAccount(acct, ch.authority.PublicKey())
			tx := ch.nonceTx(t, acct, ch.authority.PublicKey(), loaderv3.DurableNonce(solana.Hash{3}))
			sign(t, tx, ch.authority)
			return tx
		}, "Blockhash not found"},
		{"advance signed by another authority", func(ch *chain, acct solana.PublicKey) *solana.Transaction {
			nonce := ch.s.SetNonceAccount(acct, ch.authority.PublicKey())
			tx := ch.nonceTx(t, acct, other.PublicKey(), nonce)
			sign(t, tx, ch.authority, other)
			return tx
		}, "must be a signer"},
		{"uninitialized", func(ch *chain, acct solana.PublicKey) *solana.Transaction {
			ch.s.SetAccount(acct.String(), Account{Owner: SystemProgramID, Data: make([]byte, loaderv3.NonceAccountLen)})
			tx := ch.nonceTx(t, acct, ch.authority.PublicKey(), solana.Hash{})
			sign(t, tx, ch.authority)
			return tx
		}, "Blockhash not found"},
		{"legacy version", func(ch *chain, acct solana.PublicKey) *solana.Transaction {
			nonce := solana.Hash{5}
			ch.s.SetAccount(acct.String(), Account{Owner: SystemProgramID, Data: loaderv3.EncodeNonce(loaderv3.Nonce{
				Version: loaderv3.NonceVersionLegacy, State: loaderv3.NonceInitialized, Authority: ch.authority.PublicKey(), Blockhash: nonce})})
			tx := ch.nonceTx(t, acct, ch.authority.PublicKey(), nonce)
			sign(t, tx, ch.authority)
			return tx
		}, "Blockhash not found"},
		{"not a system account", func(ch *chain, acct solana.PublicKey) *solana.Transaction {
			nonce := ch.s.SetNonceAccount(acct, ch.authority.PublicKey())
			data, _ := ch.s.AccountData(acct.String())
			ch.s.SetAccount(acct.String(), Account{Owner: LoaderID, Data: data})
			tx := ch.nonceTx(t, acct, ch.authority.PublicKey(), nonce)
			sign(t, tx, ch.authority)
			return tx
		}, "Blockhash not found"},
		{"the upgrade refused", func(ch *chain, acct solana.PublicKey) *solana.Transaction {
			nonce := ch.s.SetNonceAccount(acct, ch.authority.PublicKey())
			ch.s.SetProgram(ch.program, ch.deployedAt, nil, ch.oldCode)
			tx := ch.nonceTx(t, acct, ch.authority.PublicKey(), nonce)
			sign(t, tx, ch.authority)
			return tx
		}, "Error processing Instruction 1: Program not upgradeable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := newChain(t)
			acct := solana.NewWallet().PublicKey()
			tx := tc.setup(ch, acct)
			nonceBefore, _ := ch.s.AccountData(acct.String())
			before, _ := ch.s.AccountData(ch.programData.String())
			_, err := ch.c.SendTransactionWithOpts(ctx, tx, rpc.TransactionOpts{})
			if re := rpcErr(t, err); re.Code != -32002 || !strings.Contains(re.Message, tc.want) {
				t.Fatalf("error = %d %q, want %q", re.Code, re.Message, tc.want)
			}
			if after, _ := ch.s.AccountData(ch.programData.String()); !bytes.Equal(before, after) {
				t.Fatal("a refused transaction changed the program")
			}
			if after, _ := ch.s.AccountData(acct.String()); !bytes.Equal(nonceBefore, after) {
				t.Fatal("a refused transaction advanced the nonce")
			}
		})
	}
}

func TestGenesisHash(t *testing.T) {
	s := NewServer()
	defer s.Close()
	c := rpc.New(s.URL())
	if h, err := c.GetGenesisHash(context.Background()); err != nil || h.String() == MainnetGenesisHash {
		t.Fatalf("genesis = %s, %v; want a non-mainnet hash", h, err)
	}
	s.SetGenesisHash(MainnetGenesisHash)
	if h, err := c.GetGenesisHash(context.Background()); err != nil || h.String() != MainnetGenesisHash {
		t.Fatalf("genesis = %s, %v", h, err)
	}
}

// FuzzSendTransaction: whatever arrives, the fake answers without
// panicking and changes nothing unless the upgrade is valid.
func FuzzSendTransaction(f *testing.F) {
	auth := solana.NewWallet().PrivateKey
	program, buffer := solana.NewWallet().PublicKey(), solana.NewWallet().PublicKey()
	u, _ := loaderv3.NewUpgrade(program, buffer, auth.PublicKey(), auth.PublicKey())
	tx, _ := u.Transaction(blockhash(356102417))
	raw, _ := tx.MarshalBinary()
	f.Add(raw)
	f.Add(raw[:70])
	s := NewServer()
	defer s.Close()
	nonceAcct := solana.NewWallet().PublicKey()
	nonce := s.SetNonceAccount(nonceAcct, auth.PublicKey())
	ntx, _ := u.NonceTransaction(loaderv3.AdvanceNonce{Account: nonceAcct, Authority: auth.PublicKey()}, nonce)
	raw, _ = ntx.MarshalBinary()
	f.Add(raw)
	f.Fuzz(func(t *testing.T, b []byte) {
		params, _ := json.Marshal([]any{base64.StdEncoding.EncodeToString(b), map[string]string{"encoding": "base64"}})
		var req request
		_ = json.Unmarshal([]byte(`{"jsonrpc":"2.0","id":1,"method":"sendTransaction","params":`+string(params)+`}`), &req)
		if _, rerr := s.sendTransaction(req); rerr == nil {
			t.Fatal("a transaction with no valid signature by a program's authority was accepted")
		}
		if data, _ := s.AccountData(nonceAcct.String()); !bytes.Equal(data[40:72], nonce[:]) {
			t.Fatal("a refused transaction advanced the nonce")
		}
	})
}
