package bus_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
)

// firing is one timer delivery and when the consumer saw it.
type firing struct {
	d  *bus.Delivery
	at time.Time
}

// openTimers opens a bus on dir with the timers stream ensured.
func openTimers(t *testing.T, dir string) *bus.Bus {
	t.Helper()
	b := openBus(t, dir)
	if err := b.EnsureStream(context.Background(), bus.TimersStreamSpec()); err != nil {
		b.Close()
		t.Fatal(err)
	}
	return b
}

// consumeTimers runs loops Consume loops sharing one durable consumer of
// the firings, until the returned stop is called (or the test ends).
func consumeTimers(t *testing.T, b *bus.Bus, loops int) (<-chan firing, func()) {
	t.Helper()
	out := make(chan firing, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, loops)
	for range loops {
		go func() {
			defer func() { done <- struct{}{} }()
			err := b.Consume(ctx, bus.ConsumerConfig{
				Durable:        "timers",
				Stream:         "TIMERS",
				FilterSubjects: []string{"timers.due.>"},
			}, func(_ context.Context, d *bus.Delivery) error {
				out <- firing{d: d, at: time.Now()}
				return nil
			})
			if err != nil {
				t.Errorf("consume timers: %v", err)
			}
		}()
	}
	var stopped bool
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		for range loops {
			<-done
		}
	}
	t.Cleanup(stop)
	return out, stop
}

func timerEvent(id string) bus.Event {
	return bus.Event{
		ID:      id,
		Source:  "test",
		Type:    "test.timer",
		Time:    time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC),
		Subject: "INC-1",
		Data:    []byte(`{"token":7}`),
	}
}

// sameEvent compares envelopes field by field (times by instant).
func sameEvent(a, b bus.Event) bool {
	ct := func(s string) string {
		if s == "" {
			return "application/json"
		}
		return s
	}
	return a.ID == b.ID && a.Source == b.Source && a.Type == b.Type && a.Time.Equal(b.Time) &&
		a.Subject == b.Subject && ct(a.DataContentType) == ct(b.DataContentType) && bytes.Equal(a.Data, b.Data)
}

// collect waits for want firings (failing after timeout), then for quiet
// more, and returns everything that arrived.
func collect(t *testing.T, ch <-chan firing, want int, timeout, quiet time.Duration) []firing {
	t.Helper()
	var got []firing
	deadline := time.After(timeout)
	for len(got) < want {
		select {
		case f := <-ch:
			got = append(got, f)
		case <-deadline:
			t.Fatalf("%d of %d timers fired within %v", len(got), want, timeout)
		}
	}
	extra := time.After(quiet)
	for {
		select {
		case f := <-ch:
			got = append(got, f)
		case <-extra:
			return got
		}
	}
}

// ceilSecond is the time Schedule actually asks the server for.
func ceilSecond(t time.Time) time.Time {
	if s := t.Truncate(time.Second); !s.Equal(t) {
		return s.Add(time.Second)
	}
	return t
}

// TestScheduleFiresOnceAcrossConsumers: one firing reaches exactly one of
// three loops sharing the durable consumer, with the scheduled envelope.
func TestScheduleFiresOnceAcrossConsumers(t *testing.T) {
	t.Parallel()
	b := openTimers(t, t.TempDir())
	defer b.Close()
	fired, _ := consumeTimers(t, b, 3)
	ev := timerEvent("t1")
	at := time.Now().Add(300 * time.Millisecond)
	if err := b.Schedule(context.Background(), "incident.INC-1.ack", at, ev); err != nil {
		t.Fatal(err)
	}
	got := collect(t, fired, 1, 10*time.Second, 1500*time.Millisecond)
	if len(got) != 1 {
		t.Fatalf("timer fired %d times, want once", len(got))
	}
	d := got[0].d
	if !sameEvent(d.Event, ev) {
		t.Fatalf("fired event = %+v, want %+v", d.Event, ev)
	}
	if d.Subject != "timers.due.incident.INC-1.ack" || d.Attempt != 1 {
		t.Fatalf("fired on %q attempt %d", d.Subject, d.Attempt)
	}
	if got[0].at.Before(at) {
		t.Fatalf("fired at %v, before its time %v", got[0].at, at)
	}
	t.Logf("fired %v after its time", got[0].at.Sub(at))
}

// TestScheduleSurvivesRestart: schedules outlive the bus and its embedded
// server, whether their time comes while it is down or after it is back.
func TestScheduleSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	b := openTimers(t, dir)
	fired, stop := consumeTimers(t, b, 1)
	start := time.Now()
	missedAt, pendingAt := start.Add(time.Second), start.Add(4*time.Second)
	if err := b.Schedule(ctx, "missed", missedAt, timerEvent("missed")); err != nil {
		t.Fatal(err)
	}
	if err := b.Schedule(ctx, "pending", pendingAt, timerEvent("pending")); err != nil {
		t.Fatal(err)
	}
	stop()
	b.Close()
	// A timer never fires early, so one closed before its time can only
	// fire from the stored schedule.
	if !time.Now().Before(missedAt) {
		t.Fatalf("closing took until %v after the start: cannot tell a durable schedule from a stored firing", time.Since(start))
	}
	select {
	case f := <-fired:
		t.Fatalf("%s fired before the restart", f.d.Event.ID)
	default:
	}
	time.Sleep(time.Until(ceilSecond(missedAt).Add(500 * time.Millisecond))) // "missed" comes due while down

	reopened := time.Now()
	b = openTimers(t, dir)
	defer b.Close()
	fired, _ = consumeTimers(t, b, 1)
	got := collect(t, fired, 2, 15*time.Second, 1500*time.Millisecond)
	if len(got) != 2 {
		t.Fatalf("%d firings after restart, want 2", len(got))
	}
	for _, f := range got {
		switch f.d.Event.ID {
		case "missed":
			t.Logf("missed timer fired %v after its time, %v after reopening", f.at.Sub(missedAt), f.at.Sub(reopened))
		case "pending":
			if f.at.Before(pendingAt) {
				t.Fatalf("pending fired at %v, before its time", f.at.Sub(start))
			}
			t.Logf("pending timer fired %v after its time", f.at.Sub(pendingAt))
		default:
			t.Fatalf("unexpected firing %q", f.d.Event.ID)
		}
	}
	if got[0].d.Event.ID == got[1].d.Event.ID {
		t.Fatalf("%s fired twice", got[0].d.Event.ID)
	}
}

// TestCancelledScheduleNeverFires uses a later control timer to know the
// scheduler has passed the cancelled one's time.
func TestCancelledScheduleNeverFires(t *testing.T) {
	t.Parallel()
	b := openTimers(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	fired, _ := consumeTimers(t, b, 1)
	now := time.Now()
	if err := b.Schedule(ctx, "x.cancelled", now.Add(500*time.Millisecond), timerEvent("cancelled")); err != nil {
		t.Fatal(err)
	}
	if err := b.Schedule(ctx, "x.control", now.Add(2*time.Second), timerEvent("control")); err != nil {
		t.Fatal(err)
	}
	if err := b.CancelSchedule(ctx, "x.cancelled"); err != nil {
		t.Fatal(err)
	}
	if err := b.CancelSchedule(ctx, "x.never.set"); err != nil {
		t.Fatalf("cancel a timer never set: %v", err)
	}
	got := collect(t, fired, 1, 15*time.Second, time.Second)
	if len(got) != 1 || got[0].d.Event.ID != "control" {
		ids := []string{}
		for _, f := range got {
			ids = append(ids, f.d.Event.ID)
		}
		t.Fatalf("fired %v, want only control", ids)
	}
	if err := b.CancelSchedule(ctx, "x.control"); err != nil {
		t.Fatalf("cancel a timer that fired: %v", err)
	}
}

func TestRescheduleReplacesTime(t *testing.T) {
	t.Parallel()
	b := openTimers(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	fired, _ := consumeTimers(t, b, 1)
	now := time.Now()
	if err := b.Schedule(ctx, "x.moved", now.Add(300*time.Millisecond), timerEvent("first")); err != nil {
		t.Fatal(err)
	}
	later := now.Add(2 * time.Second)
	if err := b.Schedule(ctx, "x.moved", later, timerEvent("second")); err != nil {
		t.Fatal(err)
	}
	got := collect(t, fired, 1, 15*time.Second, 1500*time.Millisecond)
	if len(got) != 1 || got[0].d.Event.ID != "second" {
		t.Fatalf("fired %d times, first %q; want once, the replacement", len(got), got[0].d.Event.ID)
	}
	if got[0].at.Before(later) {
		t.Fatalf("fired %v before the later time", later.Sub(got[0].at))
	}
	t.Logf("rescheduled timer fired %v after its time", got[0].at.Sub(later))
}

func TestSchedulePastTimeFiresPromptly(t *testing.T) {
	t.Parallel()
	b := openTimers(t, t.TempDir())
	defer b.Close()
	fired, _ := consumeTimers(t, b, 1)
	set := time.Now()
	if err := b.Schedule(context.Background(), "x.late", set.Add(-time.Hour), timerEvent("late")); err != nil {
		t.Fatal(err)
	}
	got := collect(t, fired, 1, 10*time.Second, time.Second)
	if len(got) != 1 {
		t.Fatalf("past timer fired %d times, want once", len(got))
	}
	t.Logf("past timer fired %v after Schedule", got[0].at.Sub(set))
}

// TestScheduleFiringPrecision logs how late timers fire; it asserts only
// that none fires early.
func TestScheduleFiringPrecision(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("measures firing delays over a few seconds")
	}
	b := openTimers(t, t.TempDir())
	defer b.Close()
	fired, _ := consumeTimers(t, b, 1)
	now := time.Now()
	want := map[string]time.Time{}
	for i, off := range []time.Duration{200, 450, 700, 950, 1200, 1700, 2300} {
		key := "p" + string(rune('a'+i))
		at := now.Add(off * time.Millisecond)
		want[key] = at
		if err := b.Schedule(context.Background(), key, at, timerEvent(key)); err != nil {
			t.Fatal(err)
		}
	}
	got := collect(t, fired, len(want), 20*time.Second, 0)
	var worst time.Duration
	for _, f := range got {
		at := want[f.d.Event.ID]
		late := f.at.Sub(at)
		if late < 0 {
			t.Errorf("%s fired %v early", f.d.Event.ID, -late)
		}
		worst = max(worst, late)
		t.Logf("%s: asked %s, rounded %s, fired %s: %v late",
			f.d.Event.ID, at.Format("05.000"), ceilSecond(at).Format("05.000"), f.at.Format("05.000"), late)
	}
	t.Logf("worst lateness %v", worst)
}

func TestScheduleRejects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := openTimers(t, t.TempDir())
	defer b.Close()
	soon := time.Now().Add(time.Minute)
	for _, key := range []string{"", "a..b", "a.*", "a.>", "a b", ".a", "a."} {
		if err := b.Schedule(ctx, key, soon, timerEvent("k")); err == nil {
			t.Errorf("schedule key %q: want error", key)
		}
		if err := b.CancelSchedule(ctx, key); err == nil {
			t.Errorf("cancel key %q: want error", key)
		}
	}
	if err := b.Schedule(ctx, "k", soon, bus.Event{ID: "x"}); err == nil {
		t.Error("schedule an invalid event: want error")
	}
	if err := b.Schedule(ctx, "k", time.Now().Add(40*24*time.Hour), timerEvent("far")); err == nil {
		t.Error("schedule past the stream's max age: want error")
	}

	plain := openBus(t, t.TempDir())
	defer plain.Close()
	err := plain.Schedule(ctx, "k", soon, timerEvent("k"))
	if err == nil || !strings.Contains(err.Error(), "TimersStreamSpec") {
		t.Errorf("schedule without the timers stream: %v, want an error naming TimersStreamSpec", err)
	}
}
