package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Probing the store the way serving uses it. A JetStream file store that
// fails one write (a full disk) keeps that error for good: the stream
// answers no publish again until the server restarts, even once space
// returns, while the connection and the account info look healthy. So
// readiness is a real write: Probe publishes to the events stream (on its
// own subject, which no consumer reads, then purged) and puts a key in
// each bucket ensured with BucketSpec.Probe (the incident records). Watch probes on a timer and, on an
// embedded server whose data directory has room again but whose store
// still cannot write, returns ErrStoreWedged so the process exits and its
// supervisor restarts it: a restart recovers the store.

// probeKey is the key Probe writes in each bucket; Keys never lists it.
const probeKey = "_probe"

// probeSubject is the events stream's subject for probes (relative).
const probeSubject = "probe.events"

// ErrStoreWedged: the embedded store stopped writing (after a full disk)
// and did not recover though its disk has room again.
var ErrStoreWedged = errors.New("the embedded store stopped writing and did not recover; a restart recovers it")

// Probe writes through the store as serving does: one publish to the
// events stream and one put in each bucket marked Probe, each
// acknowledged. It fails
// with what could not be written.
func (b *Bus) Probe(ctx context.Context) error {
	if err := b.Ready(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	subj := b.Subject(probeSubject)
	ack, err := b.js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: []byte("probe")}, jetstream.WithExpectStream(b.StreamName(streamEvents)))
	if err != nil {
		return fmt.Errorf("write to the events stream: %w", mapErr(err))
	}
	if b.events != nil {
		// Keep nothing: a purge by subject leaves the events alone.
		if err := b.events.Purge(ctx, jetstream.WithPurgeSubject(subj), jetstream.WithPurgeSequence(ack.Sequence+1)); err != nil {
			return fmt.Errorf("purge the events stream's probe: %w", mapErr(err))
		}
	}
	b.mu.Lock()
	buckets := append([]kvBucket(nil), b.buckets...)
	b.mu.Unlock()
	for _, kv := range buckets {
		if _, err := kv.kv.Put(ctx, probeKey, []byte("probe")); err != nil {
			return fmt.Errorf("write to bucket %s: %w", kv.kv.Bucket(), mapErr(err))
		}
	}
	return nil
}

const probeTimeout = 3 * time.Second

// wedgedAfter is how many probes in a row must fail, with room on the
// disk, before the store counts as wedged.
const wedgedAfter = 3

// Watch probes the store every Config.ProbeInterval until ctx ends (then
// nil); onProbe, when set, hears each result. On an embedded server it
// returns ErrStoreWedged, with the last probe's error, once three probes
// in a row failed while the data directory had at least
// Config.MinFreeBytes free. A full disk alone never ends it: webhooks
// answer 503 and Alertmanager retries until space returns.
func (b *Bus) Watch(ctx context.Context, onProbe func(error)) error {
	t := time.NewTicker(b.cfg.ProbeInterval)
	defer t.Stop()
	failed := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := b.Probe(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if onProbe != nil {
			onProbe(err)
		}
		if err == nil {
			if failed > 0 {
				b.log.Info("the store writes again", "after_failed_probes", failed)
			}
			failed = 0
			continue
		}
		if b.srv == nil {
			b.log.Warn("store probe failed", "err", err)
			continue
		}
		free, ferr := freeBytes(b.cfg.DataDir)
		switch {
		case ferr != nil:
			b.log.Warn("store probe failed; free space unknown", "err", err, "statfs_err", ferr)
			continue
		case free < uint64(b.cfg.MinFreeBytes):
			failed = 0
			b.log.Error("the store cannot write: the disk is full; webhooks answer 503 until space returns",
				"data_dir", b.cfg.DataDir, "free_bytes", free, "err", err)
			continue
		}
		failed++
		b.log.Error("the store cannot write though the disk has room", "data_dir", b.cfg.DataDir,
			"free_bytes", free, "failed_probes", failed, "err", err)
		if failed >= wedgedAfter {
			return fmt.Errorf("%w (%d bytes free on %s): %w", ErrStoreWedged, free, b.cfg.DataDir, err)
		}
	}
}
