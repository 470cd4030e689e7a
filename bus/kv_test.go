package bus_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
)

func TestKVKeyTTL(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	kv, err := b.EnsureBucket(ctx, bus.BucketSpec{Name: "locks", History: 1, KeyTTL: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "k", []byte("held"), bus.KeyTTL(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "k", []byte("again")); !errors.Is(err, bus.ErrKeyExists) {
		t.Fatalf("create over a live key: %v, want ErrKeyExists", err)
	}
	if _, err := kv.Create(ctx, "forever", []byte("v")); err != nil {
		t.Fatalf("create without a ttl in a KeyTTL bucket: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := kv.Get(ctx, "k")
		if errors.Is(err, bus.ErrKeyNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("key with a 1s ttl still there after 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := kv.Create(ctx, "k", []byte("new")); err != nil {
		t.Fatalf("create over an expired key: %v", err)
	}
	if _, err := kv.Get(ctx, "forever"); err != nil {
		t.Fatalf("key without a ttl: %v", err)
	}
	if _, err := kv.Create(ctx, "short", []byte("v"), bus.KeyTTL(10*time.Millisecond)); err == nil {
		t.Fatal("ttl under a second: want error")
	}

	plain, err := b.EnsureBucket(ctx, bus.BucketSpec{Name: "plain", History: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Create(ctx, "k", []byte("v"), bus.KeyTTL(time.Minute)); err == nil {
		t.Fatal("key ttl on a bucket without KeyTTL: want error, not a key that never expires")
	} else {
		t.Logf("key ttl on a plain bucket: %v", err)
	}
}

// TestKVConditionalPurge: a Delete with IfRevision leaves a key written
// since alone; with Purge it drops the key's history.
func TestKVConditionalPurge(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	for _, kv := range []bus.KV{mustBucket(t, b), bus.NewMemKV()} {
		rev, err := kv.Put(ctx, "k", []byte("1"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, "k", []byte("2")); err != nil {
			t.Fatal(err)
		}
		if err := kv.Delete(ctx, "k", bus.IfRevision(rev), bus.Purge()); !errors.Is(err, bus.ErrRevisionMismatch) {
			t.Fatalf("%T: delete at a stale revision: %v; want ErrRevisionMismatch", kv, err)
		}
		ent, err := kv.Get(ctx, "k")
		if err != nil || string(ent.Value) != "2" {
			t.Fatalf("%T: after a refused delete: %q, %v; want 2", kv, ent.Value, err)
		}
		if err := kv.Delete(ctx, "k", bus.IfRevision(ent.Revision), bus.Purge()); err != nil {
			t.Fatalf("%T: delete at the current revision: %v", kv, err)
		}
		if _, err := kv.Get(ctx, "k"); !errors.Is(err, bus.ErrKeyNotFound) {
			t.Fatalf("%T: after the purge: %v; want not found", kv, err)
		}
	}
}

func mustBucket(t *testing.T, b *bus.Bus) bus.KV {
	t.Helper()
	kv, err := b.EnsureBucket(context.Background(), bus.BucketSpec{Name: "purge", History: 5})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// TestKVWatch: a watch sees the current entries, then Ready, then every
// change in order, deletions included.
func TestKVWatch(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	for _, kv := range []bus.KV{mustBucket(t, b), bus.NewMemKV()} {
		if _, err := kv.Put(ctx, "a", []byte("1")); err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, "b", []byte("1")); err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, "a", []byte("2")); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithCancel(ctx)
		seen := make(chan string, 100)
		done := make(chan error, 1)
		go func() {
			done <- kv.Watch(wctx, func(c bus.Change) {
				switch {
				case c.Ready:
					seen <- "ready"
				case c.Deleted:
					seen <- "-" + c.Key
				default:
					seen <- c.Key + "=" + string(c.Value)
				}
			})
		}()
		next := func() string {
			select {
			case s := <-seen:
				return s
			case err := <-done:
				t.Fatalf("%T: watch ended: %v", kv, err)
			case <-time.After(10 * time.Second):
				t.Fatalf("%T: watch saw nothing", kv)
			}
			return ""
		}
		var got []string
		for range 3 {
			got = append(got, next())
		}
		if want := "[b=1 a=2 ready]"; fmt.Sprint(got) != want {
			t.Fatalf("%T: watch began with %v, want %s", kv, got, want)
		}
		if _, err := kv.Put(ctx, "b", []byte("2")); err != nil {
			t.Fatal(err)
		}
		if err := kv.Delete(ctx, "a", bus.Purge()); err != nil {
			t.Fatal(err)
		}
		if got := []string{next(), next()}; fmt.Sprint(got) != "[b=2 -a]" {
			t.Fatalf("%T: watch saw %v, want [b=2 -a]", kv, got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("%T: watch ended with %v", kv, err)
		}
	}
}

// TestKVWatchEmpty: on an empty bucket a watch is ready at once, then
// sees what is stored.
func TestKVWatchEmpty(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, kv := range []bus.KV{mustBucket(t, b), bus.NewMemKV()} {
		seen := make(chan bus.Change, 10)
		go func() { _ = kv.Watch(ctx, func(c bus.Change) { seen <- c }) }()
		for _, want := range []string{"ready", "k"} {
			select {
			case c := <-seen:
				if got := map[bool]string{true: "ready", false: c.Key}[c.Ready]; got != want {
					t.Fatalf("%T: watch saw %q, want %q", kv, got, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%T: watch saw nothing, want %q", kv, want)
			}
			if want == "ready" {
				if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}
