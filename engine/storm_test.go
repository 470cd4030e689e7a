package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/handlers/alertmanager"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
	nslack "github.com/incidentbot/incidentbot/notify/slack"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
	"github.com/incidentbot/incidentbot/signal"
)

// stormRunbook sends every severity to one channel; critical pages.
type stormRunbook struct {
	name   string
	levels []notify.EscalationLevel
}

func (r stormRunbook) Name() string { return r.name }
func (r stormRunbook) Severity(l map[string]string) notify.Severity {
	return notify.Severity(l["severity"])
}
func (r stormRunbook) Route(s notify.Severity) engine.Route {
	return engine.Route{Channel: "#storm", Page: s == notify.SeverityCritical}
}
func (r stormRunbook) Escalation() []notify.EscalationLevel { return r.levels }
func (r stormRunbook) Render(_ context.Context, s signal.Signal) engine.Rendered {
	return engine.Rendered{Title: s.Name() + ": " + s.Annotations["summary"]}
}

type stormCatalog struct{ levels []notify.EscalationLevel }

func (c stormCatalog) Match(s signal.Signal) (engine.Runbook, bool) {
	return stormRunbook{s.Name(), c.levels}, true
}
func (c stormCatalog) Get(n string) (engine.Runbook, bool) { return stormRunbook{n, c.levels}, true }

// stormAlert is alert i of a storm as Alertmanager sends it, its own group
// (so its own incident), firing or resolved.
func stormAlert(t testing.TB, i int, sev string, resolved bool) bus.Event {
	t.Helper()
	name := fmt.Sprintf("Storm%03d", i)
	status, ends := "firing", time.Time{}
	if resolved {
		status, ends = "resolved", time.Now()
	}
	starts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	alert := map[string]any{"status": status, "startsAt": starts, "endsAt": ends, "fingerprint": fmt.Sprintf("%016x", i+1),
		"labels":      map[string]string{"alertname": name, "severity": sev},
		"annotations": map[string]string{"summary": "disk full on node " + name}}
	body, _ := json.Marshal(map[string]any{"version": "4", "status": status, "receiver": "incidentbot",
		"groupKey": `{}:{alertname="` + name + `"}`, "alerts": []any{alert}, "groupLabels": map[string]string{"alertname": name}})
	m, err := alertmanager.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	return bus.Event{ID: m.EventID(), Source: "alertmanager", Type: alertmanager.EventType, Subject: m.GroupKey, Data: body}
}

type stormEnv struct {
	*env
	slack *slacktestutil.Server
	engs  []*engine.Engine
}

// newStormEnv runs replicas engines on one bus, each with its own Slack
// client of the one Slack test server (pacing at rate calls a second per
// channel, 0 for none), and the recorder as their pager.
func newStormEnv(t testing.TB, replicas int, rate float64, storm engine.StormConfig, levels ...notify.EscalationLevel) *stormEnv {
	t.Helper()
	b, kvs := openBus(t, t.TempDir())
	t.Cleanup(b.Close)
	cfg := engine.DefaultConfig()
	cfg.RetryMax = 200 * time.Millisecond
	cfg.Storm = storm
	e := &stormEnv{env: &env{bus: b, kvs: kvs, rec: &recorder{}, clock: &clock{real: true}, cfg: cfg, cat: stormCatalog{levels}},
		slack: slacktestutil.Start(t)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for range replicas {
		sc := nslack.DefaultConfig()
		sc.Token, sc.APIURL, sc.ChannelRate = "xoxb-test", e.slack.URL(), rate
		chat, err := nslack.New(sc)
		if err != nil {
			t.Fatal(err)
		}
		eng, err := engine.New(cfg, engine.Deps{Catalog: e.cat, Decoders: app.Decoders(),
			Incidents: kvs[engine.BucketIncidents], IDs: kvs[engine.BucketIDs], Deliveries: kvs[engine.BucketDeliveries],
			Chat: chat, Pager: e.rec, Publisher: b, Scheduler: b, Audit: b, Now: e.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range eng.Consumers() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := b.Consume(ctx, c.Config, c.Handler); err != nil && ctx.Err() == nil {
					t.Errorf("consume %s: %v", c.Config.Durable, err)
				}
			}()
		}
		e.engs = append(e.engs, eng)
	}
	e.eng = e.engs[0]
	return e
}

func (e *stormEnv) publish(t testing.TB, evs ...bus.Event) {
	t.Helper()
	for _, ev := range evs {
		if _, err := e.bus.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

// slackCards are the cards in Slack: incident cards by incident id, storm
// cards by storm id (each id with every ts it was posted at).
func (e *stormEnv) slackCards(t testing.TB) (cards, storms map[string][]string) {
	t.Helper()
	cards, storms = map[string][]string{}, map[string][]string{}
	for _, m := range e.slack.Posts() {
		if m.ThreadTS != "" {
			continue
		}
		var md struct {
			Payload struct {
				ID string `json:"incident_id"`
			} `json:"event_payload"`
		}
		if err := json.Unmarshal(m.Metadata, &md); err != nil || md.Payload.ID == "" {
			t.Fatalf("a top-level post without a card's metadata: %s", m.Metadata)
		}
		if strings.HasPrefix(md.Payload.ID, "STORM-") {
			storms[md.Payload.ID] = append(storms[md.Payload.ID], m.ChannelID+"/"+m.TS)
		} else {
			cards[md.Payload.ID] = append(cards[md.Payload.ID], m.ChannelID+"/"+m.TS)
		}
	}
	return cards, storms
}

// stormCard returns the one storm card's current blocks text and how often
// it was edited; it fails unless there is exactly one.
func (e *stormEnv) stormCard(t testing.TB) (text string, updates int) {
	t.Helper()
	_, storms := e.slackCards(t)
	if len(storms) != 1 {
		t.Fatalf("%d storm cards (%v), want 1", len(storms), storms)
	}
	var at string
	for _, refs := range storms {
		if len(refs) != 1 {
			t.Fatalf("the storm card was posted %d times: %v", len(refs), refs)
		}
		at = refs[0]
	}
	ch, ts, _ := strings.Cut(at, "/")
	card, ok := e.slack.Card(ch, ts)
	if !ok {
		t.Fatalf("storm card %s not in Slack", at)
	}
	for _, u := range e.slack.Updates() {
		if u.TS == ts {
			updates++
		}
	}
	return string(card.Blocks), updates
}

func (e *stormEnv) ids(t testing.TB) map[string]notify.Severity {
	t.Helper()
	recs, err := e.eng.Incidents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]notify.Severity{}
	for _, r := range recs {
		out[r.ID] = r.Severity
	}
	return out
}

func (e *stormEnv) threadReplies() int {
	n := 0
	for _, m := range e.slack.Posts() {
		if m.ThreadTS != "" {
			n++
		}
	}
	return n
}

// TestBelowTheStormThresholdEachIncidentHasItsCard: fewer new incidents
// than the threshold within the window change nothing: a card each, no
// storm card.
func TestBelowTheStormThresholdEachIncidentHasItsCard(t *testing.T) {
	e := newStormEnv(t, 1, 0, engine.StormConfig{Threshold: 20, Window: time.Minute, Redraw: 200 * time.Millisecond})
	for i := range 19 {
		e.publish(t, stormAlert(t, i, "warning", false))
	}
	e.idle(t)
	cards, storms := e.slackCards(t)
	if len(cards) != 19 || len(storms) != 0 {
		t.Fatalf("%d cards, %d storm cards; want 19 and none", len(cards), len(storms))
	}
	for id, refs := range cards {
		if len(refs) != 1 {
			t.Errorf("%s has %d cards", id, len(refs))
		}
	}
}

// TestAStormListsTheBurstOnOneCard: 60 warnings and 3 criticals into one
// channel with a threshold of 20: the first 20 warnings and every critical
// (their own budget) get a card; the 40 other warnings are listed on one
// storm card, edited far fewer times than incidents joined; their
// resolutions are drawn on it, no thread reply is posted for them; a
// command reaches a listed incident by its id and its line shows it; and
// once a window passes without a burst, the card says the storm is over
// and new incidents get their card again.
func TestAStormListsTheBurstOnOneCard(t *testing.T) {
	e := newStormEnv(t, 1, 0, engine.StormConfig{Threshold: 20, Window: 4 * time.Second, Redraw: time.Second})
	for i := range 63 {
		sev := "warning"
		if i%21 == 10 {
			sev = "critical"
		}
		e.publish(t, stormAlert(t, i, sev, false))
	}
	e.idle(t)
	checkStorm(t, e, 20, 3, 40)
	if n := e.threadReplies(); n != 0 {
		t.Fatalf("%d thread replies after the burst, want none", n)
	}
	if pages := e.rec.pageActions(); len(pages) != 3 {
		t.Fatalf("%d pages, want the 3 criticals paged: %v", len(pages), pages)
	}

	// Five listed incidents resolve: the card shows it, nothing is
	// posted in a thread.
	cards, _ := e.slackCards(t)
	var resolved []string
	for i := range 63 {
		ev := stormAlert(t, i, "warning", false)
		rec := incidentOf(t, e, ev)
		if _, own := cards[rec.ID]; own || len(resolved) == 5 {
			continue
		}
		resolved = append(resolved, rec.ID)
		e.publish(t, stormAlert(t, i, "warning", true))
	}
	e.idle(t)
	text, _ := e.stormCard(t)
	if !strings.Contains(text, "5 resolved") {
		t.Fatalf("the storm card does not count the 5 resolved: %s", text)
	}
	if n := e.threadReplies(); n != 0 {
		t.Fatalf("%d thread replies after listed incidents resolved, want none", n)
	}

	// Commands reach a listed incident by its id; its line says so.
	var acked string
	for id := range e.ids(t) {
		if _, own := cards[id]; !own && !slices.Contains(resolved, id) {
			acked = id
			break
		}
	}
	ack := command.Command{Verb: input.Ack, Incident: acked, By: ada, RequestID: "storm-ack", At: time.Now()}
	if _, err := command.NewSender(e.bus, e.eng).Send(context.Background(), ack); err != nil {
		t.Fatal(err)
	}
	e.idle(t)
	if text, _ := e.stormCard(t); !strings.Contains(text, "*"+acked+"* · acknowledged") {
		t.Fatalf("the storm card does not show %s acknowledged: %s", acked, text)
	}

	eventually(t, "the storm card says the storm is over", func() bool {
		text, _ := e.stormCard(t)
		return strings.Contains(text, "Alert storm over")
	})
	e.idle(t)
	e.publish(t, stormAlert(t, 100, "warning", false))
	e.idle(t)
	cards, storms := e.slackCards(t)
	if len(cards) != 24 || len(storms) != 1 {
		t.Fatalf("after the storm: %d cards, %d storm cards; want a card for the new incident (24) and the one storm card", len(cards), len(storms))
	}
}

// incidentOf reads the incident an alert opened.
func incidentOf(t testing.TB, e *stormEnv, ev bus.Event) *engine.Record {
	t.Helper()
	m, err := alertmanager.Decode(ev.Data)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := e.eng.Incidents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.GroupKey == m.GroupKey {
			return r
		}
	}
	t.Fatalf("no incident for group %s", m.GroupKey)
	return nil
}

// checkStorm: every incident is visible once, on its card or on the one
// storm card; warnings own cards, criticals theirs, listed the rest.
func checkStorm(t *testing.T, e *stormEnv, warnings, criticals, listed int) {
	t.Helper()
	ids := e.ids(t)
	cards, _ := e.slackCards(t)
	text, updates := e.stormCard(t)
	own := map[notify.Severity]int{}
	for id, refs := range cards {
		if len(refs) != 1 {
			t.Errorf("%s has %d cards", id, len(refs))
		}
		own[ids[id]]++
		if strings.Contains(text, id) {
			t.Errorf("%s has a card and is listed on the storm card", id)
		}
	}
	if own[notify.SeverityWarning] != warnings || own[notify.SeverityCritical] != criticals {
		t.Fatalf("own cards %v, want %d warning and %d critical", own, warnings, criticals)
	}
	n := 0
	for id := range ids {
		if _, ok := cards[id]; ok {
			continue
		}
		n++
		if !strings.Contains(text, id) {
			t.Errorf("%s has no card and is not on the storm card", id)
		}
	}
	if n != listed || !strings.Contains(text, fmt.Sprintf("· %d incidents", listed)) {
		t.Fatalf("%d incidents without a card, want %d listed; card: %s", n, listed, text)
	}
	t.Logf("storm card: posted once, edited %d times for %d incidents listed", updates, listed)
	if updates >= listed/2 {
		t.Fatalf("the storm card was edited %d times for %d incidents: edits are not coalesced", updates, listed)
	}
}

// TestTwoReplicasOneStormCard: two replicas take the burst's jobs at once;
// there is still one storm card, listing every incident without a card.
func TestTwoReplicasOneStormCard(t *testing.T) {
	e := newStormEnv(t, 2, 0, engine.StormConfig{Threshold: 20, Window: time.Minute, Redraw: time.Second})
	for i := range 60 {
		e.publish(t, stormAlert(t, i, "warning", false))
	}
	e.idle(t)
	checkStorm(t, e, 20, 0, 40)
}

// TestAStormPastItsListCounts: incidents that join a storm past the
// incidents it lists by id are counted on its card, by severity.
func TestAStormPastItsListCounts(t *testing.T) {
	e := newStormEnv(t, 1, 0, engine.StormConfig{Threshold: 5, Window: 2 * time.Second, Redraw: 300 * time.Millisecond, MaxListed: 5})
	for i := range 20 {
		e.publish(t, stormAlert(t, i, "warning", false))
	}
	e.idle(t)
	cards, _ := e.slackCards(t)
	text, _ := e.stormCard(t)
	if len(cards) != 5 || !strings.Contains(text, "· 15 incidents") || !strings.Contains(text, "and 10 more: 10 warning") {
		t.Fatalf("%d cards; storm card %s; want 5 cards and 15 incidents on the storm card, 10 of them counted", len(cards), text)
	}
	eventually(t, "the storm card says the storm is over", func() bool {
		text, _ := e.stormCard(t)
		return strings.Contains(text, "Alert storm over in #storm · 15 incidents")
	})
}

// TestAStormCallsEscalationLevelsInItsThread: listed incidents post no
// thread replies, but the people an escalation level calls for them are
// mentioned in the storm card's thread, in a few replies naming the
// incidents, not one each.
func TestAStormCallsEscalationLevelsInItsThread(t *testing.T) {
	e := newStormEnv(t, 1, 0, engine.StormConfig{Threshold: 5, Window: time.Minute, Redraw: time.Second},
		notify.EscalationLevel{Name: "L1", After: 0}, notify.EscalationLevel{Name: "L2", After: 2 * time.Second, Mention: []string{"U0SENIOR"}})
	for i := range 25 {
		e.publish(t, stormAlert(t, i, "warning", false))
	}
	e.idle(t)
	cards, storms := e.slackCards(t)
	var storm string
	for _, refs := range storms {
		storm = refs[0]
	}
	_, stormTS, _ := strings.Cut(storm, "/")
	calls := func() (replies int, text string) {
		for _, m := range e.slack.Posts() {
			if m.ThreadTS == stormTS {
				replies++
				text += m.Text + "\n"
			}
		}
		return replies, text
	}
	eventually(t, "every listed incident's L2 called in the storm thread", func() bool {
		_, text := calls()
		for id := range e.ids(t) {
			if _, own := cards[id]; !own && !strings.Contains(text, id) {
				return false
			}
		}
		return true
	})
	e.idle(t)
	n, text := calls()
	if !strings.Contains(text, "<@U0SENIOR>") || n > 5 {
		t.Fatalf("%d replies in the storm thread for 20 incidents: %s", n, text)
	}
	t.Logf("L2 of 20 listed incidents called in %d storm thread replies", n)
}

// TestAStormCardSlackRefusesFailsItsIncidents: when Slack refuses the
// storm card for good, the chat delivery of the incident whose job drew
// it records why, as its own card's would have (those that had handed
// the draw over to it are done), and nothing is retried forever.
func TestAStormCardSlackRefusesFailsItsIncidents(t *testing.T) {
	e := newStormEnv(t, 1, 0, engine.StormConfig{Threshold: 2, Window: time.Minute, Redraw: 200 * time.Millisecond})
	for i := range 2 {
		e.publish(t, stormAlert(t, i, "warning", false))
	}
	e.idle(t)
	e.slack.FailNext(slacktestutil.PostMessage, 1, slacktestutil.Failure{Error: "channel_not_found"})
	for i := 2; i < 5; i++ {
		e.publish(t, stormAlert(t, i, "warning", false))
	}
	e.idle(t)
	cards, storms := e.slackCards(t)
	if len(cards) != 2 || len(storms) != 0 {
		t.Fatalf("%d cards, %d storm cards; want the 2 cards before the storm and no storm card", len(cards), len(storms))
	}
	failed := 0
	for id := range e.ids(t) {
		if _, own := cards[id]; own {
			continue
		}
		ent, err := e.kvs[engine.BucketDeliveries].Get(context.Background(), "chat."+id)
		if err != nil {
			t.Fatal(err)
		}
		var d engine.Delivery
		_ = json.Unmarshal(ent.Value, &d)
		switch {
		case d.Storm == "" || d.StormDone != d.StormGen:
			t.Errorf("%s: delivery %+v, want it listed and done", id, d)
		case strings.Contains(d.Failed, "storm card: ") && strings.Contains(d.Failed, "channel_not_found"):
			failed++
		case d.Failed != "":
			t.Errorf("%s: failed with %q, want the storm card's error", id, d.Failed)
		}
	}
	if failed == 0 {
		t.Fatal("no listed incident's delivery records the storm card's error")
	}
}
