package slack_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slack-go/slack"

	slackin "github.com/incidentbot/incidentbot/handlers/slack"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/notify"
	nslack "github.com/incidentbot/incidentbot/notify/slack"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
)

// TestSocketModeEndToEnd: two replicas each hold a Socket Mode connection;
// a slash command reaches one, a button press the other; each is
// acknowledged over the websocket and reaches the engine, which records
// the transport.
func TestSocketModeEndToEnd(t *testing.T) {
	bt := newBot(t)
	bt.slack.RequireAppToken("xapp-1-A0TEST-1-secret")
	bt.alert(t, "webhook.firing.single.json")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 2 {
		api := slack.New("xoxb-test", slack.OptionAPIURL(bt.slack.URL()), slack.OptionAppLevelToken("xapp-1-A0TEST-1-secret"))
		s, err := slackin.NewSocket(bt.h, api, nil)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { defer close(done); _ = s.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	eventually(t, "two socket mode connections", func() bool { return bt.slack.SocketConnections() == 2 })

	id, err := bt.slack.SendSocket("slash_commands", map[string]string{
		"command": "/incident", "text": "ack inc-2041", "user_id": "U0ADA", "user_name": "ada", "channel_id": "C1",
		"trigger_id": "trig-socket-1", "response_url": "https://hooks.slack.com/commands/T1/2/y",
	})
	if err != nil {
		t.Fatal(err)
	}
	var ack slacktestutil.SocketAck
	eventually(t, "the slash command's ack", func() (ok bool) { ack, ok = bt.slack.SocketAck(id); return ok })
	var p struct{ ResponseType, Text string }
	if err := json.Unmarshal(ack.Payload, &p); err != nil || !strings.Contains(p.Text, "Acknowledging *INC-2041*: accepted") {
		t.Fatalf("ack payload %s (%v)", ack.Payload, err)
	}
	eventually(t, "the ack", func() bool { return bt.record(t, fixtureID).Ack != nil })
	if by := bt.record(t, fixtureID).Ack.By; by != (input.Actor{ID: "U0ADA", Name: "ada", Via: "slack", Transport: "socket"}) {
		t.Fatalf("acknowledged by %+v", by)
	}

	// The card, edited, now offers Resolve and no Acknowledge.
	eventually(t, "the card without Acknowledge", func() bool {
		for _, u := range bt.slack.Updates() {
			if strings.Contains(string(u.Blocks), nslack.ActionResolve) && !strings.Contains(string(u.Blocks), nslack.ActionAck+`"`) {
				return true
			}
		}
		return false
	})
	value := bt.cardButton(t, nslack.ActionResolve)
	id, err = bt.slack.SendSocket("interactive", map[string]any{
		"type": "block_actions", "user": map[string]string{"id": "U0BOB", "username": "bob", "name": "bob"},
		"channel": map[string]string{"id": "C1"}, "response_url": "https://hooks.slack.com/actions/T1/3/z", "trigger_id": "1.2.4",
		"actions": []map[string]string{{"action_id": nslack.ActionResolve, "block_id": nslack.ActionsBlockID, "value": value, "type": "button", "action_ts": "1755093200.000001"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the click's ack", func() (ok bool) { ack, ok = bt.slack.SocketAck(id); return ok })
	if len(ack.Payload) != 0 && string(ack.Payload) != "null" {
		t.Errorf("click acked with payload %s, want a plain ack", ack.Payload)
	}
	eventually(t, "resolved", func() bool { return bt.record(t, fixtureID).Status == notify.StatusResolved })
	if m := bt.record(t, fixtureID).ManualResolve; m == nil || m.By.Name != "bob" || m.By.Transport != "socket" {
		t.Fatalf("resolved by %+v", m)
	}
	eventually(t, "the click's answer", func() bool {
		for _, r := range bt.replies.texts() {
			if strings.Contains(r, "Resolving *INC-2041*: accepted") {
				return true
			}
		}
		return false
	})
	// The audit record is appended after the record is stored.
	eventually(t, "the resolve audited", func() bool { return len(bt.audits(t, "incident.resolved")) > 0 })
	if a := bt.audits(t, "incident.resolved"); len(a) != 1 || a[0].Attrs["transport"] != "socket" || a[0].Attrs["actor_id"] != "U0BOB" {
		t.Fatalf("audit %+v", a)
	}
	if n := len(bt.slack.SocketAcks()); n != 2 {
		t.Fatalf("%d acks, want 2", n)
	}
}

// TestTransportsShareMetrics: both transports on one registry (serve with
// a signing secret and an app token) register the metrics once.
func TestTransportsShareMetrics(t *testing.T) {
	bt := newBot(t)
	reg := prometheus.NewRegistry()
	if _, err := slackin.NewHTTP(bt.h, slackin.Verifier{Secret: "s"}, reg); err != nil {
		t.Fatal(err)
	}
	api := slack.New("xoxb-test", slack.OptionAPIURL(bt.slack.URL()), slack.OptionAppLevelToken("xapp-1-x"))
	if _, err := slackin.NewSocket(bt.h, api, reg); err != nil {
		t.Fatal(err)
	}
	if _, err := slackin.NewHTTP(bt.h, slackin.Verifier{}, reg); err == nil {
		t.Fatal("HTTP without a signing secret accepted")
	}
}
