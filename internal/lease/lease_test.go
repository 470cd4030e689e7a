package lease_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/internal/lease"
)

const ttl = time.Second

func openKV(t *testing.T) bus.KV {
	t.Helper()
	cfg := bus.DefaultConfig()
	cfg.DataDir = t.TempDir()
	b, err := bus.Open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("open bus: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	kv, err := b.EnsureBucket(context.Background(), lease.Bucket)
	if err != nil {
		t.Fatalf("ensure lease bucket: %v", err)
	}
	return kv
}

// work is the leased function: it records who runs and whether two ran at
// once.
type work struct {
	running atomic.Int32
	overlap atomic.Bool
	mu      sync.Mutex
	by      map[string]int // starts per replica
	current atomic.Value   // string: who runs now
}

func newWork() *work { return &work{by: map[string]int{}} }

func (w *work) f(name string) func(context.Context) error {
	return func(ctx context.Context) error {
		if w.running.Add(1) > 1 {
			w.overlap.Store(true)
		}
		w.mu.Lock()
		w.by[name]++
		w.mu.Unlock()
		w.current.Store(name)
		<-ctx.Done()
		w.current.Store("")
		w.running.Add(-1)
		return nil
	}
}

func (w *work) who() string { s, _ := w.current.Load().(string); return s }

type replica struct {
	name   string
	cancel context.CancelFunc
	done   chan error
}

func startReplica(t *testing.T, kv bus.KV, name string, w *work) *replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{name: name, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- lease.Run(ctx, kv, "watcher", name, ttl, w.f(name)) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *replica) stop(t *testing.T) {
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("%s: Run: %v", r.name, err)
		}
		r.done <- nil // stop is idempotent
	case <-time.After(10 * time.Second):
		t.Errorf("%s: Run did not return after cancel", r.name)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOneHolderAndHandover: of three replicas one runs the work; when it
// stops, it releases the lease and another takes over; never two at once.
func TestOneHolderAndHandover(t *testing.T) {
	kv := openKV(t)
	w := newWork()
	rs := map[string]*replica{}
	for _, n := range []string{"a", "b", "c"} {
		rs[n] = startReplica(t, kv, n, w)
	}
	eventually(t, "one replica runs the work", func() bool { return w.who() != "" })
	first := w.who()
	time.Sleep(3 * ttl) // several renewals
	if w.who() != first || w.running.Load() != 1 {
		t.Fatalf("after renewals: %q runs (%d at once), want %q alone", w.who(), w.running.Load(), first)
	}
	rs[first].stop(t)
	eventually(t, "another replica takes over", func() bool { return w.who() != "" && w.who() != first })
	second := w.who()
	rs[second].stop(t)
	eventually(t, "the last replica takes over", func() bool { return w.who() != "" && w.who() != first && w.who() != second })
	if w.overlap.Load() {
		t.Fatal("two replicas ran the work at once")
	}
}

// frozenKV stands for a replica that died without releasing: once frozen,
// every write fails.
type frozenKV struct {
	bus.KV
	frozen atomic.Bool
}

var errDead = errors.New("replica is dead")

func (k *frozenKV) Update(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	if k.frozen.Load() {
		return 0, errDead
	}
	return k.KV.Update(ctx, key, v, rev)
}

func (k *frozenKV) Delete(ctx context.Context, key string, opts ...bus.KVOption) error {
	if k.frozen.Load() {
		return errDead
	}
	return k.KV.Delete(ctx, key, opts...)
}

// TestTakeoverWhenTheHolderDies: a holder that can no longer renew stops
// its work within the TTL, and a peer takes over once it has seen the
// lease unrenewed for a TTL, not before the old holder stopped.
func TestTakeoverWhenTheHolderDies(t *testing.T) {
	kv := openKV(t)
	w := newWork()
	dying := &frozenKV{KV: kv}
	startReplica(t, dying, "a", w)
	eventually(t, "a runs the work", func() bool { return w.who() == "a" })
	startReplica(t, kv, "b", w)
	time.Sleep(2 * ttl)
	if w.who() != "a" {
		t.Fatalf("while a renews, %q runs", w.who())
	}
	dying.frozen.Store(true)
	eventually(t, "b takes over", func() bool { return w.who() == "b" })
	if w.overlap.Load() {
		t.Fatal("b started before a stopped")
	}
}

// TestLostLeaseStopsTheWork: when the lease is overwritten or deleted
// behind the holder's back, its work stops at the next renewal.
func TestLostLeaseStopsTheWork(t *testing.T) {
	for _, how := range []string{"overwritten", "deleted"} {
		t.Run(how, func(t *testing.T) {
			kv := openKV(t)
			w := newWork()
			startReplica(t, kv, "a", w)
			eventually(t, "a runs the work", func() bool { return w.who() == "a" })
			ctx := context.Background()
			var err error
			if how == "deleted" {
				err = kv.Delete(ctx, lease.Key("watcher"))
			} else {
				_, err = kv.Put(ctx, lease.Key("watcher"), []byte("someone else"))
			}
			if err != nil {
				t.Fatal(err)
			}
			// The old work stops at the next renewal; nobody else contends,
			// so a takes the lease again (at once when deleted, after a TTL
			// unrenewed when overwritten) and starts the work anew.
			eventually(t, "a's work restarts", func() bool {
				w.mu.Lock()
				defer w.mu.Unlock()
				return w.by["a"] == 2
			})
			if w.overlap.Load() {
				t.Fatal("the old work still ran when the new one started")
			}
		})
	}
}

// TestReturnsWhatTheWorkReturns: work that ends on its own releases the
// lease and its error comes back.
func TestReturnsWhatTheWorkReturns(t *testing.T) {
	kv := openKV(t)
	boom := errors.New("boom")
	err := lease.Run(context.Background(), kv, "w", "a", ttl, func(context.Context) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Run: %v, want boom", err)
	}
	if _, err := kv.Get(context.Background(), lease.Key("w")); !errors.Is(err, bus.ErrKeyNotFound) {
		t.Fatalf("lease after the work returned: %v, want released", err)
	}
}
