package loaderv3

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	solana "github.com/gagliardetto/solana-go"
)

func key(t testing.TB, s string) solana.PublicKey {
	t.Helper()
	k, err := solana.PublicKeyFromBase58(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The shared fixtures' layouts (fixtures/solana/layouts/expected_decodes.json,
// generated and checked against Solana's own PDA test vectors), copied
// here so the test needs nothing outside the repository.
func TestLayoutsAgainstFixtures(t *testing.T) {
	var f struct {
		ProgramID   string
		Derived     string
		ProgramAcct struct{ Base64 string }
		WithAuth    struct {
			Base64  string
			Decoded struct {
				Slot      uint64
				Authority *string
			}
		}
		Immutable struct{ Base64 string }
	}
	f.ProgramID = "AwRs5wYZ96zt2YjQb8oNhrfcmcyHWUNKc8hEtc3mz1hM"
	f.Derived = "86kHhikiJxy2P7vQuTVKqun6wJG4CqXcRS7hiRb5xE5T"
	f.ProgramAcct.Base64 = "AgAAAGl6qIw76wRJHJGj2Cbsc9NyTUBOVr8DAWnPjg7A9lpu"
	f.WithAuth.Base64 = "AwAAAD6iYBQAAAAAARZNw3XfgKezYTK4EkESzVJFfRdyayuLZGSMGrWmN+uU"
	f.WithAuth.Decoded.Slot = 341877310
	auth := "2W4k99FPDtkLfVQrz7svQM2mjbx8u7dDxdU4JuXntNxb"
	f.WithAuth.Decoded.Authority = &auth
	f.Immutable.Base64 = "AwAAAD6iYBQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	pd, err := ProgramDataAddress(key(t, f.ProgramID))
	if err != nil || pd.String() != f.Derived {
		t.Fatalf("ProgramDataAddress = %s, %v; want %s", pd, err, f.Derived)
	}
	prog, _ := base64.StdEncoding.DecodeString(f.ProgramAcct.Base64)
	if got, err := DecodeProgram(prog); err != nil || got != pd {
		t.Fatalf("DecodeProgram = %s, %v", got, err)
	}
	if !bytes.Equal(EncodeProgram(pd), prog) {
		t.Fatal("EncodeProgram differs from the fixture")
	}
	hdr, _ := base64.StdEncoding.DecodeString(f.WithAuth.Base64)
	got, err := DecodeProgramData(hdr)
	if err != nil || got.Slot != f.WithAuth.Decoded.Slot || got.Authority == nil || got.Authority.String() != *f.WithAuth.Decoded.Authority {
		t.Fatalf("DecodeProgramData = %+v, %v", got, err)
	}
	if !bytes.Equal(EncodeProgramData(got, nil), hdr) {
		t.Fatal("EncodeProgramData differs from the fixture")
	}
	imm, _ := base64.StdEncoding.DecodeString(f.Immutable.Base64)
	if got, err := DecodeProgramData(imm); err != nil || got.Authority != nil {
		t.Fatalf("immutable: %+v, %v", got, err)
	}
	// Revoking leaves the key bytes behind: the option byte decides.
	stale := bytes.Clone(hdr)
	stale[12] = 0
	if got, err := DecodeProgramData(stale); err != nil || got.Authority != nil {
		t.Fatalf("revoked with stale key bytes: %+v, %v", got, err)
	}
}

func TestBufferRoundTrip(t *testing.T) {
	auth := solana.NewWallet().PublicKey()
	b := EncodeBuffer(Buffer{Authority: &auth}, []byte("ELF"))
	want, _ := hex.DecodeString("01000000" + "01" + hex.EncodeToString(auth[:]) + hex.EncodeToString([]byte("ELF")))
	if !bytes.Equal(b, want) {
		t.Fatalf("EncodeBuffer = %x, want %x", b, want)
	}
	got, err := DecodeBuffer(b)
	if err != nil || got.Authority == nil || *got.Authority != auth {
		t.Fatalf("DecodeBuffer = %+v, %v", got, err)
	}
	if _, err := DecodeBuffer(EncodeProgram(auth)); err == nil {
		t.Fatal("a Program account decoded as a Buffer")
	}
}

// fixed keys, so the expected bytes below are computed by hand.
var (
	program   = solana.MustPublicKeyFromBase58("AwRs5wYZ96zt2YjQb8oNhrfcmcyHWUNKc8hEtc3mz1hM")
	programPD = solana.MustPublicKeyFromBase58("86kHhikiJxy2P7vQuTVKqun6wJG4CqXcRS7hiRb5xE5T")
	buffer    = solana.MustPublicKeyFromBase58("HuqBXA6dhyRnq5vj8QUfVge5R9so3gKvjrc9x9oKpZvi")
	authKey   = solana.PrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32)))
	spill     = solana.MustPublicKeyFromBase58("2W4k99FPDtkLfVQrz7svQM2mjbx8u7dDxdU4JuXntNxb")
)

func TestUpgradeInstruction(t *testing.T) {
	auth := authKey.PublicKey()
	u, err := NewUpgrade(program, buffer, auth, spill)
	if err != nil {
		t.Fatal(err)
	}
	ix := u.Instruction()
	if ix.ProgramID().String() != "BPFLoaderUpgradeab1e11111111111111111111111" {
		t.Fatalf("program id %s", ix.ProgramID())
	}
	data, _ := ix.Data()
	if !bytes.Equal(data, []byte{3, 0, 0, 0}) {
		t.Fatalf("data %x, want 03000000", data)
	}
	type meta struct {
		key              string
		writable, signer bool
	}
	want := []meta{
		{programPD.String(), true, false},
		{program.String(), true, false},
		{buffer.String(), true, false},
		{spill.String(), true, false},
		{"SysvarRent111111111111111111111111111111111", false, false},
		{"SysvarC1ock11111111111111111111111111111111", false, false},
		{auth.String(), false, true},
	}
	got := ix.Accounts()
	if len(got) != len(want) {
		t.Fatalf("%d accounts, want %d", len(got), len(want))
	}
	for i, m := range got {
		if (meta{m.PublicKey.String(), m.IsWritable, m.IsSigner}) != want[i] {
			t.Errorf("account %d = %s w=%v s=%v, want %+v", i, m.PublicKey, m.IsWritable, m.IsSigner, want[i])
		}
	}
}

func TestUpgradeTransactionBytes(t *testing.T) {
	auth := authKey.PublicKey()
	u, _ := NewUpgrade(program, buffer, auth, spill)
	var bh solana.Hash
	for i := range bh {
		bh[i] = byte(i)
	}
	tx, err := u.Transaction(bh)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := tx.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// By hand: one zeroed signature slot, header (1 signer, 0 read-only
	// signed, 3 read-only unsigned: the sysvars and the loader), the
	// authority first as fee payer, then the writable accounts in the
	// instruction's order, the read-only ones, the blockhash, and one
	// instruction (program index 7, accounts 1..6 then 0, data 03000000).
	var want []byte
	want = append(want, 1)
	want = append(want, make([]byte, 64)...)
	want = append(want, 1, 0, 3, 8)
	for _, k := range []solana.PublicKey{auth, programPD, program, buffer, spill, solana.SysVarRentPubkey, solana.SysVarClockPubkey, ProgramID} {
		want = append(want, k[:]...)
	}
	want = append(want, bh[:]...)
	want = append(want, 1, 7, 7, 1, 2, 3, 4, 5, 6, 0, 4, 3, 0, 0, 0)
	if !bytes.Equal(raw, want) {
		t.Fatalf("transaction bytes\n got %x\nwant %x", raw, want)
	}
	back, err := solana.TransactionFromBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	d, err := DecodeUpgradeTransaction(back)
	if err != nil || d != u {
		t.Fatalf("DecodeUpgradeTransaction = %+v, %v; want %+v", d, err, u)
	}

	// The spill defaulting to the authority folds into one account.
	u2, _ := NewUpgrade(program, buffer, auth, auth)
	tx2, _ := u2.Transaction(bh)
	if n := len(tx2.Message.AccountKeys); n != 7 {
		t.Fatalf("spill = authority: %d keys, want 7", n)
	}
	if d, err := DecodeUpgradeTransaction(tx2); err != nil || d != u2 {
		t.Fatalf("spill = authority: %+v, %v", d, err)
	}
}

func TestDecodeUpgradeTransactionRefuses(t *testing.T) {
	auth := authKey.PublicKey()
	u, _ := NewUpgrade(program, buffer, auth, spill)
	build := func(ix solana.Instruction) *solana.Transaction {
		tx, err := solana.NewTransaction([]solana.Instruction{ix}, solana.Hash{1}, solana.TransactionPayer(auth))
		if err != nil {
			t.Fatal(err)
		}
		return tx
	}
	accts := func(edit func([]*solana.AccountMeta)) []*solana.AccountMeta {
		a := u.Accounts()
		edit(a)
		return a
	}
	for name, tc := range map[string]struct {
		tx   *solana.Transaction
		want string
	}{
		"other program":   {build(solana.NewInstruction(solana.SystemProgramID, u.Accounts(), UpgradeData())), "want the upgradeable loader"},
		"other data":      {build(solana.NewInstruction(ProgramID, u.Accounts(), []byte{4, 0, 0, 0})), "want 03000000"},
		"buffer readonly": {build(solana.NewInstruction(ProgramID, accts(func(a []*solana.AccountMeta) { a[2].IsWritable = false }), UpgradeData())), "buffer"},
		"swapped":         {build(solana.NewInstruction(ProgramID, accts(func(a []*solana.AccountMeta) { a[0], a[1] = a[1], a[0] }), UpgradeData())), "not the programdata"},
		"no clock":        {build(solana.NewInstruction(ProgramID, accts(func(a []*solana.AccountMeta) { a[5] = solana.Meta(spill) }), UpgradeData())), "clock sysvar"},
		"six accounts":    {build(solana.NewInstruction(ProgramID, u.Accounts()[:6], UpgradeData())), "6 accounts"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := DecodeUpgradeTransaction(tc.tx); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// authority not a signer: a transaction paid by someone else.
	tx, err := solana.NewTransaction([]solana.Instruction{solana.NewInstruction(ProgramID, accts(func(a []*solana.AccountMeta) { a[6].IsSigner = false }), UpgradeData())},
		solana.Hash{1}, solana.TransactionPayer(spill))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeUpgradeTransaction(tx); err == nil || !strings.Contains(err.Error(), "not a signer") {
		t.Fatalf("authority not a signer: err = %v", err)
	}
}

// FuzzDecodeUpgradeTransaction: any bytes decode or fail, never panic.
func FuzzDecodeUpgradeTransaction(f *testing.F) {
	u, _ := NewUpgrade(program, buffer, authKey.PublicKey(), spill)
	tx, _ := u.Transaction(solana.Hash{9})
	raw, _ := tx.MarshalBinary()
	f.Add(raw)
	f.Add(raw[:100])
	f.Fuzz(func(t *testing.T, b []byte) {
		tx, err := solana.TransactionFromBytes(b)
		if err != nil {
			return
		}
		_, _ = DecodeUpgradeTransaction(tx)
	})
}

// FuzzDecodeTransaction: any bytes decode or fail, never panic, with a
// durable nonce transaction among the seeds.
func FuzzDecodeTransaction(f *testing.F) {
	u, _ := NewUpgrade(program, buffer, authKey.PublicKey(), spill)
	tx, _ := u.NonceTransaction(AdvanceNonce{Account: spill, Authority: authKey.PublicKey()}, solana.Hash{9})
	raw, _ := tx.MarshalBinary()
	f.Add(raw)
	f.Add(raw[:120])
	plain, _ := u.Transaction(solana.Hash{9})
	raw, _ = plain.MarshalBinary()
	f.Add(raw)
	f.Fuzz(func(t *testing.T, b []byte) {
		tx, err := solana.TransactionFromBytes(b)
		if err != nil {
			return
		}
		u, n, err := DecodeTransaction(tx)
		u1, err1 := DecodeUpgradeTransaction(tx)
		if (err1 == nil) != (err == nil && n == nil) || (err1 == nil && u1 != u) {
			t.Fatalf("DecodeUpgradeTransaction = %+v, %v; DecodeTransaction = %+v, %+v, %v", u1, err1, u, n, err)
		}
	})
}
