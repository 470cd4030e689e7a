package actions

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"

	solana "github.com/gagliardetto/solana-go"
)

// TxSigner signs Solana transaction messages with one key: the upgrade
// signer of solana.program_rollback (Env.UpgradeSigner).
type TxSigner interface {
	PublicKey() solana.PublicKey
	Sign(message []byte) (solana.Signature, error)
}

// Keypair is a signing key read from a keypair file. It never prints:
// String, %v, %#v and slog show its public key only.
type Keypair struct{ key ed25519.PrivateKey }

var _ TxSigner = (*Keypair)(nil)

// PublicKey is the key's public half.
func (k *Keypair) PublicKey() solana.PublicKey {
	return solana.PublicKeyFromBytes(k.key.Public().(ed25519.PublicKey))
}

// Sign signs message (a serialized transaction message).
func (k *Keypair) Sign(message []byte) (solana.Signature, error) {
	return solana.SignatureFromBytes(ed25519.Sign(k.key, message)), nil
}

func (k *Keypair) String() string             { return "keypair " + k.PublicKey().String() }
func (k *Keypair) GoString() string           { return k.String() }
func (k *Keypair) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }
func (k *Keypair) LogValue() slog.Value       { return slog.StringValue(k.String()) }
func (k *Keypair) MarshalText() ([]byte, error) {
	return []byte(k.String()), nil
}

// ErrKeypairExposed is returned by LoadKeypairFile for a file that
// others than its owner may read.
var ErrKeypairExposed = errors.New("readable by group or others")

// LoadKeypairFile reads a keypair file as solana-keygen writes it: a JSON
// array of 64 bytes, the ed25519 seed then the public key. It refuses a
// file that is missing (an error matching fs.ErrNotExist), not a regular
// file, readable by group or others (ErrKeypairExposed), or whose two
// halves do not belong together. Errors never quote the file's content.
func LoadKeypairFile(path string) (*Keypair, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keypair file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("keypair file %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("keypair file %s is %w (mode %04o): chmod 600 it", path, ErrKeypairExposed, perm)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keypair file: %w", err)
	}
	defer clear(raw)
	var nums []int
	if err := json.Unmarshal(raw, &nums); err != nil || len(nums) != ed25519.PrivateKeySize {
		clear(nums)
		return nil, fmt.Errorf("keypair file %s is not a JSON array of %d bytes, as solana-keygen writes", path, ed25519.PrivateKeySize)
	}
	b := make([]byte, len(nums))
	for i, n := range nums {
		if n < 0 || n > 255 {
			clear(nums)
			clear(b)
			return nil, fmt.Errorf("keypair file %s holds a number that is not a byte", path)
		}
		b[i] = byte(n)
	}
	clear(nums)
	key := ed25519.NewKeyFromSeed(b[:ed25519.SeedSize])
	match := bytes.Equal(key[ed25519.SeedSize:], b[ed25519.SeedSize:])
	clear(b)
	if !match {
		clear(key)
		return nil, fmt.Errorf("keypair file %s: its public key does not belong to its secret key", path)
	}
	return &Keypair{key: key}, nil
}
