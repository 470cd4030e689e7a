// Package secret is a string that never prints: tokens, signing secrets,
// routing keys. It formats as "<secret>" in logs, errors and YAML/JSON
// output, and can be read from a file (the *_file convention).
package secret

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// Secret holds a sensitive value.
type Secret string

const redacted = "<secret>"

// String redacts.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString redacts for %#v.
func (s Secret) GoString() string { return s.String() }

// Format redacts for every fmt verb.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// LogValue redacts in slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText redacts in JSON and YAML output.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the value; call it only where the value is sent.
func (s Secret) Reveal() string { return string(s) }

// IsSet reports whether a value is present.
func (s Secret) IsSet() bool { return s != "" }

// Equal compares with a presented value in constant time (hashing first so
// that the length of the secret does not leak either).
func (s Secret) Equal(presented string) bool {
	a := sha256.Sum256([]byte(s))
	b := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1 && s != ""
}

// ErrEmpty is returned by FromFile for a file that is empty or holds only
// whitespace: an empty secret file is a mistake (a Secret not mounted yet, a
// key left blank), never a way to say "no secret".
var ErrEmpty = errors.New("secret file is empty")

// FromFile reads a secret from path, trimming a trailing newline. An empty
// or whitespace-only file is an error wrapping ErrEmpty.
func FromFile(path string) (Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	if strings.TrimSpace(string(b)) == "" {
		return "", fmt.Errorf("%s: %w", path, ErrEmpty)
	}
	return Secret(strings.TrimRight(string(b), "\r\n")), nil
}
