package bus_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/incidentbot/incidentbot/bus"
)

// rawJetStream starts a bare embedded server on dir, the way the bus does,
// and returns a JetStream client and a function that stops both.
func rawJetStream(t *testing.T, dir string) (jetstream.JetStream, func()) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{JetStream: true, StoreDir: dir, DontListen: true, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("raw server not ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js, func() {
		nc.Close()
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// TestOpenUpgradesEventsStream opens a data dir whose events stream was
// created by an older bot (events.> only) and checks that Open adds the
// commands subjects while keeping what is stored.
func TestOpenUpgradesEventsStream(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	js, stop := rawJetStream(t, dir)
	// The configuration the bot created before commands shared the stream.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        "INCIDENTBOT_EVENTS",
		Description: "incidentbot events from every source",
		Subjects:    []string{"incidentbot.events.>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      7 * 24 * time.Hour,
		Duplicates:  time.Hour,
		Replicas:    1,
	}); err != nil {
		t.Fatal(err)
	}
	old := &nats.Msg{Subject: "incidentbot.events.test.thing", Header: nats.Header{}, Data: []byte(`{}`)}
	old.Header.Set("ce-specversion", "1.0")
	old.Header.Set("ce-id", "old")
	old.Header.Set("ce-source", "test")
	old.Header.Set("ce-type", "test.thing")
	if _, err := js.PublishMsg(ctx, old, jetstream.WithMsgID("old")); err != nil {
		t.Fatal(err)
	}
	stop()

	b := openBus(t, dir)
	if n, err := b.EventsStored(ctx); err != nil || n != 1 {
		t.Fatalf("events stored after upgrade = %d, %v; want 1", n, err)
	}
	again, err := b.Publish(ctx, event("old"))
	if err != nil || !again.Duplicate {
		t.Fatalf("republish of a stored id after upgrade = %+v, %v; want duplicate", again, err)
	}
	cmd := event("cmd-1")
	if res, err := b.PublishTo(ctx, "commands.test.ack", cmd); err != nil || res.Stream != "INCIDENTBOT_EVENTS" || res.Duplicate {
		t.Fatalf("publish a command after upgrade = %+v, %v; want stored on the events stream", res, err)
	}
	b.Close()

	js, stop = rawJetStream(t, dir)
	defer stop()
	s, err := js.Stream(ctx, "INCIDENTBOT_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	got := s.CachedInfo().Config.Subjects
	want := []string{"incidentbot.events.>", "incidentbot.commands.>", "incidentbot.probe.events"}
	if !slices.Equal(got, want) {
		t.Fatalf("subjects after upgrade = %v, want %v", got, want)
	}
}

func TestEnsureStreamIsIdempotent(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	spec := bus.StreamSpec{Name: "JOBS", Description: "test jobs", Subjects: []string{"jobs.>"}, MaxAge: time.Hour, WorkQueue: true}
	for range 2 {
		if err := b.EnsureStream(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	spec.WorkQueue = false
	if err := b.EnsureStream(ctx, spec); err == nil {
		t.Fatal("changing the retention of a stream: want error")
	}
}

func TestEnsureStreamRejectsBadSpecs(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	for _, spec := range []bus.StreamSpec{
		{Name: "", Subjects: []string{"x.>"}},
		{Name: "A.B", Subjects: []string{"x.>"}},
		{Name: "X"},
		{Name: "X", Subjects: []string{"x..y"}},
		{Name: "X", Subjects: []string{"x.>.y"}},
		{Name: "X", Subjects: []string{"x.a*"}},
		{Name: "X", Subjects: []string{"x y"}},
		{Name: "X", Subjects: []string{"events.other"}}, // overlaps the events stream
	} {
		if err := b.EnsureStream(context.Background(), spec); err == nil {
			t.Errorf("ensure %+v: want error", spec)
		}
	}
}

func TestEnsureBucket(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	spec := bus.BucketSpec{Name: "deliveries", Description: "test", History: 2, TTL: time.Hour}
	kv, err := b.EnsureBucket(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	again, err := b.EnsureBucket(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := again.Get(ctx, "k"); err != nil || string(e.Value) != "v" {
		t.Fatalf("get through the second handle = %+v, %v", e, err)
	}
	if _, err := b.EnsureBucket(ctx, bus.BucketSpec{Name: "a.b"}); err == nil {
		t.Fatal("dotted bucket name: want error")
	}
}

func TestNames(t *testing.T) {
	b := openBus(t, t.TempDir())
	defer b.Close()
	if got := b.Subject("timers.due.x"); got != "incidentbot.timers.due.x" {
		t.Errorf("Subject = %q", got)
	}
	if got := b.StreamName("TIMERS"); got != "INCIDENTBOT_TIMERS" {
		t.Errorf("StreamName = %q", got)
	}
}
