package bus_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openBus(t testing.TB, dir string) *bus.Bus {
	t.Helper()
	cfg := bus.DefaultConfig()
	cfg.DataDir = dir
	b, err := bus.Open(context.Background(), cfg, quietLogger())
	if err != nil {
		t.Fatalf("open bus: %v", err)
	}
	return b
}

func event(id string) bus.Event {
	return bus.Event{ID: id, Source: "test", Type: "test.thing", Subject: "s1", Time: time.Now(), Data: []byte(`{"n":1}`)}
}

func TestPublishDeduplicatesByID(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	first, err := b.Publish(ctx, event("a"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate {
		t.Fatal("first publish reported duplicate")
	}
	again, err := b.Publish(ctx, event("a"))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.Sequence != first.Sequence {
		t.Fatalf("second publish = %+v, want duplicate of seq %d", again, first.Sequence)
	}
	other, err := b.Publish(ctx, event("b"))
	if err != nil {
		t.Fatal(err)
	}
	if other.Duplicate || other.Sequence == first.Sequence {
		t.Fatalf("distinct id = %+v, want a new message", other)
	}
}

func TestPublishRejectsBadEnvelope(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	for _, ev := range []bus.Event{
		{Source: "test", Type: "test.x"},            // no id
		{ID: "1", Source: "te.st", Type: "te.st.x"}, // dotted source
		{ID: "1", Source: "test", Type: "other.x"},  // type not under source
		{ID: "1", Source: "test", Type: "test.>"},   // wildcard
		{ID: "1", Source: "test", Type: "test.x y"}, // space
	} {
		if _, err := b.Publish(context.Background(), ev); err == nil {
			t.Errorf("publish %+v: want error", ev)
		}
	}
}

func TestPublishToSubjects(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	res, err := b.PublishTo(ctx, "commands.test.ack", event("c1"))
	if err != nil || res.Stream != "INCIDENTBOT_EVENTS" {
		t.Fatalf("publish a command = %+v, %v", res, err)
	}
	if again, err := b.PublishTo(ctx, "commands.test.ack", event("c1")); err != nil || !again.Duplicate {
		t.Fatalf("publish the command again = %+v, %v; want duplicate", again, err)
	}
	for _, rel := range []string{"", "commands..x", "commands.>", "commands.*", "commands.a b", ".commands.x", "commands.x."} {
		if _, err := b.PublishTo(ctx, rel, event("c2")); err == nil || errors.Is(err, bus.ErrUnavailable) {
			t.Errorf("publish to %q: %v, want a permanent error", rel, err)
		}
	}
}

func TestPublishWhenBusDownIsUnavailable(t *testing.T) {
	b := openBus(t, t.TempDir())
	b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := b.Publish(ctx, event("a"))
	if !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("publish on closed bus: %v, want ErrUnavailable", err)
	}
	if err := b.Ready(ctx); !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("ready on closed bus: %v, want ErrUnavailable", err)
	}
}

var testBucket = bus.BucketSpec{Name: "things", History: 5}

func TestKVCompareAndSet(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	kv, err := b.EnsureBucket(ctx, testBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "k"); !errors.Is(err, bus.ErrKeyNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	rev, err := kv.Create(ctx, "k", []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "k", []byte("again")); !errors.Is(err, bus.ErrKeyExists) {
		t.Fatalf("second create: %v, want ErrKeyExists", err)
	}
	rev2, err := kv.Update(ctx, "k", []byte("v2"), rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Update(ctx, "k", []byte("stale"), rev); !errors.Is(err, bus.ErrRevisionMismatch) {
		t.Fatalf("stale update: %v, want ErrRevisionMismatch", err)
	}
	e, err := kv.Get(ctx, "k")
	if err != nil || string(e.Value) != "v2" || e.Revision != rev2 {
		t.Fatalf("get = %+v, %v", e, err)
	}
	keys, err := kv.Keys(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys = %v, %v", keys, err)
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	b := openBus(t, dir)
	kv, _ := b.EnsureBucket(ctx, testBucket)
	if _, err := kv.Put(ctx, "k", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	first, _ := b.Publish(ctx, event("once"))
	b.Close()

	b = openBus(t, dir)
	defer b.Close()
	kv, _ = b.KV(ctx, testBucket.Name) // ensured in the first life
	e, err := kv.Get(ctx, "k")
	if err != nil || string(e.Value) != "kept" {
		t.Fatalf("after restart get = %q, %v", e.Value, err)
	}
	again, err := b.Publish(ctx, event("once"))
	if err != nil || !again.Duplicate || again.Sequence != first.Sequence {
		t.Fatalf("after restart publish = %+v, %v; want duplicate", again, err)
	}
}

func TestConsumeAcksRetriesAndTerminates(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, id := range []string{"ok", "flaky", "poison"} {
		if _, err := b.Publish(ctx, event(id)); err != nil {
			t.Fatal(err)
		}
	}
	var okSeen, flakyTries atomic.Int32
	terminated := make(chan string, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := b.Consume(ctx, bus.ConsumerConfig{
			Durable:     "test",
			MaxDeliver:  5,
			OnTerminate: func(_ context.Context, ev bus.Event, _ error) { terminated <- ev.ID },
		}, func(_ context.Context, d *bus.Delivery) error {
			switch d.Event.ID {
			case "ok":
				okSeen.Add(1)
				return nil
			case "flaky":
				if flakyTries.Add(1) < 3 {
					return bus.Retry(errors.New("transient"), 10*time.Millisecond)
				}
				return nil
			default:
				return bus.Poison(errors.New("cannot ever work"))
			}
		})
		if err != nil {
			t.Errorf("consume: %v", err)
		}
	}()
	select {
	case id := <-terminated:
		if id != "poison" {
			t.Fatalf("terminated %q", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("poison event never terminated")
	}
	deadline := time.Now().Add(10 * time.Second)
	for flakyTries.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if flakyTries.Load() != 3 {
		t.Fatalf("flaky tried %d times, want 3", flakyTries.Load())
	}
	cancel()
	<-done
	if okSeen.Load() != 1 {
		t.Fatalf("ok handled %d times, want 1", okSeen.Load())
	}
}

func TestAuditTrail(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	if err := b.Audit(ctx, bus.AuditRecord{Kind: "incident.opened", Incident: "INC-1"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Audit(ctx, bus.AuditRecord{Kind: "bad kind *", Incident: "INC-1"}); err != nil {
		t.Fatal(err)
	}
	recs, err := b.AuditTrail(ctx, 10)
	if err != nil || len(recs) != 2 || recs[0].Kind != "incident.opened" {
		t.Fatalf("trail = %+v, %v", recs, err)
	}
}

// levels records the level of each "event will be retried" line.
type levels struct {
	mu   sync.Mutex
	seen []slog.Level
}

func (h *levels) Enabled(context.Context, slog.Level) bool { return true }
func (h *levels) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "event will be retried" {
		h.mu.Lock()
		h.seen = append(h.seen, r.Level)
		h.mu.Unlock()
	}
	return nil
}
func (h *levels) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *levels) WithGroup(string) slog.Handler      { return h }

// TestLaterIsAWaitNotAFailure: an event handed back with Later comes back
// after its delay like one handed back with Retry, but the wait is logged
// at debug level (a storm makes thousands), a failure at warn.
func TestLaterIsAWaitNotAFailure(t *testing.T) {
	cfg := bus.DefaultConfig()
	cfg.DataDir = t.TempDir()
	h := &levels{}
	b, err := bus.Open(context.Background(), cfg, slog.New(h))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, id := range []string{"waits", "fails"} {
		if _, err := b.Publish(ctx, event(id)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	tries := map[string]int{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = b.Consume(ctx, bus.ConsumerConfig{Durable: "later"}, func(_ context.Context, d *bus.Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			tries[d.Event.ID]++
			if tries[d.Event.ID] > 1 {
				return nil
			}
			if d.Event.ID == "waits" {
				return bus.Later(errors.New("another worker holds it"), 10*time.Millisecond)
			}
			return bus.Retry(errors.New("the sink answered 503"), 10*time.Millisecond)
		})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := tries["waits"] + tries["fails"]
		mu.Unlock()
		if n == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tries %v, want each event twice", tries)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	h.mu.Lock()
	defer h.mu.Unlock()
	slices.Sort(h.seen)
	if !slices.Equal(h.seen, []slog.Level{slog.LevelDebug, slog.LevelWarn}) {
		t.Fatalf("retry lines at levels %v, want one debug (Later) and one warn (Retry)", h.seen)
	}
}
