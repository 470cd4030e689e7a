package bus_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
)

// Two replicas on one NATS: a notice one sends reaches both, in order,
// and only on its topic; once a listener's context ends it hears no more.
func TestNoticesReachEveryReplica(t *testing.T) {
	ctx := context.Background()
	cfg := bus.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:" + strconv.Itoa(freePort(t))
	a, err := bus.Open(ctx, cfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	bcfg := bus.DefaultConfig()
	bcfg.URL = "nats://" + cfg.Listen
	b, err := bus.Open(ctx, bcfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	listen := func(ctx context.Context, on *bus.Bus, topic string) <-chan string {
		got := make(chan string, 16)
		if err := on.OnNotice(ctx, topic, func(d []byte) { got <- string(d) }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	actx, stopA := context.WithCancel(ctx)
	atA, atB := listen(actx, a, "slack.closed"), listen(ctx, b, "slack.closed")
	other := listen(ctx, b, "something.else")
	for _, m := range []string{"one", "two"} {
		if err := a.Notice("slack.closed", []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	for name, ch := range map[string]<-chan string{"the sender": atA, "the other replica": atB} {
		for _, want := range []string{"one", "two"} {
			select {
			case got := <-ch:
				if got != want {
					t.Fatalf("%s heard %q, want %q", name, got, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s did not hear %q", name, want)
			}
		}
	}
	stopA()
	if err := b.Notice("slack.closed", []byte("three")); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-atB:
		if got != "three" {
			t.Fatalf("heard %q, want three", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the other replica did not hear the third notice")
	}
	// Both connections have seen "three" by now if they were to (one
	// server, in order); flush a marker through a's connection to be sure.
	if err := a.Notice("slack.closed", []byte("marker")); err != nil {
		t.Fatal(err)
	}
	if got := <-atB; got != "marker" {
		t.Fatalf("heard %q, want the marker", got)
	}
	select {
	case got := <-atA:
		t.Fatalf("a listener whose context ended heard %q", got)
	case got := <-other:
		t.Fatalf("a listener on another topic heard %q", got)
	default:
	}
	if err := a.Notice("bad topic", nil); err == nil {
		t.Fatal("a topic with a space was accepted")
	}
}
