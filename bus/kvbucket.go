package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// kvBucket adapts a JetStream KeyValue bucket to KV.
type kvBucket struct {
	kv jetstream.KeyValue
	js jetstream.JetStream
}

func (k kvBucket) Get(ctx context.Context, key string) (Entry, error) {
	e, err := k.kv.Get(ctx, key)
	if err != nil {
		return Entry{}, fmt.Errorf("kv get %s: %w", key, mapKVErr(err))
	}
	return Entry{Key: key, Value: e.Value(), Revision: e.Revision()}, nil
}

func (k kvBucket) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := k.kv.Put(ctx, key, value)
	if err != nil {
		return 0, fmt.Errorf("kv put %s: %w", key, mapKVErr(err))
	}
	return rev, nil
}

func (k kvBucket) Create(ctx context.Context, key string, value []byte, opts ...KVOption) (uint64, error) {
	o, err := applyKVOptions(opts)
	if err != nil {
		return 0, fmt.Errorf("kv create %s: %w", key, err)
	}
	var copts []jetstream.KVCreateOpt
	if o.ttl > 0 {
		copts = append(copts, jetstream.KeyTTL(o.ttl))
	}
	rev, err := k.kv.Create(ctx, key, value, copts...)
	if err != nil {
		return 0, fmt.Errorf("kv create %s: %w", key, mapKVErr(err))
	}
	return rev, nil
}

func (k kvBucket) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	nrev, err := k.kv.Update(ctx, key, value, rev)
	if err != nil {
		return 0, fmt.Errorf("kv update %s: %w", key, mapKVErr(err))
	}
	return nrev, nil
}

func (k kvBucket) Delete(ctx context.Context, key string, opts ...KVOption) error {
	o, err := applyKVOptions(opts)
	if err != nil {
		return fmt.Errorf("kv delete %s: %w", key, err)
	}
	var dopts []jetstream.KVDeleteOpt
	if o.rev > 0 {
		dopts = append(dopts, jetstream.LastRevision(o.rev))
	}
	if o.purge {
		err = k.kv.Purge(ctx, key, dopts...)
	} else {
		err = k.kv.Delete(ctx, key, dopts...)
	}
	if err != nil {
		return fmt.Errorf("kv delete %s: %w", key, mapKVErr(err))
	}
	return nil
}

func (k kvBucket) Keys(ctx context.Context) ([]string, error) {
	keys, err := k.kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kv keys: %w", mapKVErr(err))
	}
	return slices.DeleteFunc(keys, func(k string) bool { return k == probeKey }), nil
}

// watchBatch bounds what a watch holds unread: the current entries come
// through a pull consumer, watchBatch at a time, so a bucket of large
// values is never buffered whole in the client (the KeyValue watcher's
// push consumer queued every record of the bucket at once).
const watchBatch = 64

func (k kvBucket) Watch(ctx context.Context, fn func(Change)) error {
	name := k.kv.Bucket()
	prefix := "$KV." + name + "."
	cons, err := k.js.OrderedConsumer(ctx, "KV_"+name, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{prefix + ">"},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return fmt.Errorf("kv watch %s: %w", name, mapErr(err))
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(watchBatch))
	if err != nil {
		return fmt.Errorf("kv watch %s: %w", name, mapErr(err))
	}
	defer it.Stop()
	defer context.AfterFunc(ctx, it.Stop)()
	ready := false
	if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
		ready = true
		fn(Change{Ready: true})
	}
	for {
		m, err := it.Next()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("kv watch %s: %w", name, mapErr(err))
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("kv watch %s: %w", name, err)
		}
		if key := strings.TrimPrefix(m.Subject(), prefix); key != probeKey {
			h := m.Headers()
			deleted := h.Get("KV-Operation") != "" || h.Get(jetstream.MarkerReasonHeader) != ""
			fn(Change{Entry: Entry{Key: key, Value: m.Data(), Revision: md.Sequence.Stream}, Deleted: deleted})
		}
		if !ready && md.NumPending == 0 {
			ready = true
			fn(Change{Ready: true})
		}
	}
}

func mapKVErr(err error) error {
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return fmt.Errorf("%w: %w", ErrKeyNotFound, err)
	// Revision mismatch first: ErrKeyExists shares a server error code
	// with CAS conflicts.
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return fmt.Errorf("%w: %w", ErrRevisionMismatch, err)
	case errors.Is(err, jetstream.ErrKeyExists):
		return fmt.Errorf("%w: %w", ErrKeyExists, err)
	}
	return mapErr(err)
}
