package slack_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/notify"
	nslack "github.com/incidentbot/incidentbot/notify/slack"
	"github.com/incidentbot/incidentbot/notify/slack/slacktestutil"
)

// postAt posts a card of incident id with nonce to channel, timestamped
// at the fake server's clock set to at.
func postAt(t *testing.T, srv *slacktestutil.Server, chat *nslack.Chat, channel, id, nonce string, at time.Time) notify.CardRef {
	t.Helper()
	srv.SetClock(func() time.Time { return at })
	inc := incident()
	inc.ID = id
	ref, err := chat.PostCard(t.Context(), channel, inc, notify.CardTag{IncidentID: id, Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestFindCard(t *testing.T) {
	srv := slacktestutil.Start(t)
	chat, _, obs := newChat(t, srv, nil)
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	since := base.Add(time.Hour)

	old := postAt(t, srv, chat, "#alerts", "INC-OLD", "n0", base)
	first := postAt(t, srv, chat, "#alerts", "INC-1", "n1", since.Add(time.Second))
	postAt(t, srv, chat, "#alerts", "INC-2", "n2", since.Add(2*time.Second))
	second := postAt(t, srv, chat, "#alerts", "INC-1", "n3", since.Add(3*time.Second))
	postAt(t, srv, chat, "#other", "INC-1", "n4", since.Add(4*time.Second))
	// A reply in a card's thread and a plain message are no cards.
	if err := chat.Reply(t.Context(), second, incident(), notify.Update{Seq: 1, Text: "INC-1"}); err != nil {
		t.Fatal(err)
	}
	id := srv.ChannelID("#alerts")
	if first.Channel != id {
		t.Fatalf("PostCard answered channel %q, want Slack's id %q", first.Channel, id)
	}

	tests := []struct {
		name    string
		channel string
		tag     notify.CardTag
		since   time.Time
		want    notify.CardRef // zero: not found
	}{
		{"exact nonce", "#alerts", notify.CardTag{IncidentID: "INC-1", Nonce: "n3"}, since, second},
		{"exact nonce, channel by id", id, notify.CardTag{IncidentID: "INC-1", Nonce: "n3"}, since, second},
		{"other nonce: oldest card of the incident", "#alerts", notify.CardTag{IncidentID: "INC-1", Nonce: "lost"}, since, first},
		{"no nonce: oldest card", "alerts", notify.CardTag{IncidentID: "INC-1"}, since, first},
		{"another incident", "#alerts", notify.CardTag{IncidentID: "INC-3", Nonce: "n3"}, since, notify.CardRef{}},
		{"card before since", "#alerts", notify.CardTag{IncidentID: "INC-OLD", Nonce: "n0"}, since, notify.CardRef{}},
		{"card just before since, within the skew allowance", "#alerts", notify.CardTag{IncidentID: "INC-OLD", Nonce: "n0"}, base.Add(10 * time.Second), old},
		{"zero since reads back", "#alerts", notify.CardTag{IncidentID: "INC-OLD"}, time.Time{}, old},
		{"nonce of a card in another channel", "#alerts", notify.CardTag{IncidentID: "INC-1", Nonce: "n4"}, since, first},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref, found, err := chat.FindCard(t.Context(), tt.channel, tt.tag, tt.since)
			if err != nil {
				t.Fatal(err)
			}
			if found != (tt.want != notify.CardRef{}) || ref != tt.want {
				t.Errorf("FindCard = %+v, %v; want %+v", ref, found, tt.want)
			}
		})
	}

	// The name was learned from the posts: no users.conversations needed.
	if n := srv.Attempts(slacktestutil.UserConversations); n != 0 {
		t.Errorf("%d users.conversations calls, want 0", n)
	}
	forms := srv.Forms(slacktestutil.History)
	if f := forms[0]; f.Get("channel") != id || f.Get("include_all_metadata") != "1" || f.Get("limit") != "200" ||
		f.Get("oldest") != "1772369970.000000" { // since − 30 s
		t.Errorf("conversations.history form = %v", f)
	}
	if obs.results[len(obs.results)-1] != "slack/find_card/success" {
		t.Errorf("observer saw %v", obs.results)
	}
}

func TestFindCardResolvesNamesOnce(t *testing.T) {
	srv := slacktestutil.Start(t)
	for _, name := range []string{"#a", "#b", "#c", "#d", "#e"} {
		srv.ChannelID(name)
	}
	poster, _, _ := newChat(t, srv, nil)
	ref := postAt(t, srv, poster, "#d", "INC-1", "n1", time.Now())

	// A fresh process knows no ids: it reads users.conversations once.
	chat, _, _ := newChat(t, srv, nil)
	for range 2 {
		got, found, err := chat.FindCard(t.Context(), "#D", notify.CardTag{IncidentID: "INC-1", Nonce: "n1"}, time.Now().Add(-time.Minute))
		if err != nil || !found || got != ref {
			t.Fatalf("FindCard = %+v, %v, %v; want %+v", got, found, err, ref)
		}
	}
	if n := srv.Attempts(slacktestutil.UserConversations); n != 1 {
		t.Errorf("%d users.conversations calls, want 1 (cached)", n)
	}

	_, _, err := chat.FindCard(t.Context(), "#nowhere", notify.CardTag{IncidentID: "INC-1"}, time.Now())
	if err == nil || notify.IsRetryable(err) || !strings.Contains(err.Error(), "not among the channels the bot is a member of") {
		t.Errorf("unknown channel: err = %v, want a permanent error saying to invite the bot", err)
	}
}

func TestFindCardPages(t *testing.T) {
	srv := slacktestutil.Start(t)
	cfg := nslack.DefaultConfig()
	cfg.Token, cfg.APIURL = token, srv.URL()
	cfg.HistoryPageSize, cfg.HistoryMaxPages = 2, 3
	var logs bytes.Buffer
	cfg.Logger = slogTo(&logs)
	chat, err := nslack.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	want := postAt(t, srv, chat, "C1", "INC-1", "n1", start)
	for i := range 4 {
		postAt(t, srv, chat, "C1", "INC-2", "x", start.Add(time.Duration(i+1)*time.Second))
	}

	// Five messages, two a page: the card is on the third page.
	ref, found, err := chat.FindCard(t.Context(), "C1", notify.CardTag{IncidentID: "INC-1", Nonce: "n1"}, start)
	if err != nil || !found || ref != want {
		t.Fatalf("FindCard = %+v, %v, %v; want %+v", ref, found, err, want)
	}
	if n := srv.Attempts(slacktestutil.History); n != 3 {
		t.Errorf("%d pages read, want 3", n)
	}
	if f := srv.Forms(slacktestutil.History); f[0].Get("cursor") != "" || f[1].Get("cursor") == "" || f[2].Get("cursor") == f[1].Get("cursor") {
		t.Errorf("cursors %q %q %q", f[0].Get("cursor"), f[1].Get("cursor"), f[2].Get("cursor"))
	}

	// Two more messages push the card past the page limit (six messages).
	postAt(t, srv, chat, "C1", "INC-2", "x", start.Add(time.Minute))
	postAt(t, srv, chat, "C1", "INC-2", "x", start.Add(2*time.Minute))
	_, found, err = chat.FindCard(t.Context(), "C1", notify.CardTag{IncidentID: "INC-1", Nonce: "n1"}, start)
	if err != nil || found {
		t.Fatalf("FindCard beyond the page limit = %v, %v; want not found", found, err)
	}
	if !strings.Contains(logs.String(), "page limit") {
		t.Errorf("no warning about the page limit in %q", logs.String())
	}
}

func TestFindCardMissingScope(t *testing.T) {
	tests := []struct {
		name    string
		channel string
		scopes  []string
		want    []string
	}{
		{"history", "C1", []string{"chat:write", "channels:read", "groups:read"},
			[]string{"slack conversations.history", "missing_scope", "channels:history", "groups:history", "reinstall"}},
		{"channel name", "#alerts", []string{"chat:write", "channels:history", "groups:history"},
			[]string{"slack users.conversations", "missing_scope", "channels:read", "groups:read"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := slacktestutil.Start(t)
			chat, sl, obs := newChat(t, srv, nil)
			srv.SetScopes(tt.scopes...)
			_, _, err := chat.FindCard(t.Context(), tt.channel, tag, time.Now())
			var ne *notify.Error
			if !errors.As(err, &ne) || ne.Retryable {
				t.Fatalf("err = %#v, want a permanent *notify.Error", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if len(sl.all()) != 0 {
				t.Errorf("retried a missing scope: slept %v", sl.all())
			}
			if obs.results[0] != "slack/find_card/"+notify.ResultPermanentError {
				t.Errorf("observer saw %v", obs.results)
			}
		})
	}
}

func TestFindCardRetriesTransientErrors(t *testing.T) {
	srv := slacktestutil.Start(t)
	chat, sl, _ := newChat(t, srv, nil)
	ref, err := chat.PostCard(t.Context(), "C1", incident(), tag)
	if err != nil {
		t.Fatal(err)
	}
	srv.FailNext(slacktestutil.History, 1, slacktestutil.Failure{Status: 429, RetryAfter: 3 * time.Second})
	got, found, err := chat.FindCard(t.Context(), "C1", tag, time.Now().Add(-time.Minute))
	if err != nil || !found || got != ref {
		t.Fatalf("FindCard = %+v, %v, %v", got, found, err)
	}
	if s := sl.all(); len(s) != 1 || s[0] != 3*time.Second {
		t.Errorf("slept %v, want the server's Retry-After", s)
	}
}

// TestPostCardUnknownOutcome: when Slack posted but the client could not
// tell, the sink's own retry finds the card instead of posting again.
func TestPostCardUnknownOutcome(t *testing.T) {
	tests := []struct {
		name    string
		channel string
		setup   func(srv *slacktestutil.Server)
		policy  func(p *notify.RetryPolicy)
		// cards is how many cards the server holds afterwards.
		cards   int
		lookups int
	}{
		{"500 after posting", "C1", func(s *slacktestutil.Server) {
			s.FailAfterPost(1, slacktestutil.Failure{Status: 500})
		}, nil, 1, 1},
		{"answer lost: client timeout", "C1", func(s *slacktestutil.Server) {
			s.FailAfterPost(1, slacktestutil.Failure{Hang: true})
		}, nil, 1, 1},
		{"internal_error after posting", "C1", func(s *slacktestutil.Server) {
			s.FailAfterPost(1, slacktestutil.Failure{Error: "internal_error"})
		}, nil, 1, 1},
		{"channel by name: resolved to look", "#alerts", func(s *slacktestutil.Server) {
			s.FailAfterPost(1, slacktestutil.Failure{Status: 502})
		}, nil, 1, 1},
		{"lookup fails, retried", "C1", func(s *slacktestutil.Server) {
			s.FailAfterPost(1, slacktestutil.Failure{Status: 500})
			s.FailNext(slacktestutil.History, 1, slacktestutil.Failure{Status: 503})
		}, nil, 1, 2},
		{"500 before posting: looks, then posts", "C1", func(s *slacktestutil.Server) {
			s.FailNext(slacktestutil.PostMessage, 1, slacktestutil.Failure{Status: 500})
		}, nil, 1, 1},
		{"last attempt unknown: looks once more", "C1", func(s *slacktestutil.Server) {
			s.FailAfterPost(1, slacktestutil.Failure{Status: 500})
		}, func(p *notify.RetryPolicy) { p.MaxAttempts = 1 }, 1, 1},
		{"several unknown attempts", "C1", func(s *slacktestutil.Server) {
			s.FailNext(slacktestutil.PostMessage, 2, slacktestutil.Failure{Status: 500})
			s.FailAfterPost(1, slacktestutil.Failure{Hang: true})
		}, nil, 1, 3},
		{"rate limited: nothing posted, no lookup", "C1", func(s *slacktestutil.Server) {
			s.FailNext(slacktestutil.PostMessage, 1, slacktestutil.Failure{Status: 429})
		}, nil, 1, 0},
		{"lookup impossible (scope): posts again", "C1", func(s *slacktestutil.Server) {
			s.SetScopes("chat:write")
			s.FailAfterPost(1, slacktestutil.Failure{Status: 500})
		}, nil, 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := slacktestutil.Start(t)
			var logs bytes.Buffer
			cfg := nslack.DefaultConfig()
			cfg.Token, cfg.APIURL = token, srv.URL()
			cfg.Timeout = 300 * time.Millisecond
			cfg.Retry.Sleep = (&sleeps{}).sleep
			cfg.Logger = slogTo(&logs)
			if tt.policy != nil {
				tt.policy(&cfg.Retry)
			}
			chat, err := nslack.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			tt.setup(srv)

			ref, err := chat.PostCard(t.Context(), tt.channel, incident(), tag)
			if err != nil {
				t.Fatalf("PostCard: %v", err)
			}
			cards := 0
			for _, p := range srv.Posts() {
				if p.ThreadTS == "" {
					cards++
				}
			}
			if cards != tt.cards {
				t.Errorf("server holds %d cards, want %d", cards, tt.cards)
			}
			if got := srv.Attempts(slacktestutil.History); got != tt.lookups {
				t.Errorf("%d conversations.history calls, want %d", got, tt.lookups)
			}
			card, ok := srv.Card(ref.Channel, ref.TS)
			if !ok || ref.Channel != srv.ChannelID(tt.channel) {
				t.Fatalf("ref %+v is not a card in %s", ref, srv.ChannelID(tt.channel))
			}
			var md struct {
				Payload map[string]string `json:"event_payload"`
			}
			if err := json.Unmarshal(card.Metadata, &md); err != nil || md.Payload["nonce"] != tag.Nonce {
				t.Errorf("card metadata %s, want nonce %s", card.Metadata, tag.Nonce)
			}
			if tt.cards > 1 && !strings.Contains(logs.String(), "posting again") {
				t.Errorf("no warning before posting again: %s", logs.String())
			}
		})
	}
}
