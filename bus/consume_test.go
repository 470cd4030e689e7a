package bus_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
)

// consumeInBackground runs Consume until the test ends.
func consumeInBackground(t *testing.T, b *bus.Bus, cfg bus.ConsumerConfig, h bus.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := b.Consume(ctx, cfg, h); err != nil {
			t.Errorf("consume %s: %v", cfg.Durable, err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func TestConsumeFiltersRelativeSubjects(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	if _, err := b.Publish(ctx, event("ev")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PublishTo(ctx, "commands.test.ack", event("cmd")); err != nil {
		t.Fatal(err)
	}
	got := make(chan *bus.Delivery, 4)
	consumeInBackground(t, b, bus.ConsumerConfig{Durable: "commands", FilterSubjects: []string{"commands.>"}},
		func(_ context.Context, d *bus.Delivery) error { got <- d; return nil })
	select {
	case d := <-got:
		if d.Event.ID != "cmd" || d.Subject != "commands.test.ack" {
			t.Fatalf("delivery = %q on %q, want cmd on commands.test.ack", d.Event.ID, d.Subject)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("command never delivered")
	}
	select {
	case d := <-got:
		t.Fatalf("unexpected delivery %q on %q", d.Event.ID, d.Subject)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestConsumeRejectsBadConfig(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	nop := func(context.Context, *bus.Delivery) error { return nil }
	for _, cfg := range []bus.ConsumerConfig{
		{},
		{Durable: "x", Stream: "NOPE"},
		{Durable: "x", Stream: "A.B"},
		{Durable: "x", FilterSubjects: []string{"events..x"}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := b.Consume(ctx, cfg, nop); err == nil {
			t.Errorf("consume %+v: want error", cfg)
		}
		cancel()
	}
}

// TestConsumeShardKeyKeepsOrder gives events with different Subjects one
// shard key: they must be handled one at a time, in order.
func TestConsumeShardKeyKeepsOrder(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	const n = 20
	for i := range n {
		ev := event(fmt.Sprint(i))
		ev.Subject = fmt.Sprint("s", i)
		if _, err := b.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu      sync.Mutex
		order   []string
		running int
		overlap bool
	)
	consumeInBackground(t, b, bus.ConsumerConfig{
		Durable:  "ordered",
		Shards:   4,
		ShardKey: func(bus.Event) string { return "one" },
	}, func(_ context.Context, d *bus.Delivery) error {
		mu.Lock()
		running++
		overlap = overlap || running > 1
		mu.Unlock()
		time.Sleep(time.Millisecond)
		mu.Lock()
		running--
		order = append(order, d.Event.ID)
		mu.Unlock()
		return nil
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		done := len(order) == n
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("events not all handled")
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprint(i)
	}
	if overlap || !slices.Equal(order, want) {
		t.Fatalf("overlap=%v order=%v; want one at a time in publish order", overlap, order)
	}
}

func TestConsumeStoppedBeforeStartIsNotAFailure(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Consume(ctx, bus.ConsumerConfig{Durable: "x"}, func(context.Context, *bus.Delivery) error { return nil }); err != nil {
		t.Fatalf("consume with a cancelled context: %v, want nil", err)
	}
}
