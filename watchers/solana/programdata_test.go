package solana

import (
	"encoding/base64"
	"testing"

	solanago "github.com/gagliardetto/solana-go"
)

func TestDecodeProgramData(t *testing.T) {
	b64 := func(s string) []byte {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name     string
		data     []byte
		wantSlot uint64
		wantAuth string
		wantErr  bool
	}{
		{"fixture with authority", b64("AwAAAD6iYBQAAAAAARZNw3XfgKezYTK4EkESzVJFfRdyayuLZGSMGrWmN+uU"), 341877310, multisig, false},
		{"fixture immutable", b64("AwAAAD6iYBQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), 341877310, "none", false},
		{"fixture after upgrade (with ELF)", b64("AwAAAA6xORUAAAAAAblof9l1bBLetGWYnRJJc1DsW7FjstlVfzcqvmTkhzzZf0VM"), 356102414, rogue, false},
		{"revoked with stale key bytes", programDataBytes(7, nil), 7, "none", false},
		{"immutable header only 13 bytes", programDataBytes(9, nil)[:13], 9, "none", false},
		{"program account, not programdata", b64("AgAAAGl6qIw76wRJHJGj2Cbsc9NyTUBOVr8DAWnPjg7A9lpu"), 0, "", true},
		{"too short", []byte{3, 0, 0}, 0, "", true},
		{"authority truncated", programDataBytes(1, solanago.MustPublicKeyFromBase58(multisig).Bytes())[:30], 0, "", true},
		{"bad option byte", func() []byte { b := programDataBytes(1, nil); b[12] = 2; return b }(), 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pd, err := DecodeProgramData(tt.data)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if pd.Slot != tt.wantSlot || pd.AuthorityString() != tt.wantAuth {
				t.Errorf("got slot %d authority %s, want %d %s", pd.Slot, pd.AuthorityString(), tt.wantSlot, tt.wantAuth)
			}
		})
	}
}

func TestProgramDataAddress(t *testing.T) {
	got, err := ProgramDataAddress(solanago.MustPublicKeyFromBase58(programID))
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != programData {
		t.Errorf("programdata address = %s, want %s", got, programData)
	}
}

func FuzzDecodeProgramData(f *testing.F) {
	f.Add(programDataBytes(1, nil))
	f.Add(programDataBytes(2, solanago.MustPublicKeyFromBase58(multisig).Bytes()))
	f.Add([]byte{})
	f.Add([]byte{3, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		pd, err := DecodeProgramData(b)
		if err != nil {
			return
		}
		if len(b) < 13 || b[0] != 3 || b[1]|b[2]|b[3] != 0 {
			t.Fatalf("accepted invalid header %x", b)
		}
		if (pd.Authority != nil) != (b[12] == 1) {
			t.Fatalf("authority presence does not follow the option byte: %x", b)
		}
		if pd.Authority != nil && string(pd.Authority[:]) != string(b[13:45]) {
			t.Fatalf("authority bytes differ")
		}
	})
}
