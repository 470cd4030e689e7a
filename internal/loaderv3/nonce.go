package loaderv3

// Durable nonces (the system program's nonce accounts), for an upgrade
// transaction that must outlive a recent blockhash (about 150 blocks)
// while its signers review and sign it. Such a transaction's recent
// blockhash is the value stored in a nonce account, and its first
// instruction is the system program's AdvanceNonceAccount, signed by the
// nonce's authority: the transaction stays valid until the nonce is
// advanced, which landing it does, so it lands at most once.
//
// The account is bincode of the system program's nonce Versions enum
// (solana-sdk nonce/src/versions.rs, state.rs): u32 version (0 legacy,
// 1 current), u32 state (0 uninitialized, 1 initialized), then when
// initialized the authority [32], the durable nonce [32] and the fee
// calculator's lamports_per_signature u64; 80 bytes in all. solana-go's
// programs/system.NonceAccount decodes it.

import (
	"crypto/sha256"
	"fmt"

	bin "github.com/gagliardetto/binary"
	solana "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/programs/system"
)

// NonceAccountLen is the size of a nonce account.
const NonceAccountLen = 80

// Nonce account versions and states.
const (
	NonceVersionLegacy  uint32 = 0
	NonceVersionCurrent uint32 = 1

	NonceUninitialized uint32 = 0
	NonceInitialized   uint32 = 1
)

// InstructionAdvanceNonce is the system program's AdvanceNonceAccount,
// a u32 little-endian with no fields.
const InstructionAdvanceNonce uint32 = system.Instruction_AdvanceNonceAccount

// Nonce is a decoded nonce account.
type Nonce struct {
	Version, State uint32
	// Authority must sign AdvanceNonceAccount.
	Authority solana.PublicKey
	// Blockhash is the durable nonce: the recent blockhash of the
	// transactions that use it.
	Blockhash            solana.Hash
	LamportsPerSignature uint64
}

// Usable says why a transaction cannot use the nonce; nil when it can.
// Legacy nonces are refused by the runtime for durable transactions.
func (n Nonce) Usable() error {
	switch {
	case n.State != NonceInitialized:
		return fmt.Errorf("nonce account is not initialized (state %d): `solana create-nonce-account` creates one", n.State)
	case n.Version != NonceVersionCurrent:
		return fmt.Errorf("nonce account has the legacy version %d, which the runtime no longer accepts for durable transactions: `solana upgrade-nonce-account` first", n.Version)
	}
	return nil
}

// DecodeNonce decodes a nonce account's data.
func DecodeNonce(b []byte) (Nonce, error) {
	if len(b) != NonceAccountLen {
		return Nonce{}, fmt.Errorf("decode nonce account: %d bytes, want %d", len(b), NonceAccountLen)
	}
	var a system.NonceAccount
	if err := bin.NewBinDecoder(b).Decode(&a); err != nil {
		return Nonce{}, fmt.Errorf("decode nonce account: %w", err)
	}
	if a.Version > NonceVersionCurrent {
		return Nonce{}, fmt.Errorf("decode nonce account: version %d, want 0 or 1", a.Version)
	}
	if a.State > NonceInitialized {
		return Nonce{}, fmt.Errorf("decode nonce account: state %d, want 0 or 1", a.State)
	}
	return Nonce{Version: a.Version, State: a.State, Authority: a.AuthorizedPubkey, Blockhash: solana.Hash(a.Nonce),
		LamportsPerSignature: a.FeeCalculator.LamportsPerSignature}, nil
}

// EncodeNonce encodes a nonce account (80 bytes).
func EncodeNonce(n Nonce) []byte {
	a := system.NonceAccount{Version: n.Version, State: n.State, AuthorizedPubkey: n.Authority, Nonce: solana.PublicKey(n.Blockhash),
		FeeCalculator: system.FeeCalculator{LamportsPerSignature: n.LamportsPerSignature}}
	b, err := bin.MarshalBin(a)
	if err != nil {
		panic(err) // fixed-size fields into a growing buffer
	}
	return b
}

// DurableNonce is the nonce a current-version account stores after an
// advance at blockhash: sha256("DURABLE_NONCE" || blockhash), so that it
// never equals a blockhash.
func DurableNonce(blockhash solana.Hash) solana.Hash {
	return solana.Hash(sha256.Sum256(append([]byte("DURABLE_NONCE"), blockhash[:]...)))
}

// AdvanceNonce is the accounts of an AdvanceNonceAccount instruction:
//
//	0 Nonce account  writable
//	1 RecentBlockhashes sysvar
//	2 Authority      signer
type AdvanceNonce struct {
	Account, Authority solana.PublicKey
}

// Instruction is the AdvanceNonceAccount instruction.
func (a AdvanceNonce) Instruction() solana.Instruction {
	return system.NewAdvanceNonceAccountInstruction(a.Account, solana.SysVarRecentBlockHashesPubkey, a.Authority).Build()
}

// NonceTransaction is an unsigned legacy transaction that advances the
// nonce, then upgrades; its recent blockhash is the nonce's value and the
// authority pays. The nonce's authority must sign too: the signers sign
// once when it is the upgrade authority.
func (u Upgrade) NonceTransaction(n AdvanceNonce, nonce solana.Hash) (*solana.Transaction, error) {
	tx, err := solana.NewTransaction([]solana.Instruction{n.Instruction(), u.Instruction()}, nonce, solana.TransactionPayer(u.Authority))
	if err != nil {
		return nil, fmt.Errorf("build upgrade transaction with durable nonce %s: %w", n.Account, err)
	}
	return tx, nil
}

func (d txDecoder) advanceNonce(ci solana.CompiledInstruction) (AdvanceNonce, error) {
	if int(ci.ProgramIDIndex) >= len(d.m.AccountKeys) {
		return AdvanceNonce{}, fmt.Errorf("program id index %d out of range (%d keys)", ci.ProgramIDIndex, len(d.m.AccountKeys))
	}
	if pid := d.m.AccountKeys[ci.ProgramIDIndex]; !pid.Equals(solana.SystemProgramID) {
		return AdvanceNonce{}, fmt.Errorf("program is %s, want the system program's AdvanceNonceAccount", pid)
	}
	if want := []byte{byte(InstructionAdvanceNonce), 0, 0, 0}; string(ci.Data) != string(want) {
		return AdvanceNonce{}, fmt.Errorf("system instruction data is %x, want %x (AdvanceNonceAccount)", []byte(ci.Data), want)
	}
	keys, err := d.keys(ci, 3)
	if err != nil {
		return AdvanceNonce{}, err
	}
	if !d.writable(int(ci.Accounts[0])) {
		return AdvanceNonce{}, fmt.Errorf("nonce account %s is not writable", keys[0])
	}
	if !keys[1].Equals(solana.SysVarRecentBlockHashesPubkey) {
		return AdvanceNonce{}, fmt.Errorf("account 1 is %s, want the RecentBlockhashes sysvar", keys[1])
	}
	if !d.signer(int(ci.Accounts[2])) {
		return AdvanceNonce{}, fmt.Errorf("nonce authority %s is not a signer", keys[2])
	}
	return AdvanceNonce{Account: keys[0], Authority: keys[2]}, nil
}
