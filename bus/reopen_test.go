package bus_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/incidentbot/incidentbot/bus"
)

// TestConsumeOutlivesItsIterator: the durable consumer is deleted under a
// running Consume (as an operator might, or as a cluster can lose it),
// which ends its message iterator. Consume makes the consumer again and
// goes on: an event published afterwards is handled. (It used to return,
// leaving the replica taking webhooks and handling nothing.)
func TestConsumeOutlivesItsIterator(t *testing.T) {
	cfg := bus.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:" + strconv.Itoa(freePort(t))
	b, err := bus.Open(context.Background(), cfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var handled atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(ctx, bus.ConsumerConfig{Durable: "outlives"}, func(context.Context, *bus.Delivery) error {
			handled.Add(1)
			return nil
		})
	}()
	wait := func(n int32, what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for handled.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (%d handled)", what, handled.Load())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if _, err := b.Publish(ctx, event("before")); err != nil {
		t.Fatal(err)
	}
	wait(1, "the first event")

	nc, err := nats.Connect("nats://" + cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(ctx, b.StreamName("EVENTS"), "outlives"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("Consume returned (%v) when its consumer was deleted", err)
	case <-time.After(500 * time.Millisecond):
	}
	if _, err := b.Publish(ctx, event("after")); err != nil {
		t.Fatal(err)
	}
	wait(2, "the event published after the consumer was deleted")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Consume: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Consume did not return after its context ended")
	}
}
