package slacktestutil_test

import (
	"errors"
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
