package bus_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/incidentbot/incidentbot/bus"
)

// TestPublishWithoutDeadlineWaitsPublishTimeout: a publish whose context
// has no deadline and that nobody acknowledges (a subscriber that never
// answers stands where a stream would) gives up after PublishTimeout with
// an error wrapping ErrUnavailable and context.DeadlineExceeded.
func TestPublishWithoutDeadlineWaitsPublishTimeout(t *testing.T) {
	cfg := bus.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:" + strconv.Itoa(freePort(t))
	cfg.PublishTimeout = 300 * time.Millisecond
	b, err := bus.Open(context.Background(), cfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	nc, err := nats.Connect("nats://" + cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync(b.Subject("silent.x"))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	_, err = b.PublishTo(context.Background(), "silent.x", event("never-acked"))
	if !errors.Is(err, bus.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish nobody acknowledges: %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	if _, err := sub.NextMsg(time.Second); err != nil {
		t.Fatalf("the message never reached the silent subscriber: %v", err)
	}
}
