package bus_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/internal/testenv"
)

// TestProbeWritesAndLeavesNothing: a probe is a real write to the events
// stream and every bucket, and leaves no event, no key and nothing for a
// consumer of the events stream.
func TestProbeWritesAndLeavesNothing(t *testing.T) {
	ctx := context.Background()
	b := openBus(t, t.TempDir())
	defer b.Close()
	kv, err := b.EnsureBucket(ctx, bus.BucketSpec{Name: "things", History: 1, Probe: true})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := b.Probe(ctx); err != nil {
			t.Fatalf("probe a healthy bus: %v", err)
		}
	}
	if n, err := b.EventsStored(ctx); err != nil || n != 0 {
		t.Fatalf("events stored after probes: %d, %v; want 0", n, err)
	}
	if keys, err := kv.Keys(ctx); err != nil || len(keys) != 0 {
		t.Fatalf("keys after probes: %v, %v; want none", keys, err)
	}
	if _, err := b.Publish(ctx, event("real")); err != nil {
		t.Fatal(err)
	}
	got := make(chan bus.Event, 8)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_ = b.Consume(cctx, bus.ConsumerConfig{Durable: "engine"}, func(_ context.Context, d *bus.Delivery) error {
			got <- d.Event
			return nil
		})
	}()
	select {
	case ev := <-got:
		if ev.ID != "real" {
			t.Fatalf("the events consumer got %q; want only the real event", ev.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the real event was not consumed")
	}
	if err := b.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(ctx, event("real-2")); err != nil {
		t.Fatal(err)
	}
	if ev := <-got; ev.ID != "real-2" {
		t.Fatalf("the events consumer got %q after a probe; want real-2", ev.ID)
	}
}

// TestAFullDiskIsSurvived: on a real file system that fills up, the store
// stops writing and probes fail, but the watch goes on while the disk is
// full (webhooks answer 503 meanwhile). Once space returns the JetStream
// file store stays wedged (it keeps its first write error), so the watch
// ends with ErrStoreWedged, for the process to exit and be restarted; a
// restart on the same data writes again and kept every event.
func TestAFullDiskIsSurvived(t *testing.T) {
	ctx := context.Background()
	disk := testenv.SmallDisk(t, 48<<20)
	cfg := bus.DefaultConfig()
	cfg.DataDir = filepath.Join(disk, "data")
	cfg.ProbeInterval = 100 * time.Millisecond
	cfg.MinFreeBytes = 8 << 20
	cfg.PublishTimeout = 2 * time.Second
	cfg.AuditMaxBytes = 4 << 20 // the server reserves it on the small disk
	b, err := bus.Open(ctx, cfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { b.Close() }()
	if _, err := b.EnsureBucket(ctx, bus.BucketSpec{Name: "things", History: 1, Probe: true}); err != nil {
		t.Fatal(err)
	}
	filler := testenv.Fill(t, disk)
	// Write until the store refuses: the disk is full.
	accepted := 0
	big := event("x")
	big.Data = make([]byte, 256<<10)
	for i := 0; ; i++ {
		big.ID = fmt.Sprint("big-", i)
		if _, err := b.Publish(ctx, big); err != nil {
			break
		}
		accepted++
		if i > 1000 {
			t.Fatal("the store never filled up")
		}
	}
	if err := b.Probe(ctx); err == nil {
		t.Fatal("probe on a full disk: nil, want an error")
	}

	var probes, failed atomic.Int32
	done := make(chan error, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		done <- b.Watch(wctx, func(err error) {
			probes.Add(1)
			if err != nil {
				failed.Add(1)
			}
		})
	}()
	// While the disk is full the watch goes on, however many probes fail.
	for failed.Load() < 4 {
		select {
		case err := <-done:
			t.Fatalf("watch ended while the disk was full: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, bus.ErrStoreWedged) {
			t.Fatalf("watch after space returned: %v; want ErrStoreWedged", err)
		}
		t.Logf("watch: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatalf("watch did not end after space returned (%d probes, %d failed)", probes.Load(), failed.Load())
	}

	// What its supervisor does: start again on the same data.
	b.Close()
	if b, err = bus.Open(ctx, cfg, quietLogger()); err != nil {
		t.Fatal(err)
	}
	if err := b.Probe(ctx); err != nil {
		t.Fatalf("probe after a restart: %v", err)
	}
	if _, err := b.Publish(ctx, event("after")); err != nil {
		t.Fatalf("publish after a restart: %v", err)
	}
	if n, err := b.EventsStored(ctx); err != nil || int(n) != accepted+1 {
		t.Fatalf("events after a restart: %d, %v; want the %d accepted before the disk filled, and 1 after", n, err, accepted)
	}
}

// TestAuditTrailHasASize: past bus.audit_max_bytes the oldest audit
// records go first; the newest are kept.
func TestAuditTrailHasASize(t *testing.T) {
	ctx := context.Background()
	cfg := bus.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.AuditMaxBytes = 64 << 10
	b, err := bus.Open(ctx, cfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	detail := string(make([]byte, 1000))
	for i := range 500 {
		if err := b.Audit(ctx, bus.AuditRecord{Kind: "test.record", Detail: fmt.Sprint(i, detail)}); err != nil {
			t.Fatal(err)
		}
	}
	trail, err := b.AuditTrail(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(trail) == 0 || len(trail) >= 100 {
		t.Fatalf("%d audit records kept of 500 of ~1 KB under a 64 KiB limit", len(trail))
	}
	if last := trail[len(trail)-1].Detail; last[:3] != "499" {
		t.Fatalf("the newest record kept is %.5q; want 499", last)
	}
}
