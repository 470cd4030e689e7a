package loaderv3

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	solana "github.com/gagliardetto/solana-go"
)

// TestNonceLayout: the 80 bytes by hand (u32 version, u32 state,
// authority, durable nonce, u64 lamports per signature), both ways.
func TestNonceLayout(t *testing.T) {
	auth := authKey.PublicKey()
	var h solana.Hash
	for i := range h {
		h[i] = byte(100 + i)
	}
	var want []byte
	want = binary.LittleEndian.AppendUint32(want, 1)
	want = binary.LittleEndian.AppendUint32(want, 1)
	want = append(want, auth[:]...)
	want = append(want, h[:]...)
	want = binary.LittleEndian.AppendUint64(want, 5000)
	n := Nonce{Version: NonceVersionCurrent, State: NonceInitialized, Authority: auth, Blockhash: h, LamportsPerSignature: 5000}
	if got := EncodeNonce(n); !bytes.Equal(got, want) {
		t.Fatalf("EncodeNonce = %x\nwant %x", got, want)
	}
	got, err := DecodeNonce(want)
	if err != nil || got != n {
		t.Fatalf("DecodeNonce = %+v, %v", got, err)
	}
	if err := got.Usable(); err != nil {
		t.Fatal(err)
	}
	legacy := n
	legacy.Version = NonceVersionLegacy
	if err := legacy.Usable(); err == nil || !strings.Contains(err.Error(), "upgrade-nonce-account") {
		t.Fatalf("legacy: %v", err)
	}
	uninit, err := DecodeNonce(make([]byte, NonceAccountLen))
	if err != nil {
		t.Fatal(err)
	}
	if err := uninit.Usable(); err == nil || !strings.Contains(err.Error(), "not initialized") {
		t.Fatalf("uninitialized: %v", err)
	}
	for name, b := range map[string][]byte{
		"short":         want[:79],
		"long":          append(bytes.Clone(want), 0),
		"version 2":     append([]byte{2, 0, 0, 0}, want[4:]...),
		"state 7":       append(append(bytes.Clone(want[:4]), 7, 0, 0, 0), want[8:]...),
		"a programdata": EncodeProgramData(ProgramData{Slot: 1, Authority: &auth}, make([]byte, 35)),
	} {
		if _, err := DecodeNonce(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if d := DurableNonce(h); d == h || d != DurableNonce(h) {
		t.Fatal("DurableNonce is not a stable function apart from the blockhash")
	}
}

// TestNonceTransaction: AdvanceNonceAccount (system instruction 4: nonce
// account writable, RecentBlockhashes, authority signer) first, then the
// Upgrade; the blockhash is the nonce; one signer, the authority.
func TestNonceTransaction(t *testing.T) {
	auth := authKey.PublicKey()
	u, _ := NewUpgrade(program, buffer, auth, spill)
	nonceAcct := solana.MustPublicKeyFromBase58("HuqBXA6dhyRnq5vj8QUfVge5R9so3gKvjrc9x9oKpZvj")
	a := AdvanceNonce{Account: nonceAcct, Authority: auth}
	ix := a.Instruction()
	data, _ := ix.Data()
	if ix.ProgramID() != solana.SystemProgramID || !bytes.Equal(data, []byte{4, 0, 0, 0}) {
		t.Fatalf("advance = program %s data %x", ix.ProgramID(), data)
	}
	m := ix.Accounts()
	if len(m) != 3 || m[0].PublicKey != nonceAcct || !m[0].IsWritable || m[0].IsSigner ||
		m[1].PublicKey.String() != "SysvarRecentB1ockHashes11111111111111111111" || m[1].IsWritable || m[1].IsSigner ||
		m[2].PublicKey != auth || !m[2].IsSigner || m[2].IsWritable {
		t.Fatalf("advance accounts = %v", m)
	}
	nonce := DurableNonce(solana.Hash{42})
	tx, err := u.NonceTransaction(a, nonce)
	if err != nil {
		t.Fatal(err)
	}
	if tx.Message.RecentBlockhash != nonce || tx.Message.Header.NumRequiredSignatures != 1 || tx.Message.AccountKeys[0] != auth {
		t.Fatalf("blockhash %s, %d signers, payer %s", tx.Message.RecentBlockhash, tx.Message.Header.NumRequiredSignatures, tx.Message.AccountKeys[0])
	}
	raw, _ := tx.MarshalBinary()
	back, err := solana.TransactionFromBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	gotU, gotN, err := DecodeTransaction(back)
	if err != nil || gotU != u || gotN == nil || *gotN != a {
		t.Fatalf("DecodeTransaction = %+v, %+v, %v", gotU, gotN, err)
	}
	if _, err := DecodeUpgradeTransaction(back); err == nil || !strings.Contains(err.Error(), "durable nonce") {
		t.Fatalf("DecodeUpgradeTransaction of a nonce transaction = %v", err)
	}
	plain, _ := u.Transaction(solana.Hash{1})
	if gotU, gotN, err := DecodeTransaction(plain); err != nil || gotN != nil || gotU != u {
		t.Fatalf("DecodeTransaction of a plain upgrade = %+v, %+v, %v", gotU, gotN, err)
	}

	build := func(first solana.Instruction, payer solana.PublicKey) *solana.Transaction {
		tx, err := solana.NewTransaction([]solana.Instruction{first, u.Instruction()}, nonce, solana.TransactionPayer(payer))
		if err != nil {
			t.Fatal(err)
		}
		return tx
	}
	metas := func(edit func([]*solana.AccountMeta)) []*solana.AccountMeta {
		m := a.Instruction().Accounts()
		edit(m)
		return m
	}
	for name, tc := range map[string]struct {
		tx   *solana.Transaction
		want string
	}{
		"a transfer first": {build(solana.NewInstruction(solana.SystemProgramID, metas(func([]*solana.AccountMeta) {}), []byte{2, 0, 0, 0}), auth), "want 04000000"},
		"another program":  {build(solana.NewInstruction(ProgramID, metas(func([]*solana.AccountMeta) {}), []byte{4, 0, 0, 0}), auth), "want the system program"},
		"no sysvar": {build(solana.NewInstruction(solana.SystemProgramID, metas(func(m []*solana.AccountMeta) { m[1] = solana.Meta(spill) }), []byte{4, 0, 0, 0}), auth),
			"RecentBlockhashes"},
		"nonce read-only": {build(solana.NewInstruction(solana.SystemProgramID, metas(func(m []*solana.AccountMeta) { m[0].IsWritable = false }), []byte{4, 0, 0, 0}), auth),
			"not writable"},
		"two accounts": {build(solana.NewInstruction(solana.SystemProgramID, metas(func([]*solana.AccountMeta) {})[:2], []byte{4, 0, 0, 0}), auth), "2 accounts, want 3"},
		"upgrade first": {func() *solana.Transaction {
			tx, _ := solana.NewTransaction([]solana.Instruction{u.Instruction(), a.Instruction()}, nonce, solana.TransactionPayer(auth))
			return tx
		}(), "instruction 0"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := DecodeTransaction(tc.tx); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// The nonce authority must sign: here another key, not a signer.
	other := solana.NewWallet().PublicKey()
	notSigner := build(solana.NewInstruction(solana.SystemProgramID, metas(func(m []*solana.AccountMeta) { m[2] = solana.Meta(other) }), []byte{4, 0, 0, 0}), auth)
	if _, _, err := DecodeTransaction(notSigner); err == nil || !strings.Contains(err.Error(), "not a signer") {
		t.Fatalf("nonce authority not a signer: %v", err)
	}
}
