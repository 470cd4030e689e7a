package bus

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// KV is a key-value bucket with revisions, for state that must survive
// restarts and be shared by replicas: incidents, delivery records, the
// watchers' live RPC view. Writes that must not clobber another replica's
// use Create (only if absent) or Update (compare-and-set on revision).
type KV interface {
	// Get returns the entry for key, or ErrKeyNotFound.
	Get(ctx context.Context, key string) (Entry, error)
	// Put stores value unconditionally and returns the new revision.
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	// Create stores value only if key does not exist (or was deleted, or
	// expired); otherwise it returns ErrKeyExists. Options such as KeyTTL
	// refine it.
	Create(ctx context.Context, key string, value []byte, opts ...KVOption) (uint64, error)
	// Update stores value only if the key's current revision is rev;
	// otherwise it returns ErrRevisionMismatch.
	Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error)
	// Delete removes key. With IfRevision it removes it only while its
	// revision is still rev (else ErrRevisionMismatch); with Purge it also
	// drops the key's history, to reclaim the space.
	Delete(ctx context.Context, key string, opts ...KVOption) error
	// Keys lists the keys in the bucket (empty, not an error, when none).
	Keys(ctx context.Context) ([]string, error)
	// Watch calls fn with every key's current entry, then once with
	// Change.Ready, then with every change as it is stored, in order,
	// until ctx ends (then it returns nil). fn runs on one goroutine and
	// must not block long: changes queue behind it.
	Watch(ctx context.Context, fn func(Change)) error
}

// Change is one entry seen by Watch: a value stored, or (Deleted) a key
// deleted or purged. Ready marks the end of the current entries and
// carries no entry.
type Change struct {
	Entry
	Deleted bool
	Ready   bool
}

// Entry is one stored value and its revision.
type Entry struct {
	// Key is the entry's key.
	Key string
	// Value is the stored value.
	Value []byte
	// Revision is the value's revision, for Update.
	Revision uint64
}

// KV errors, matched with errors.Is.
var (
	ErrKeyNotFound      = errors.New("key not found")
	ErrKeyExists        = errors.New("key exists")
	ErrRevisionMismatch = errors.New("revision mismatch")
)

// KVOption refines a KV write. Options check their arguments: a bad one
// makes the write fail before anything is sent.
type KVOption func(*kvOptions) error

type kvOptions struct {
	ttl   time.Duration
	rev   uint64
	purge bool
}

// IfRevision makes a Delete conditional: only while the key's revision is
// still rev, so a value written since is never lost.
func IfRevision(rev uint64) KVOption {
	return func(o *kvOptions) error {
		if rev == 0 {
			return errors.New("if revision: 0 is no revision")
		}
		o.rev = rev
		return nil
	}
}

// Purge makes a Delete drop the key's history too (a KV purge), so the
// space its revisions took is reclaimed.
func Purge() KVOption {
	return func(o *kvOptions) error { o.purge = true; return nil }
}

// KeyTTL makes the key created expire after d (at least one second): it
// then reads as not found and Create succeeds on it again. The bucket must
// have been ensured with BucketSpec.KeyTTL.
func KeyTTL(d time.Duration) KVOption {
	return func(o *kvOptions) error {
		if d < time.Second {
			return fmt.Errorf("key ttl %v: must be at least 1s", d)
		}
		o.ttl = d
		return nil
	}
}

func applyKVOptions(opts []KVOption) (kvOptions, error) {
	var o kvOptions
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}
