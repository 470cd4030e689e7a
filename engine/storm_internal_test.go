package engine

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
	nslack "github.com/incidentbot/incidentbot/notify/slack"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
)

// stormDyingKV fails every write of a storm record once dying is set, as
// if the process had died.
type stormDyingKV struct {
	bus.KV
	dying *atomic.Bool
}

func (k stormDyingKV) Update(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	if strings.HasPrefix(key, "storm.") && k.dying.Load() {
		return 0, errors.New("process killed")
	}
	return k.KV.Update(ctx, key, v, rev)
}

// dieAfterStormPost posts, and once a storm card is out the process dies.
type dieAfterStormPost struct {
	notify.Chat
	dying *atomic.Bool
}

func (c dieAfterStormPost) PostCard(ctx context.Context, ch string, inc notify.Incident, tag notify.CardTag) (notify.CardRef, error) {
	ref, err := c.Chat.PostCard(ctx, ch, inc, tag)
	if inc.Storm != nil {
		c.dying.Store(true)
	}
	return ref, err
}

// TestAStormCardPostedBeforeACrashIsNotPostedAgain: the worker posting a
// channel's storm card dies after Slack took it and before the card was
// recorded. Until its lease ends nobody posts; then the next worker finds
// the card in the channel's history and edits it, instead of posting a
// second storm card.
func TestAStormCardPostedBeforeACrashIsNotPostedAgain(t *testing.T) {
	ctx := context.Background()
	b, kvs := openStore(t)
	srv := slacktestutil.Start(t)
	sc := nslack.DefaultConfig()
	sc.Token, sc.APIURL, sc.ChannelRate = "xoxb-test", srv.URL(), 0
	sl, err := nslack.New(sc)
	if err != nil {
		t.Fatal(err)
	}
	dying := &atomic.Bool{}
	clk := &fakeClock{t: t0}
	cfg := DefaultConfig()
	cfg.Storm = StormConfig{Threshold: 1, Window: time.Hour}
	e, err := New(cfg, Deps{Catalog: oneRunbook{}, Decoders: input.NewDecoders(),
		Incidents: kvs[BucketIncidents], IDs: kvs[BucketIDs], Deliveries: stormDyingKV{KV: kvs[BucketDeliveries], dying: dying},
		Chat: dieAfterStormPost{Chat: sl, dying: dying}, Pager: &countingChat{}, Publisher: b, Scheduler: b, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	var recs []*Record
	for i, id := range []string{"INC-AAAAA1", "INC-AAAAA2"} {
		rec, _ := apply1(nil, sig("1", "firing", t0), t0)
		rec.ID, rec.Key = id, "inc.test"+id
		if err := e.store(ctx, rec.Key, rec, 0); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
		err := e.HandleChat(ctx, jobFor(rec))
		if i == 0 && err != nil {
			t.Fatalf("the first incident's card: %v", err)
		}
		if i == 1 && err == nil {
			t.Fatal("the storm card's record failed, yet no retry")
		}
	}
	storms := func() (n int, ts string) {
		for _, m := range srv.Posts() {
			if strings.Contains(string(m.Metadata), "STORM-") {
				n, ts = n+1, m.TS
			}
		}
		return n, ts
	}
	if n, _ := storms(); n != 1 || len(srv.Posts()) != 2 {
		t.Fatalf("before the crash: %d storm cards, %d posts; want the first incident's card and the storm card", n, len(srv.Posts()))
	}

	dying.Store(false) // a new worker
	job := jobFor(recs[1])
	if err := e.HandleChat(ctx, job); err == nil {
		t.Fatal("inside the dead worker's lease: no retry")
	}
	if n, _ := storms(); n != 1 {
		t.Fatalf("inside the lease: %d storm cards, want 1", n)
	}
	clk.add(e.cfg.EffectTimeout + LeaseMargin + time.Second)
	if err := e.HandleChat(ctx, job); err != nil {
		t.Fatal(err)
	}
	n, ts := storms()
	if n != 1 {
		t.Fatalf("after the lease: %d storm cards, want the one found in history", n)
	}
	s, _, err := e.loadStorm(ctx, stormKey("#x"))
	if err != nil || s.Card == nil || s.Card.TS != ts || s.Lease != nil || s.DrawnGen != s.Gen {
		t.Fatalf("storm record after recovery: %+v, %v; want card %s recorded and drawn", s, err, ts)
	}
	card, ok := srv.Card(s.Card.Channel, ts)
	if !ok || !strings.Contains(string(card.Blocks), "INC-AAAAA2") {
		t.Fatalf("the storm card does not list the incident: %s", card.Blocks)
	}
	d, _, _ := e.loadDelivery(ctx, SinkChat, recs[1])
	if d.Storm != s.ID || d.TS != "" || d.StormDone != d.StormGen || chatOp(recs[1], d) != "" {
		t.Fatalf("the listed incident's delivery: %+v", d)
	}
}

// TestStormCardListsWorstFirst: critical first, then warning and info;
// within a severity open before resolved, then in order of arrival.
func TestStormCardListsWorstFirst(t *testing.T) {
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	s := &stormRecord{Channel: "#x", ID: "STORM-1", Active: true, Since: t0, Members: []stormMember{
		{ID: "w1", Severity: notify.SeverityWarning, Status: notify.StatusFiring, At: at(1)},
		{ID: "i1", Severity: notify.SeverityInfo, Status: notify.StatusFiring, At: at(2)},
		{ID: "c1", Severity: notify.SeverityCritical, Status: notify.StatusResolved, At: at(3)},
		{ID: "w2", Severity: notify.SeverityWarning, Status: notify.StatusResolved, At: at(4)},
		{ID: "c2", Severity: notify.SeverityCritical, Status: notify.StatusAcknowledged, At: at(5)},
		{ID: "w3", Severity: notify.SeverityWarning, Status: notify.StatusFiring, At: at(6)},
	}, Unlisted: map[string]int{"warning": 2}}
	inc := stormIncident(s, at(10))
	var got []string
	for _, e := range inc.Storm.Entries {
		got = append(got, e.ID)
	}
	if strings.Join(got, " ") != "c2 c1 w1 w3 w2 i1" {
		t.Fatalf("order %v", got)
	}
	if inc.Severity != notify.SeverityCritical || inc.Status != notify.StatusFiring || inc.Storm.Total() != 8 || inc.Storm.Over {
		t.Fatalf("storm card model %+v", inc)
	}
}
