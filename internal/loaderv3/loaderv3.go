// Package loaderv3 is the part of Solana's BPF upgradeable loader (loader
// v3, BPFLoaderUpgradeab1e11111111111111111111111) that incidentbot needs:
// its account layouts (Program, ProgramData, Buffer) and its Upgrade
// instruction. solana-go has no encoder or decoder for either.
//
// Layouts are bincode of the loader's UpgradeableLoaderState enum
// (anza-xyz/solana-sdk loader-v3-interface/src/state.rs): a u32
// little-endian variant tag, then the variant's fields. An
// Option<Pubkey> is one byte (0 none, 1 some) and 32 key bytes that are
// only meaningful when the byte is 1: revoking an authority leaves the
// old key bytes behind.
package loaderv3

import (
	"encoding/binary"
	"errors"
	"fmt"

	solana "github.com/gagliardetto/solana-go"
)

// ProgramID is the loader's program id.
var ProgramID = solana.BPFLoaderUpgradeableProgramID

// Account state tags.
const (
	TagUninitialized uint32 = 0
	TagBuffer        uint32 = 1
	TagProgram       uint32 = 2
	TagProgramData   uint32 = 3
)

// Header sizes: the program bytes of a Buffer start at BufferMetaLen, the
// ELF of a ProgramData at ProgramDataMetaLen.
const (
	BufferMetaLen      = 4 + 1 + 32
	ProgramLen         = 4 + 32
	ProgramDataMetaLen = 4 + 8 + 1 + 32
)

// InstructionUpgrade is the Upgrade variant of the loader's instruction
// enum (InitializeBuffer 0, Write 1, DeployWithMaxDataLen 2, Upgrade 3),
// encoded as a u32 little-endian with no fields.
const InstructionUpgrade uint32 = 3

// ProgramDataAddress derives the ProgramData account of program: the
// program-derived address of the seed [program id] under the loader.
func ProgramDataAddress(program solana.PublicKey) (solana.PublicKey, error) {
	addr, _, err := solana.FindProgramAddress([][]byte{program[:]}, ProgramID)
	if err != nil {
		return solana.PublicKey{}, fmt.Errorf("derive programdata address of %s: %w", program, err)
	}
	return addr, nil
}

// ProgramData is the header of a ProgramData account.
type ProgramData struct {
	// Slot is the slot the program was last deployed or upgraded at.
	Slot uint64
	// Authority is the upgrade authority; nil when there is none (the
	// program is immutable).
	Authority *solana.PublicKey
}

// Buffer is the header of a Buffer account.
type Buffer struct {
	// Authority may write to the buffer and upgrade a program from it
	// when it is also the program's upgrade authority; nil when none.
	Authority *solana.PublicKey
}

func tag(b []byte, want uint32, what string) error {
	if len(b) < 4 {
		return fmt.Errorf("decode %s: %d bytes, want at least 4", what, len(b))
	}
	if t := binary.LittleEndian.Uint32(b[:4]); t != want {
		return fmt.Errorf("decode %s: account state tag %d, want %d", what, t, want)
	}
	return nil
}

func optionKey(b []byte, what string) (*solana.PublicKey, error) {
	if len(b) < 1 {
		return nil, fmt.Errorf("decode %s: no authority option byte", what)
	}
	switch b[0] {
	case 0:
		return nil, nil
	case 1:
		if len(b) < 33 {
			return nil, fmt.Errorf("decode %s: authority present but truncated", what)
		}
		pk := solana.PublicKeyFromBytes(b[1:33])
		return &pk, nil
	}
	return nil, errors.New("decode " + what + ": authority option byte is neither 0 nor 1")
}

// DecodeProgramData decodes the header of a ProgramData account (at
// least 13 bytes; 45 when it has an authority).
func DecodeProgramData(b []byte) (ProgramData, error) {
	if err := tag(b, TagProgramData, "programdata"); err != nil {
		return ProgramData{}, err
	}
	if len(b) < 13 {
		return ProgramData{}, fmt.Errorf("decode programdata: %d bytes, want at least 13", len(b))
	}
	auth, err := optionKey(b[12:], "programdata")
	if err != nil {
		return ProgramData{}, err
	}
	return ProgramData{Slot: binary.LittleEndian.Uint64(b[4:12]), Authority: auth}, nil
}

// DecodeBuffer decodes the header of a Buffer account; the program bytes
// are b[BufferMetaLen:].
func DecodeBuffer(b []byte) (Buffer, error) {
	if err := tag(b, TagBuffer, "buffer"); err != nil {
		return Buffer{}, err
	}
	auth, err := optionKey(b[4:], "buffer")
	if err != nil {
		return Buffer{}, err
	}
	if len(b) < BufferMetaLen {
		return Buffer{}, fmt.Errorf("decode buffer: %d bytes, want at least %d", len(b), BufferMetaLen)
	}
	return Buffer{Authority: auth}, nil
}

// DecodeProgram decodes a Program account: the address of its
// ProgramData.
func DecodeProgram(b []byte) (solana.PublicKey, error) {
	if err := tag(b, TagProgram, "program"); err != nil {
		return solana.PublicKey{}, err
	}
	if len(b) < ProgramLen {
		return solana.PublicKey{}, fmt.Errorf("decode program: %d bytes, want %d", len(b), ProgramLen)
	}
	return solana.PublicKeyFromBytes(b[4:36]), nil
}

func putOption(b []byte, k *solana.PublicKey) {
	if k != nil {
		b[0] = 1
		copy(b[1:33], k[:])
	}
}

// EncodeProgramData encodes a ProgramData account holding elf.
func EncodeProgramData(pd ProgramData, elf []byte) []byte {
	b := make([]byte, ProgramDataMetaLen+len(elf))
	binary.LittleEndian.PutUint32(b, TagProgramData)
	binary.LittleEndian.PutUint64(b[4:], pd.Slot)
	putOption(b[12:], pd.Authority)
	copy(b[ProgramDataMetaLen:], elf)
	return b
}

// EncodeBuffer encodes a Buffer account holding program.
func EncodeBuffer(buf Buffer, program []byte) []byte {
	b := make([]byte, BufferMetaLen+len(program))
	binary.LittleEndian.PutUint32(b, TagBuffer)
	putOption(b[4:], buf.Authority)
	copy(b[BufferMetaLen:], program)
	return b
}

// EncodeProgram encodes a Program account pointing at its ProgramData.
func EncodeProgram(programData solana.PublicKey) []byte {
	b := make([]byte, ProgramLen)
	binary.LittleEndian.PutUint32(b, TagProgram)
	copy(b[4:], programData[:])
	return b
}

// Upgrade is the accounts of an Upgrade instruction, in the loader's
// order (loader-v3-interface/src/instruction.rs):
//
//	0 ProgramData  writable
//	1 Program      writable
//	2 Buffer       writable (closed by the upgrade)
//	3 Spill        writable (receives the buffer's lamports)
//	4 Rent sysvar
//	5 Clock sysvar
//	6 Authority    signer
type Upgrade struct {
	ProgramData, Program, Buffer, Spill, Authority solana.PublicKey
}

// NewUpgrade fills in the ProgramData address of program.
func NewUpgrade(program, buffer, authority, spill solana.PublicKey) (Upgrade, error) {
	pd, err := ProgramDataAddress(program)
	if err != nil {
		return Upgrade{}, err
	}
	return Upgrade{ProgramData: pd, Program: program, Buffer: buffer, Spill: spill, Authority: authority}, nil
}

// Accounts are the instruction's account metas, in order.
func (u Upgrade) Accounts() []*solana.AccountMeta {
	return []*solana.AccountMeta{
		solana.Meta(u.ProgramData).WRITE(),
		solana.Meta(u.Program).WRITE(),
		solana.Meta(u.Buffer).WRITE(),
		solana.Meta(u.Spill).WRITE(),
		solana.Meta(solana.SysVarRentPubkey),
		solana.Meta(solana.SysVarClockPubkey),
		solana.Meta(u.Authority).SIGNER(),
	}
}

// UpgradeData is the Upgrade instruction's data.
func UpgradeData() []byte { return binary.LittleEndian.AppendUint32(nil, InstructionUpgrade) }

// Instruction is the Upgrade instruction.
func (u Upgrade) Instruction() solana.Instruction {
	return solana.NewInstruction(ProgramID, u.Accounts(), UpgradeData())
}

// Transaction is an unsigned legacy transaction holding the Upgrade
// instruction alone, paid for by the authority.
func (u Upgrade) Transaction(recentBlockhash solana.Hash) (*solana.Transaction, error) {
	tx, err := solana.NewTransaction([]solana.Instruction{u.Instruction()}, recentBlockhash, solana.TransactionPayer(u.Authority))
	if err != nil {
		return nil, fmt.Errorf("build upgrade transaction: %w", err)
	}
	return tx, nil
}

// DecodeUpgradeTransaction checks that tx holds exactly one instruction,
// a loader Upgrade with its seven accounts in order and with the right
// flags (the first four writable, the sysvars in place, the authority a
// signer), and returns its accounts. Signatures are not checked. A
// transaction with a durable nonce is refused: see DecodeTransaction.
func DecodeUpgradeTransaction(tx *solana.Transaction) (Upgrade, error) {
	u, n, err := DecodeTransaction(tx)
	if err == nil && n != nil {
		return Upgrade{}, errors.New("upgrade transaction has 2 instructions (a durable nonce advance first), want 1")
	}
	return u, err
}

// DecodeTransaction decodes an upgrade transaction of either form: the
// Upgrade alone (nonce nil), or a durable-nonce transaction whose first
// instruction is the system program's AdvanceNonceAccount (its three
// accounts in order: the nonce account writable, the RecentBlockhashes
// sysvar, the nonce authority a signer) and whose second is the Upgrade.
// Signatures, and whether the nonce matches, are not checked.
func DecodeTransaction(tx *solana.Transaction) (Upgrade, *AdvanceNonce, error) {
	m := &tx.Message
	if m.IsVersioned() && len(m.AddressTableLookups) > 0 {
		return Upgrade{}, nil, errors.New("upgrade transaction uses address lookup tables")
	}
	h, n := m.Header, len(m.AccountKeys)
	if int(h.NumRequiredSignatures) > n || h.NumReadonlySignedAccounts > h.NumRequiredSignatures ||
		int(h.NumReadonlyUnsignedAccounts) > n-int(h.NumRequiredSignatures) {
		return Upgrade{}, nil, fmt.Errorf("message header %+v does not fit its %d account keys", h, n)
	}
	seen := make(map[solana.PublicKey]bool, n)
	for _, k := range m.AccountKeys {
		if seen[k] {
			return Upgrade{}, nil, fmt.Errorf("account %s is listed twice", k)
		}
		seen[k] = true
	}
	d := txDecoder{m: m}
	var nonce *AdvanceNonce
	ixs := m.Instructions
	if len(ixs) == 2 {
		a, err := d.advanceNonce(ixs[0])
		if err != nil {
			return Upgrade{}, nil, fmt.Errorf("instruction 0: %w", err)
		}
		nonce, ixs = &a, ixs[1:]
	}
	if len(ixs) != 1 {
		return Upgrade{}, nil, fmt.Errorf("upgrade transaction has %d instructions, want 1 (or 2: a durable nonce advance, then the upgrade)", len(m.Instructions))
	}
	u, err := d.upgrade(ixs[0])
	if err != nil {
		return Upgrade{}, nil, err
	}
	return u, nonce, nil
}

// txDecoder reads the compiled instructions of a checked message.
type txDecoder struct{ m *solana.Message }

func (d txDecoder) signer(i int) bool { return i < int(d.m.Header.NumRequiredSignatures) }

func (d txDecoder) writable(i int) bool {
	h := d.m.Header
	if d.signer(i) {
		return i < int(h.NumRequiredSignatures-h.NumReadonlySignedAccounts)
	}
	return i < len(d.m.AccountKeys)-int(h.NumReadonlyUnsignedAccounts)
}

// keys checks ci's account count and indexes (its program id index is
// checked already) and returns its account keys.
func (d txDecoder) keys(ci solana.CompiledInstruction, accounts int) ([]solana.PublicKey, error) {
	ak := d.m.AccountKeys
	if n := len(ci.Accounts); n != accounts {
		return nil, fmt.Errorf("instruction of program %s has %d accounts, want %d", ak[ci.ProgramIDIndex], n, accounts)
	}
	keys := make([]solana.PublicKey, accounts)
	for i, idx := range ci.Accounts {
		if int(idx) >= len(ak) {
			return nil, fmt.Errorf("account %d: index %d out of range (%d keys)", i, idx, len(ak))
		}
		keys[i] = ak[idx]
	}
	return keys, nil
}

func (d txDecoder) upgrade(ci solana.CompiledInstruction) (Upgrade, error) {
	ak := d.m.AccountKeys
	if int(ci.ProgramIDIndex) >= len(ak) {
		return Upgrade{}, fmt.Errorf("program id index %d out of range (%d keys)", ci.ProgramIDIndex, len(ak))
	}
	if pid := ak[ci.ProgramIDIndex]; !pid.Equals(ProgramID) {
		return Upgrade{}, fmt.Errorf("instruction program is %s, want the upgradeable loader %s", pid, ProgramID)
	}
	if want := UpgradeData(); string(ci.Data) != string(want) {
		return Upgrade{}, fmt.Errorf("instruction data is %x, want %x (Upgrade)", []byte(ci.Data), want)
	}
	if n := len(ci.Accounts); n != 7 {
		return Upgrade{}, fmt.Errorf("upgrade instruction has %d accounts, want 7", n)
	}
	keys, err := d.keys(ci, 7)
	if err != nil {
		return Upgrade{}, err
	}
	for i, idx := range ci.Accounts {
		if i < 4 && !d.writable(int(idx)) {
			return Upgrade{}, fmt.Errorf("account %d (%s %s) is not writable", i, [...]string{"programdata", "program", "buffer", "spill"}[i], keys[i])
		}
		if i == 6 && !d.signer(int(idx)) {
			return Upgrade{}, fmt.Errorf("account 6 (authority %s) is not a signer", keys[i])
		}
	}
	if !keys[4].Equals(solana.SysVarRentPubkey) {
		return Upgrade{}, fmt.Errorf("account 4 is %s, want the rent sysvar", keys[4])
	}
	if !keys[5].Equals(solana.SysVarClockPubkey) {
		return Upgrade{}, fmt.Errorf("account 5 is %s, want the clock sysvar", keys[5])
	}
	u := Upgrade{ProgramData: keys[0], Program: keys[1], Buffer: keys[2], Spill: keys[3], Authority: keys[6]}
	pd, err := ProgramDataAddress(u.Program)
	if err != nil {
		return Upgrade{}, err
	}
	if !pd.Equals(u.ProgramData) {
		return Upgrade{}, fmt.Errorf("account 0 is %s, not the programdata of program %s (%s)", u.ProgramData, u.Program, pd)
	}
	return u, nil
}
