package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/signal"
)

// TestLeaseExpiryFindsTheInterruptedPost: a worker took the lease, Slack
// posted the card, and the worker died before recording the ts. The next
// worker waits out the lease, then finds the card instead of posting again.
func TestLeaseExpiryFindsTheInterruptedPost(t *testing.T) {
	ctx := context.Background()
	e, chat, clk := newInternal(t)
	rec, _ := apply1(nil, sig("1", "firing", t0), t0)
	rec.Key = "inc.test"
	if err := e.store(ctx, rec.Key, rec, 0); err != nil {
		t.Fatal(err)
	}
	del, rev, _ := e.loadDelivery(ctx, SinkChat, rec)
	l, _, err := e.acquire(ctx, SinkChat, rec.ID, "post", del, rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chat.PostCard(ctx, "#x", notify.Incident{ID: rec.ID}, notify.CardTag{IncidentID: rec.ID, Nonce: l.Nonce}); err != nil {
		t.Fatal(err)
	}
	// The worker dies here. Within the lease another waits.
	job := jobFor(rec)
	if err := e.HandleChat(ctx, job); err == nil || chat.posts != 1 {
		t.Fatalf("inside the lease: err=%v posts=%d, want a retry and no post", err, chat.posts)
	}
	clk.add(e.cfg.EffectTimeout + 6*time.Second)
	if err := e.HandleChat(ctx, job); err != nil {
		t.Fatal(err)
	}
	if chat.posts != 1 || chat.finds != 1 {
		t.Fatalf("after the lease: %d posts, %d finds; want the card found, not posted again", chat.posts, chat.finds)
	}
	d, _, _ := e.loadDelivery(ctx, SinkChat, rec)
	if d.TS != "1.000001" || d.Lease != nil || d.CardVersion != rec.Version {
		t.Fatalf("delivery after recovery: %+v", d)
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }

// countingChat posts to nowhere and finds what it posted.
type countingChat struct {
	posts, finds int
	tags         []notify.CardTag
}

func (c *countingChat) PostCard(_ context.Context, ch string, _ notify.Incident, tag notify.CardTag) (notify.CardRef, error) {
	c.posts++
	c.tags = append(c.tags, tag)
	return notify.CardRef{Channel: ch, TS: fmt.Sprintf("1.%06d", c.posts)}, nil
}

func (c *countingChat) FindCard(_ context.Context, ch string, tag notify.CardTag, _ time.Time) (notify.CardRef, bool, error) {
	c.finds++
	for i, t := range c.tags {
		if t.IncidentID == tag.IncidentID {
			return notify.CardRef{Channel: ch, TS: fmt.Sprintf("1.%06d", i+1)}, true, nil
		}
	}
	return notify.CardRef{}, false, nil
}

func (c *countingChat) UpdateCard(context.Context, notify.CardRef, notify.Incident) error { return nil }
func (c *countingChat) Reply(context.Context, notify.CardRef, notify.Incident, notify.Update) error {
	return nil
}
func (c *countingChat) Page(context.Context, notify.Page) error { return nil }

type oneRunbook struct{}

func (oneRunbook) Name() string                                   { return "rb" }
func (oneRunbook) Severity(map[string]string) notify.Severity     { return notify.SeverityWarning }
func (oneRunbook) Route(notify.Severity) Route                    { return Route{Channel: "#x"} }
func (oneRunbook) Escalation() []notify.EscalationLevel           { return nil }
func (oneRunbook) Render(context.Context, signal.Signal) Rendered { return Rendered{Title: "t"} }
func (oneRunbook) Match(signal.Signal) (Runbook, bool)            { return oneRunbook{}, true }
func (oneRunbook) Get(string) (Runbook, bool)                     { return oneRunbook{}, true }

// openStore opens an embedded bus with the engine's buckets and streams.
func openStore(t *testing.T) (*bus.Bus, map[string]bus.KV) {
	t.Helper()
	ctx := context.Background()
	cfg := bus.DefaultConfig()
	cfg.DataDir = t.TempDir()
	b, err := bus.Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	kvs := map[string]bus.KV{}
	for _, s := range Buckets {
		if kvs[s.Name], err = b.EnsureBucket(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range Streams {
		if err := b.EnsureStream(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	return b, kvs
}

func newInternal(t *testing.T) (*Engine, *countingChat, *fakeClock) {
	t.Helper()
	b, kvs := openStore(t)
	chat := &countingChat{}
	clk := &fakeClock{t: t0}
	e, err := New(DefaultConfig(), Deps{Catalog: oneRunbook{}, Decoders: input.NewDecoders(),
		Incidents: kvs[BucketIncidents], IDs: kvs[BucketIDs], Deliveries: kvs[BucketDeliveries],
		Chat: chat, Pager: chat, Publisher: b, Scheduler: b, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return e, chat, clk
}

func jobFor(r *Record) *bus.Delivery {
	return &bus.Delivery{Event: bus.Event{ID: "job", Source: "engine", Type: jobEventType, Subject: r.Key, Data: []byte(r.Key)}, Attempt: 1}
}

// TestLeaseLeavesRoomForACardWithin20sOfARestart: a worker killed the
// moment it took a post's lease holds the incident's chat until the lease
// ends, and its job comes back after the same time (the consumer's ack
// wait). With the defaults that must leave the restarted bot time to look
// for the card and post it within the 20 s issue 7 requires.
func TestLeaseLeavesRoomForACardWithin20sOfARestart(t *testing.T) {
	ctx := context.Background()
	e, _, clk := newInternal(t)
	rec, _ := apply1(nil, sig("1", "firing", t0), t0)
	rec.Key = "inc.test"
	del, rev, _ := e.loadDelivery(ctx, SinkChat, rec)
	l, _, err := e.acquire(ctx, SinkChat, rec.ID, "post", del, rev)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l.Until.Sub(l.Since), e.cfg.EffectTimeout+LeaseMargin; got != want || !l.Since.Equal(clk.now()) {
		t.Fatalf("lease of %s from %s, want %s from now", got, l.Since, want)
	}
	if held := DefaultConfig().EffectTimeout + LeaseMargin; held > 18*time.Second {
		t.Fatalf("a dead worker holds a post for %s by default; the card could miss 20s after a restart", held)
	}
}

// writeFailingKV fails every write while full is set: a disk that filled
// up between a sink call and the record of it.
type writeFailingKV struct {
	bus.KV
	full *atomic.Bool
}

var errDiskFull = errors.New("write: no space left on device")

func (k writeFailingKV) Put(ctx context.Context, key string, v []byte) (uint64, error) {
	if k.full.Load() {
		return 0, errDiskFull
	}
	return k.KV.Put(ctx, key, v)
}

func (k writeFailingKV) Create(ctx context.Context, key string, v []byte, o ...bus.KVOption) (uint64, error) {
	if k.full.Load() {
		return 0, errDiskFull
	}
	return k.KV.Create(ctx, key, v, o...)
}

func (k writeFailingKV) Update(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	if k.full.Load() {
		return 0, errDiskFull
	}
	return k.KV.Update(ctx, key, v, rev)
}

// fillingChat posts and pages, then the disk fills.
type fillingChat struct {
	countingChat
	full  *atomic.Bool
	pages int
}

func (c *fillingChat) PostCard(ctx context.Context, ch string, inc notify.Incident, tag notify.CardTag) (notify.CardRef, error) {
	ref, err := c.countingChat.PostCard(ctx, ch, inc, tag)
	if c.posts == 1 {
		c.full.Store(true)
	}
	return ref, err
}

func (c *fillingChat) Page(context.Context, notify.Page) error {
	c.pages++
	if c.pages == 1 {
		c.full.Store(true)
	}
	return nil
}

type pagingRunbook struct{ oneRunbook }

func (pagingRunbook) Severity(map[string]string) notify.Severity { return notify.SeverityCritical }
func (pagingRunbook) Route(notify.Severity) Route                { return Route{Channel: "#x", Page: true} }
func (pagingRunbook) Match(signal.Signal) (Runbook, bool)        { return pagingRunbook{}, true }
func (pagingRunbook) Get(string) (Runbook, bool)                 { return pagingRunbook{}, true }

// TestAFailedRecordAfterASendDoesNotSendAgain: the card is posted and the
// page triggered, then the disk fills before either is recorded. Every
// retry while the disk is full fails without calling Slack or PagerDuty
// (the lease cannot even be taken); once space returns, the card is found
// rather than posted again. (Measured before leases: a second card and
// 13 triggers of one page.) A page can be triggered at most once more,
// after its lease ends: the Events API cannot be asked whether a trigger
// arrived, and PagerDuty folds a trigger with the same dedup key.
func TestAFailedRecordAfterASendDoesNotSendAgain(t *testing.T) {
	ctx := context.Background()
	b, kvs := openStore(t)
	full := &atomic.Bool{}
	for name, kv := range kvs {
		kvs[name] = writeFailingKV{KV: kv, full: full}
	}
	sinks := &fillingChat{full: full}
	clk := &fakeClock{t: t0}
	e, err := New(DefaultConfig(), Deps{Catalog: pagingRunbook{}, Decoders: input.NewDecoders(),
		Incidents: kvs[BucketIncidents], IDs: kvs[BucketIDs], Deliveries: kvs[BucketDeliveries],
		Chat: sinks, Pager: sinks, Publisher: b, Scheduler: b, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	_, job := storeCritical(t, e)
	if err := e.HandleChat(ctx, job); err == nil {
		t.Fatal("chat: the card's record failed, yet no retry")
	}
	full.Store(false) // room for the page's lease, then it fills again
	if err := e.HandlePager(ctx, job); err == nil {
		t.Fatal("pager: the page's record failed, yet no retry")
	}
	for i := range 12 {
		clk.add(time.Second)
		if err := e.HandleChat(ctx, job); err == nil {
			t.Fatalf("chat retry %d on a full disk: nil error, want a retry", i)
		}
		if err := e.HandlePager(ctx, job); err == nil {
			t.Fatalf("pager retry %d on a full disk: nil error, want a retry", i)
		}
	}
	if sinks.posts != 1 || sinks.pages != 1 {
		t.Fatalf("while the disk was full: %d posts, %d pages; want 1 and 1", sinks.posts, sinks.pages)
	}
	full.Store(false)
	clk.add(e.cfg.EffectTimeout + LeaseMargin + time.Second)
	for range 3 {
		if err := e.HandleChat(ctx, job); err != nil {
			t.Fatalf("chat once space returned: %v", err)
		}
		if err := e.HandlePager(ctx, job); err != nil {
			t.Fatalf("pager once space returned: %v", err)
		}
	}
	if sinks.posts != 1 || sinks.finds < 1 {
		t.Fatalf("once space returned: %d posts, %d finds; want the card found, not posted again", sinks.posts, sinks.finds)
	}
	if sinks.pages > 2 {
		t.Fatalf("%d triggers of one page; want at most one more after its lease ended", sinks.pages)
	}
	t.Logf("triggers of the page: %d (1 before the disk filled, %d after its lease ended)", sinks.pages, sinks.pages-1)
}

// unsentChat hands its first post back unsent, or failed with its outcome
// unknown, then posts.
type unsentChat struct {
	countingChat
	first error
}

func (c *unsentChat) PostCard(ctx context.Context, ch string, inc notify.Incident, tag notify.CardTag) (notify.CardRef, error) {
	if err := c.first; err != nil {
		c.first = nil
		return notify.CardRef{}, err
	}
	return c.countingChat.PostCard(ctx, ch, inc, tag)
}

// TestAnUnsentPostIsNotLookedFor: a post the chat handed back unsent (its
// channel's turn was past the call's deadline) is retried without
// looking for its card first, unlike one whose outcome is unknown.
func TestAnUnsentPostIsNotLookedFor(t *testing.T) {
	for _, tt := range []struct {
		name      string
		err       error
		wantFinds int
	}{
		{"unsent", &notify.Error{Op: "post", Retryable: true, RetryAfter: 3 * time.Second,
			Err: fmt.Errorf("channel #x: its turn is 20s away: %w", notify.ErrNotSent)}, 0},
		{"outcome unknown", &notify.Error{Op: "post", Retryable: true, Err: context.DeadlineExceeded}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			e, _, clk := newInternal(t)
			chat := &unsentChat{first: tt.err}
			e.chat = chat
			rec, _ := apply1(nil, sig("1", "firing", t0), t0)
			rec.Key = "inc.test"
			if err := e.store(ctx, rec.Key, rec, 0); err != nil {
				t.Fatal(err)
			}
			job := jobFor(rec)
			if err := e.HandleChat(ctx, job); err == nil {
				t.Fatal("the failed post was not retried")
			}
			d, _, _ := e.loadDelivery(ctx, SinkChat, rec)
			if (d.Lease != nil) != (tt.wantFinds > 0) {
				t.Fatalf("lease after the failed post: %+v", d.Lease)
			}
			clk.add(time.Second)
			if err := e.HandleChat(ctx, job); err != nil {
				t.Fatal(err)
			}
			if chat.posts != 1 || chat.finds != tt.wantFinds {
				t.Fatalf("%d posts, %d finds; want 1 post and %d finds", chat.posts, chat.finds, tt.wantFinds)
			}
		})
	}
}

// outageKV answers the next writes with the bus unavailable, as a client
// does while its NATS node fails over; with applied, the first of them
// lands before its answer is lost.
type outageKV struct {
	bus.KV
	down    *atomic.Int32
	applied bool
}

func (k outageKV) Update(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	if n := k.down.Load(); n > 0 {
		k.down.Add(-1)
		if k.applied && n == 3 {
			if _, err := k.KV.Update(ctx, key, v, rev); err != nil {
				return 0, err
			}
		}
		return 0, fmt.Errorf("record: %w: nats: server is disconnected", bus.ErrUnavailable)
	}
	return k.KV.Update(ctx, key, v, rev)
}

// outagePager triggers, then the bus goes away for three writes.
type outagePager struct {
	countingChat
	down  *atomic.Int32
	pages int
}

func (p *outagePager) Page(context.Context, notify.Page) error {
	p.pages++
	p.down.Store(3)
	return nil
}

// TestARecordRidesOutAFailover: the page is triggered, then the bot's NATS
// node dies and its next writes fail until the client has failed over. The
// record of the trigger waits for the bus instead of leaving the lease to
// expire, so the page is not triggered again when the job comes back.
// (Seen in TestScaleOutCluster: a surviving bot triggered one dedup key
// twice, 17 s apart, after its node was killed.) Whether the first failed
// write landed or not, the record ends up written once the bus answers.
func TestARecordRidesOutAFailover(t *testing.T) {
	for _, applied := range []bool{false, true} {
		t.Run(fmt.Sprintf("applied=%v", applied), func(t *testing.T) {
			ctx := context.Background()
			e, _, clk := newInternal(t)
			down := &atomic.Int32{}
			pager := &outagePager{down: down}
			e.deliveries = outageKV{KV: e.deliveries, down: down, applied: applied}
			e.pager, e.catalog = pager, pagingRunbook{}
			rec, job := storeCritical(t, e)
			if err := e.HandlePager(ctx, job); err != nil {
				t.Fatalf("pager through a failover: %v; want the trigger recorded once the bus answered", err)
			}
			if down.Load() != 0 {
				t.Fatalf("%d failing writes left: the record did not wait for the bus", down.Load())
			}
			del, _, err := e.loadDelivery(ctx, SinkPager, rec)
			if err != nil {
				t.Fatal(err)
			}
			if del.State != notify.PageTrigger || del.Lease != nil {
				t.Fatalf("delivery after the failover: state %q, lease %+v; want trigger recorded and the lease dropped", del.State, del.Lease)
			}
			clk.add(e.cfg.EffectTimeout + LeaseMargin + time.Second)
			if err := e.HandlePager(ctx, job); err != nil {
				t.Fatal(err)
			}
			if pager.pages != 1 {
				t.Fatalf("%d triggers; want 1", pager.pages)
			}
		})
	}
}

// storeCritical stores a new critical incident and returns it with a
// delivery job for it.
func storeCritical(t *testing.T, e *Engine) (*Record, *bus.Delivery) {
	t.Helper()
	rec, _ := apply1(nil, sig("1", "firing", t0), t0)
	rec.Key = "inc.test"
	rec.Severity = notify.SeverityCritical
	if err := e.store(context.Background(), rec.Key, rec, 0); err != nil {
		t.Fatal(err)
	}
	return rec, jobFor(rec)
}
