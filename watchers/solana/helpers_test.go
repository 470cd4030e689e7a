package solana

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/rpcview"
	"github.com/incidentbot/incidentbot/signal"
)

// Fixture identities (shared/fixtures/solana/layouts/expected_decodes.json).
const (
	programID    = "AwRs5wYZ96zt2YjQb8oNhrfcmcyHWUNKc8hEtc3mz1hM"
	programData  = "86kHhikiJxy2P7vQuTVKqun6wJG4CqXcRS7hiRb5xE5T"
	multisig     = "2W4k99FPDtkLfVQrz7svQM2mjbx8u7dDxdU4JuXntNxb"
	rogue        = "DUkqws8grdd1hFR8AnfRHehAx2baQ4N6nGJd1ii7xZC4"
	hotWallet    = "2mCSrZ4KcQAzVhVNDiKVYVqQgKRY6maGDP7wczM7PGdp"
	waitDeadline = 10 * time.Second
)

// recorder is an in-memory bus.Publisher that dedupes by event id like
// JetStream does; it can be told to fail the first publishes.
type recorder struct {
	mu       sync.Mutex
	events   []bus.Event
	ids      map[string]bool
	dupes    int
	dupIDs   []string // ids published again, in order
	failNext int
	attempts int
}

func newRecorder() *recorder { return &recorder{ids: map[string]bool{}} }

func (r *recorder) Publish(_ context.Context, ev bus.Event) (bus.PublishResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts++
	if err := ev.Validate(); err != nil {
		return bus.PublishResult{}, err
	}
	if r.failNext > 0 {
		r.failNext--
		return bus.PublishResult{}, bus.ErrUnavailable
	}
	if r.ids[ev.ID] {
		r.dupes++
		r.dupIDs = append(r.dupIDs, ev.ID)
		return bus.PublishResult{Stream: "EVENTS", Duplicate: true}, nil
	}
	r.ids[ev.ID] = true
	r.events = append(r.events, ev)
	return bus.PublishResult{Stream: "EVENTS", Sequence: uint64(len(r.events))}, nil
}

// ofType returns the stored events of a type with their decoded signals.
func (r *recorder) ofType(typ string) ([]bus.Event, []signal.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var evs []bus.Event
	var sigs []signal.Signal
	for _, ev := range r.events {
		if ev.Type == typ {
			s, err := signal.Decode(ev.Data)
			if err != nil {
				panic(err)
			}
			evs = append(evs, ev)
			sigs = append(sigs, s)
		}
	}
	return evs, sigs
}

func (r *recorder) count(typ string) int { evs, _ := r.ofType(typ); return len(evs) }

// testConfig has tiny intervals; callers add endpoints, programs, wallets.
func testConfig() Config {
	c := DefaultConfig()
	c.Health = HealthConfig{Interval: 20 * time.Millisecond, Timeout: 300 * time.Millisecond, UnhealthyAfter: 2, HealthyAfter: 2, MaxSlotLag: 50}
	c.Tx = TxConfig{Window: time.Minute, Threshold: 0.5, MinSamples: 4, PollInterval: time.Hour} // the poll only where a test shortens it
	c.ProgramPollInterval = time.Hour                                                            // tests drive the subscription unless they shorten it
	c.BalanceInterval = 20 * time.Millisecond
	c.Reconnect = BackoffConfig{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond}
	c.PublishRetry = BackoffConfig{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond}
	return c
}

type harness struct {
	w     *Watchers
	pub   *recorder
	kv    *bus.MemKV // the RPC view's bucket
	state *bus.MemKV // the watch state bucket
	reg   *prometheus.Registry
	stop  func()
}

// start builds and runs watchers with a watch state of their own; they
// stop at test cleanup.
func start(t *testing.T, cfg Config, pub *recorder) *harness {
	t.Helper()
	return startWithState(t, cfg, pub, bus.NewMemKV())
}

// startWithState builds and runs watchers on a given watch state, as a
// restarted bot or a second replica does; they stop at test cleanup.
func startWithState(t *testing.T, cfg Config, pub *recorder, state *bus.MemKV) *harness {
	t.Helper()
	if pub == nil {
		pub = newRecorder()
	}
	kv := bus.NewMemKV()
	w, reg, stop := run(t, cfg, pub, rpcview.Store{KV: kv}, state)
	return &harness{w: w, pub: pub, kv: kv, state: state, reg: reg, stop: stop}
}

// run builds and runs watchers on any publisher and buckets; stop (also
// called at test cleanup) cancels them and waits for Run to return.
func run(t *testing.T, cfg Config, pub bus.Publisher, view ViewWriter, state bus.KV) (*Watchers, *prometheus.Registry, func()) {
	t.Helper()
	reg := prometheus.NewRegistry()
	w, err := New(cfg, pub, view, state, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return w, reg, stop
}

// drained reports whether everything queued for the bus (events and the
// state writes behind them) has been handled.
func (w *Watchers) drained() bool {
	w.out.mu.Lock()
	defer w.out.mu.Unlock()
	return len(w.out.queue) == 0
}

// storedProgram reads a program's baseline from a watch state.
func storedProgram(t *testing.T, state bus.KV, id string) (programState, bool) {
	t.Helper()
	e, err := state.Get(context.Background(), programKey(id))
	if errors.Is(err, bus.ErrKeyNotFound) {
		return programState{}, false
	}
	if err != nil {
		t.Fatalf("read program state: %v", err)
	}
	var st programState
	if err := json.Unmarshal(e.Value, &st); err != nil {
		t.Fatalf("decode program state %s: %v", e.Value, err)
	}
	return st, true
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// programDataBytes builds a ProgramData header plus some ELF bytes.
// auth "" writes option 0 but leaves stale key bytes behind, like a
// real revocation does.
func programDataBytes(slot uint64, auth []byte) []byte {
	b := make([]byte, 48)
	binary.LittleEndian.PutUint32(b[0:4], 3)
	binary.LittleEndian.PutUint64(b[4:12], slot)
	if auth != nil {
		b[12] = 1
		copy(b[13:45], auth)
	} else {
		for i := 13; i < 45; i++ {
			b[i] = 0xAB // stale bytes of a revoked authority
		}
	}
	copy(b[45:], []byte{0x7f, 'E', 'L'})
	return b
}

var errBoom = errors.New("boom")
