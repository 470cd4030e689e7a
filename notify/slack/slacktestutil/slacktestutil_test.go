package slacktestutil_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
)

func TestServer(t *testing.T) {
	srv := slacktestutil.Start(t)
	api := slack.New("xoxb-t", slack.OptionAPIURL(srv.URL()))
	ctx := t.Context()

	// slacktest's own routes still answer.
	if _, err := api.AuthTestContext(ctx); err != nil {
		t.Fatalf("auth.test: %v", err)
	}

	srv.FailNext(slacktestutil.PostMessage, 1, slacktestutil.Failure{Status: 429, RetryAfter: 1500 * time.Millisecond})
	_, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("x", false))
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter != 2*time.Second {
		t.Fatalf("err = %v, want rate limited for 2s", err)
	}
	srv.FailNext(slacktestutil.PostMessage, 1, slacktestutil.Failure{})
	if _, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("x", false)); err == nil || err.Error() != "internal_error" {
		t.Fatalf("err = %v, want internal_error", err)
	}

	_, ts, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("card", false))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("r", false), slack.MsgOptionTS("9.9")); err == nil || err.Error() != "thread_not_found" {
		t.Errorf("reply to unknown thread: %v", err)
	}
	if _, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("r", false), slack.MsgOptionTS(ts)); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := api.UpdateMessageContext(ctx, "C1", ts, slack.MsgOptionText("card v2", false)); err != nil {
		t.Fatal(err)
	}
	card, ok := srv.Card("C1", ts)
	if !ok || card.Text != "card v2" || card.Method != slacktestutil.PostMessage {
		t.Errorf("card = %+v", card)
	}
	if th := srv.Thread("C1", ts); len(th) != 1 || th[0].Text != "r" {
		t.Errorf("thread = %+v", th)
	}
	if srv.Attempts(slacktestutil.PostMessage) != 5 || len(srv.Posts()) != 2 || len(srv.Updates()) != 1 || len(srv.Calls()) != 3 {
		t.Errorf("attempts %d posts %d updates %d", srv.Attempts(slacktestutil.PostMessage), len(srv.Posts()), len(srv.Updates()))
	}
}

func TestHoldNext(t *testing.T) {
	srv := slacktestutil.Start(t)
	api := slack.New("xoxb-t", slack.OptionAPIURL(srv.URL()))
	hold := srv.HoldNext(slacktestutil.PostMessage)
	done := make(chan error, 1)
	go func() {
		_, _, err := api.PostMessageContext(t.Context(), "C1", slack.MsgOptionText("held", false))
		done <- err
	}()
	select {
	case <-hold.Arrived():
	case <-time.After(10 * time.Second):
		t.Fatal("held call never arrived")
	}
	select {
	case err := <-done:
		t.Fatalf("held call answered before release: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if n := len(srv.Posts()); n != 0 {
		t.Fatalf("%d posts recorded while held", n)
	}
	hold.Release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p := srv.Posts(); len(p) != 1 || p[0].Text != "held" {
		t.Errorf("posts = %+v", p)
	}
	// Only the next call was held.
	if _, _, err := api.PostMessageContext(t.Context(), "C1", slack.MsgOptionText("free", false)); err != nil {
		t.Fatal(err)
	}
}

func TestChannelNamesResolveToIDs(t *testing.T) {
	srv := slacktestutil.Start(t)
	api := slack.New("xoxb-t", slack.OptionAPIURL(srv.URL()))
	ctx := t.Context()

	ch, ts, err := api.PostMessageContext(ctx, "#Alerts", slack.MsgOptionText("card", false))
	if err != nil {
		t.Fatal(err)
	}
	if ch != srv.ChannelID("alerts") || ch == "#Alerts" {
		t.Fatalf("post answered channel %q, want the id %q", ch, srv.ChannelID("alerts"))
	}
	for _, ref := range []string{"#alerts", "alerts", ch} {
		if _, ok := srv.Card(ref, ts); !ok {
			t.Errorf("Card(%q) not found", ref)
		}
	}
	if p := srv.Posts(); p[0].Channel != "#Alerts" || p[0].ChannelID != ch {
		t.Errorf("post recorded as %q/%q", p[0].Channel, p[0].ChannelID)
	}
	// Replies and edits by id reach the card posted by name.
	if _, _, err := api.PostMessageContext(ctx, ch, slack.MsgOptionText("r", false), slack.MsgOptionTS(ts)); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := api.UpdateMessageContext(ctx, ch, ts, slack.MsgOptionText("v2", false)); err != nil {
		t.Fatal(err)
	}
	if c, _ := srv.Card("#alerts", ts); c.Text != "v2" || len(srv.Thread("#alerts", ts)) != 1 {
		t.Errorf("card %+v thread %v", c, srv.Thread("#alerts", ts))
	}

	// users.conversations lists named channels, paged.
	srv.ChannelID("#other")
	srv.ChannelID("#third")
	var names []string
	cursor := ""
	for pages := 0; ; pages++ {
		chans, next, err := api.GetConversationsForUserContext(ctx, &slack.GetConversationsForUserParameters{
			Types: []string{"public_channel", "private_channel"}, Limit: 2, Cursor: cursor, ExcludeArchived: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range chans {
			names = append(names, c.Name+"="+c.ID)
		}
		if next == "" {
			break
		}
		if pages > 3 {
			t.Fatal("users.conversations never ends")
		}
		cursor = next
	}
	want := []string{"alerts=" + ch, "other=" + srv.ChannelID("other"), "third=" + srv.ChannelID("third")}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("users.conversations = %v, want %v", names, want)
	}

	// conversations.history wants an id, like Slack.
	_, err = api.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{ChannelID: "#alerts"})
	if err == nil || err.Error() != "channel_not_found" {
		t.Errorf("history by name: %v, want channel_not_found", err)
	}
}

func TestHistory(t *testing.T) {
	srv := slacktestutil.Start(t)
	api := slack.New("xoxb-t", slack.OptionAPIURL(srv.URL()))
	ctx := t.Context()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	srv.SetClock(func() time.Time { return t0 }) // a stuck clock still gives unique ts

	var posted []string
	for i := range 5 {
		meta := slack.SlackMetadata{EventType: "test_card", EventPayload: map[string]any{"n": i}}
		_, ts, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText(fmt.Sprint("m", i), false), slack.MsgOptionMetadata(meta))
		if err != nil {
			t.Fatal(err)
		}
		posted = append(posted, ts)
	}
	if posted[0] != "1767323045.000000" || posted[4] != "1767323045.000004" {
		t.Fatalf("ts = %v", posted)
	}
	if _, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("reply", false), slack.MsgOptionTS(posted[1])); err != nil {
		t.Fatal(err)
	}
	if p := srv.Posts(); string(p[2].Metadata) != `{"event_type":"test_card","event_payload":{"n":2}}` {
		t.Errorf("metadata recorded as %s", p[2].Metadata)
	}

	// Newest first, oldest excluded unless inclusive, paged by cursor.
	var got []string
	cursor := ""
	for {
		h, err := api.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{
			ChannelID: "C1", Oldest: posted[1], Limit: 2, Cursor: cursor, IncludeAllMetadata: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range h.Messages {
			got = append(got, fmt.Sprint(m.Text, ":", m.Metadata.EventPayload["n"]))
			if m.BotID == "" || m.Type != "message" {
				t.Errorf("message %+v lacks type or bot_id", m.Msg)
			}
		}
		if !h.HasMore {
			if h.ResponseMetaData.NextCursor != "" {
				t.Error("next_cursor without has_more")
			}
			break
		}
		cursor = h.ResponseMetaData.NextCursor
	}
	if want := "m4:4 m3:3 m2:2"; strings.Join(got, " ") != want {
		t.Errorf("history = %q, want %q (thread replies and messages at or before oldest left out)", strings.Join(got, " "), want)
	}

	h, err := api.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{
		ChannelID: "C1", Oldest: posted[1], Inclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(h.Messages); n != 4 || h.Messages[3].Metadata.EventType != "" || h.Messages[3].ReplyCount != 1 {
		t.Errorf("inclusive without metadata: %d messages, last %+v", n, h.Messages[n-1].Msg)
	}
	if f := srv.Forms(slacktestutil.History); len(f) != 3 || f[0].Get("include_all_metadata") != "1" {
		t.Errorf("forms = %v", f)
	}

	// Bad metadata is refused as on Slack; an update without metadata keeps it.
	if _, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionMetadata(slack.SlackMetadata{EventPayload: map[string]any{"a": 1}})); err == nil || err.Error() != "invalid_metadata_schema" {
		t.Errorf("metadata without event_type: %v", err)
	}
	if _, _, _, err := api.UpdateMessageContext(ctx, "C1", posted[0], slack.MsgOptionText("edited", false)); err != nil {
		t.Fatal(err)
	}
	if c, _ := srv.Card("C1", posted[0]); c.Text != "edited" || c.Metadata == nil {
		t.Errorf("card after update: %+v", c)
	}
}

func TestFailAfterPost(t *testing.T) {
	srv := slacktestutil.Start(t)
	api := slack.New("xoxb-t", slack.OptionAPIURL(srv.URL()))

	srv.FailAfterPost(1, slacktestutil.Failure{Status: 500})
	_, _, err := api.PostMessageContext(t.Context(), "#a", slack.MsgOptionText("lost answer", false))
	var sc slack.StatusCodeError
	if !errors.As(err, &sc) || sc.Code != 500 {
		t.Fatalf("err = %v, want HTTP 500", err)
	}
	if p := srv.Posts(); len(p) != 1 || p[0].Text != "lost answer" {
		t.Fatalf("posts = %+v, want the post recorded", p)
	}

	srv.FailAfterPost(1, slacktestutil.Failure{Hang: true})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, _, err = api.PostMessageContext(ctx, "#a", slack.MsgOptionText("no answer", false))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the client's timeout", err)
	}
	h, err := api.GetConversationHistoryContext(t.Context(), &slack.GetConversationHistoryParameters{ChannelID: srv.ChannelID("a")})
	if err != nil || len(h.Messages) != 2 || h.Messages[0].Text != "no answer" {
		t.Fatalf("history = %+v, %v; want both posts", h, err)
	}
	if _, _, err := api.PostMessageContext(t.Context(), "#a", slack.MsgOptionText("fine", false)); err != nil {
		t.Fatal(err)
	}
}

func TestSetScopes(t *testing.T) {
	srv := slacktestutil.Start(t)
	api := slack.New("xoxb-t", slack.OptionAPIURL(srv.URL()))
	srv.SetScopes("chat:write", "channels:read")
	ch, _, err := api.PostMessageContext(t.Context(), "#a", slack.MsgOptionText("x", false))
	if err != nil {
		t.Fatal(err)
	}
	_, err = api.GetConversationHistoryContext(t.Context(), &slack.GetConversationHistoryParameters{ChannelID: ch})
	var se slack.SlackErrorResponse
	if !errors.As(err, &se) || se.Err != "missing_scope" || se.Needed != "channels:history" || se.Provided != "channels:read,chat:write" {
		t.Fatalf("err = %#v, want missing_scope needing channels:history", err)
	}
	_, _, err = api.GetConversationsForUserContext(t.Context(), &slack.GetConversationsForUserParameters{Types: []string{"public_channel", "private_channel"}})
	if !errors.As(err, &se) || se.Needed != "groups:read" {
		t.Fatalf("err = %#v, want missing_scope needing groups:read", err)
	}
}

func TestDownUp(t *testing.T) {
	srv := slacktestutil.Start(t)
	api := slack.New("xoxb-t", slack.OptionAPIURL(srv.URL()))

	srv.FailNext(slacktestutil.PostMessage, 1, slacktestutil.Failure{Error: "queued"})
	srv.Down(slacktestutil.Failure{Status: 503})
	for range 3 {
		_, _, err := api.PostMessageContext(t.Context(), "#a", slack.MsgOptionText("x", false))
		var sc slack.StatusCodeError
		if !errors.As(err, &sc) || sc.Code != 503 {
			t.Fatalf("post while down: %v, want HTTP 503", err)
		}
	}
	if _, err := api.GetConversationHistoryContext(t.Context(), &slack.GetConversationHistoryParameters{ChannelID: "C1"}); err == nil {
		t.Fatal("history while down: no error")
	}

	srv.Down(slacktestutil.Failure{Hang: true})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, _, err := api.PostMessageContext(ctx, "#a", slack.MsgOptionText("x", false)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("post while hanging: %v, want the client's timeout", err)
	}

	srv.Up()
	if _, _, err := api.PostMessageContext(t.Context(), "#a", slack.MsgOptionText("x", false)); err == nil || err.Error() != "queued" {
		t.Fatalf("first post after the outage: %v, want the queued failure", err)
	}
	if _, _, err := api.PostMessageContext(t.Context(), "#a", slack.MsgOptionText("card", false)); err != nil {
		t.Fatal(err)
	}
	if n, p := srv.Attempts(slacktestutil.PostMessage), len(srv.Posts()); n != 6 || p != 1 {
		t.Errorf("attempts %d, posts %d; want 6 and 1", n, p)
	}
}
