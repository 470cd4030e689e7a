package slacktestutil_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
)

func TestUserGroups(t *testing.T) {
	srv := slacktestutil.Start(t)
	srv.SetUserGroup("S0ONCALL", "U1", "U2")
	api := slack.New("xoxb-t", slack.OptionAPIURL(srv.URL()))
	got, err := api.GetUserGroupMembersContext(t.Context(), "S0ONCALL")
	if err != nil || len(got) != 2 || got[0] != "U1" {
		t.Fatalf("members = %v, %v", got, err)
	}
	if _, err := api.GetUserGroupMembersContext(t.Context(), "S0NOPE"); err == nil || err.Error() != "no_such_subteam" {
		t.Fatalf("unknown group: %v", err)
	}
	srv.SetScopes("chat:write")
	if _, err := api.GetUserGroupMembersContext(t.Context(), "S0ONCALL"); err == nil {
		t.Fatal("usergroups.users.list answered without usergroups:read")
	}
}

// TestSocketMode: slack-go's Socket Mode client connects with the app
// token, gets an envelope the test sends, and its answer is recorded; a
// wrong app token is refused.
func TestSocketMode(t *testing.T) {
	srv := slacktestutil.Start(t)
	srv.RequireAppToken("xapp-1-good")
	api := slack.New("xoxb-t", slack.OptionAPIURL(srv.URL()), slack.OptionAppLevelToken("xapp-1-good"))
	client := socketmode.New(api)
	ctx := t.Context()
	go func() { _ = client.RunContext(ctx) }()
	go func() {
		for evt := range client.Events {
			if evt.Type == socketmode.EventTypeSlashCommand {
				cmd := evt.Data.(slack.SlashCommand)
				_ = client.Ack(*evt.Request, map[string]any{"text": "got " + cmd.Text})
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for srv.SocketConnections() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no socket mode connection")
		}
		time.Sleep(20 * time.Millisecond)
	}
	id, err := srv.SendSocket("slash_commands", map[string]string{"command": "/incident", "text": "list", "user_id": "U1"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if ack, ok := srv.SocketAck(id); ok {
			var p map[string]string
			if err := json.Unmarshal(ack.Payload, &p); err != nil || p["text"] != "got list" {
				t.Fatalf("ack payload %s: %v", ack.Payload, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no ack")
		}
		time.Sleep(20 * time.Millisecond)
	}

	bad := slack.New("", slack.OptionAPIURL(srv.URL()), slack.OptionAppLevelToken("xapp-1-bad"))
	if _, _, err := bad.StartSocketModeContext(ctx); err == nil || err.Error() != "invalid_auth" {
		t.Fatalf("wrong app token: %v", err)
	}
}
