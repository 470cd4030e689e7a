package solana

import (
	"encoding/binary"
	"errors"
	"fmt"

	solanago "github.com/gagliardetto/solana-go"
)

// programDataMetaLen is the ProgramData header: u32 tag, u64 slot,
// Option<Pubkey> (1 + 32 bytes). The ELF follows it.
const programDataMetaLen = 45

// ProgramData is the decoded header of an upgradeable program's
// ProgramData account.
type ProgramData struct {
	// Slot is the slot the program was last deployed or upgraded at.
	Slot uint64
	// Authority is the upgrade authority; nil when there is none (the
	// program is immutable, or its authority was revoked).
	Authority *solanago.PublicKey
}

// AuthorityString is the authority in base58, or "none".
func (p ProgramData) AuthorityString() string {
	if p.Authority == nil {
		return "none"
	}
	return p.Authority.String()
}

// DecodeProgramData decodes the first 45 bytes of a ProgramData account
// (bincode of UpgradeableLoaderState::ProgramData). It branches on the
// option byte: revoking an authority leaves the old key bytes behind.
func DecodeProgramData(b []byte) (ProgramData, error) {
	if len(b) < 13 {
		return ProgramData{}, fmt.Errorf("decode programdata: %d bytes, want at least 13", len(b))
	}
	if tag := binary.LittleEndian.Uint32(b[0:4]); tag != 3 {
		return ProgramData{}, fmt.Errorf("decode programdata: account state tag %d, want 3 (ProgramData)", tag)
	}
	pd := ProgramData{Slot: binary.LittleEndian.Uint64(b[4:12])}
	switch b[12] {
	case 0:
	case 1:
		if len(b) < programDataMetaLen {
			return ProgramData{}, fmt.Errorf("decode programdata: authority present but only %d bytes, want %d", len(b), programDataMetaLen)
		}
		pk := solanago.PublicKeyFromBytes(b[13:45])
		pd.Authority = &pk
	default:
		return ProgramData{}, errors.New("decode programdata: option byte is neither 0 nor 1")
	}
	return pd, nil
}

// ProgramDataAddress derives the ProgramData account of an upgradeable
// program.
func ProgramDataAddress(program solanago.PublicKey) (solanago.PublicKey, error) {
	addr, _, err := solanago.FindProgramAddress([][]byte{program[:]}, solanago.BPFLoaderUpgradeableProgramID)
	if err != nil {
		return solanago.PublicKey{}, fmt.Errorf("derive programdata address of %s: %w", program, err)
	}
	return addr, nil
}
