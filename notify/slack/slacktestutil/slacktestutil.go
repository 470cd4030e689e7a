// Package slacktestutil runs a fake Slack Web API for tests of anything
// that posts incident cards: slack-go's slacktest server, plus handlers
// that speak Slack's wire format for chat.postMessage, chat.update,
// conversations.history, users.conversations and usergroups.users.list,
// and Socket Mode (apps.connections.open and a /ws the test drives). It hands out a unique,
// increasing ts per message (microseconds, like Slack), keeps each card's
// current state, metadata and thread, maps channel names to ids as Slack
// does, and fails on demand: before a call takes effect (HTTP 500, 429
// with Retry-After, an ok=false Slack error, a missing scope), after it
// did (the message is posted but the client hears an error or nothing),
// or every call for a while (an outage: Down, then Up).
//
// Usage from any package's test:
//
//	srv := slacktestutil.Start(t)
//	chat, _ := slack.New(slack.Config{Token: "xoxb-test", APIURL: srv.URL()})
//	srv.FailNext(slacktestutil.PostMessage, 2, slacktestutil.Failure{Status: 500})
//	ref, err := chat.PostCard(ctx, "#incidents", inc, tag)
//	card, _ := srv.Card(ref.Channel, ref.TS)
package slacktestutil

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack/slacktest"
)

// Methods the server answers itself.
const (
	PostMessage       = "chat.postMessage"
	Update            = "chat.update"
	History           = "conversations.history"
	UserConversations = "users.conversations"
)

// Message is one recorded, accepted call, or the current state of a card.
type Message struct {
	// Method is PostMessage or Update.
	Method string
	// Channel is the channel as sent: an id, or a name such as "#alerts".
	Channel string
	// ChannelID is the id the channel resolved to (Slack answers with it).
	ChannelID string
	// TS is the ts the server assigned (post) or the one edited (update).
	TS string
	// ThreadTS is the parent's ts for thread replies, else empty.
	ThreadTS string
	// Text is the fallback/mrkdwn text as sent.
	Text string
	// Blocks is the blocks JSON as sent; nil when there were none.
	Blocks json.RawMessage
	// Metadata is the message metadata JSON as sent ({"event_type":…,
	// "event_payload":{…}}); nil when there was none. An update without
	// metadata keeps the card's, as on Slack.
	Metadata json.RawMessage
	// Form is the whole request form (it holds the token).
	Form url.Values
}

// Server is a running fake Slack Web API. Its methods are safe for
// concurrent use.
type Server struct {
	srv    *slacktest.Server
	closed chan struct{}
	close  sync.Once

	mu       sync.Mutex
	token    string
	scopes   map[string]bool // nil grants every scope
	now      func() time.Time
	lastTS   int64 // microseconds of the last ts handed out
	calls    []Message
	forms    map[string][]url.Values
	attempts map[string]int
	failures map[string][]Failure
	after    map[string][]Failure
	holds    map[string][]*Hold
	down     *Failure       // every call fails with it while set (Down)
	limits   []channelLimit // queued by RateLimitChannel
	arrivals []Arrival
	cards    map[string]*Message // channel id + "/" + ts
	threads  map[string][]Message
	chans    directory
	groups   map[string][]string // user group id → members
	sock     sockets             // Socket Mode connections (socketmode.go)
}

// New starts a server; call Close when done. Extra binders run after this
// package's own handlers, so they can add routes but not replace the
// methods this package answers.
func New(binders ...slacktest.Binder) *Server {
	s := &Server{
		closed:   make(chan struct{}),
		now:      time.Now,
		forms:    map[string][]url.Values{},
		attempts: map[string]int{},
		failures: map[string][]Failure{},
		after:    map[string][]Failure{},
		holds:    map[string][]*Hold{},
		cards:    map[string]*Message{},
		threads:  map[string][]Message{},
		chans:    newDirectory(),
	}
	bind := func(c slacktest.Customize) {
		c.Handle("/"+PostMessage, s.route(PostMessage, s.post))
		c.Handle("/"+Update, s.route(Update, s.update))
		c.Handle("/"+History, s.route(History, s.history))
		c.Handle("/"+UserConversations, s.route(UserConversations, s.userConversations))
		c.Handle("/"+UserGroupsUsersList, s.route(UserGroupsUsersList, s.userGroupsUsersList))
		c.Handle("/"+AppsConnectionsOpen, s.appsConnectionsOpen)
		c.Handle("/ws", s.socket)
	}
	s.srv = slacktest.NewTestServer(append([]slacktest.Binder{bind}, binders...)...)
	s.srv.Start()
	return s
}

// Start is New with Close registered on tb's cleanup.
func Start(tb testing.TB, binders ...slacktest.Binder) *Server {
	tb.Helper()
	s := New(binders...)
	tb.Cleanup(s.Close)
	return s
}

// URL is the API base URL to give the client (with its trailing "/").
func (s *Server) URL() string { return s.srv.GetAPIURL() }

// Slack returns the underlying slacktest server.
func (s *Server) Slack() *slacktest.Server { return s.srv }

// Close releases held and hanging calls and stops the server.
func (s *Server) Close() {
	s.close.Do(func() { close(s.closed) })
	s.mu.Lock()
	for _, hs := range s.holds {
		for _, h := range hs {
			h.Release()
		}
	}
	s.mu.Unlock()
	s.closeSockets()
	s.srv.Stop()
}

// RequireToken makes every method this package answers reply invalid_auth
// unless the request carries token (form field or bearer header).
func (s *Server) RequireToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = token
}

// SetScopes grants the token only these scopes (by default it has every
// scope). A method that needs another one answers like Slack:
// {"ok":false,"error":"missing_scope","needed":…,"provided":…}.
// chat.postMessage and chat.update need chat:write, conversations.history
// channels:history (the fake's channels are public), users.conversations
// channels:read for public_channel and groups:read for private_channel.
func (s *Server) SetScopes(scopes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scopes = map[string]bool{}
	for _, sc := range scopes {
		s.scopes[sc] = true
	}
}

// SetClock sets the clock that timestamps new messages (default
// time.Now). A ts never goes backwards: a clock behind the last message
// yields that ts plus one microsecond.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// Attempts counts the calls of method received, failed ones included.
func (s *Server) Attempts(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[method]
}

// Forms returns the request form of every call of method received, in
// order, failed and held ones included.
func (s *Server) Forms(method string) []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.forms[method])
}

// Calls returns every accepted chat.postMessage and chat.update in order.
func (s *Server) Calls() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Posts returns the accepted chat.postMessage calls (cards and replies).
func (s *Server) Posts() []Message { return s.filter(PostMessage) }

// Updates returns the accepted chat.update calls.
func (s *Server) Updates() []Message { return s.filter(Update) }

func (s *Server) filter(method string) []Message {
	var out []Message
	for _, m := range s.Calls() {
		if m.Method == method {
			out = append(out, m)
		}
	}
	return out
}

// Card returns the current state of the top-level message at channel (an
// id or a name)/ts: as posted, with the text, blocks and metadata of the
// last update applied.
func (s *Server) Card(channel, ts string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chans.lookup(channel)
	if c == nil {
		return Message{}, false
	}
	m, ok := s.cards[c.id+"/"+ts]
	if !ok {
		return Message{}, false
	}
	return *m, true
}

// Thread returns the replies posted under channel (an id or a name)/ts,
// in order.
func (s *Server) Thread(channel, ts string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chans.lookup(channel)
	if c == nil {
		return nil
	}
	return slices.Clone(s.threads[c.id+"/"+ts])
}

// route serves method: it records the form, applies holds, an outage,
// queued failures, scopes and the token, then h (under s.mu), then any
// failure queued for after the call took effect.
func (s *Server) route(method string, h func(form url.Values) map[string]any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		form, err := parseForm(r, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}

		s.mu.Lock()
		s.forms[method] = append(s.forms[method], form)
		var hold *Hold
		if q := s.holds[method]; len(q) > 0 {
			hold, s.holds[method] = q[0], q[1:]
		}
		s.mu.Unlock()
		if hold != nil {
			close(hold.arrived)
			select {
			case <-hold.released:
			case <-r.Context().Done():
				return
			}
		}

		s.mu.Lock()
		s.attempts[method]++
		var answer map[string]any
		failure := s.arrive(method, form) // a rate limit queued for its channel
		switch q := s.failures[method]; {
		case failure != nil:
		case s.down != nil:
			f := *s.down
			failure = &f
		case len(q) > 0:
			failure, s.failures[method] = &q[0], q[1:]
		default:
			if needed := s.missingScope(method, form); needed != "" {
				answer = map[string]any{"ok": false, "error": "missing_scope", "needed": needed, "provided": s.provided()}
			} else if s.token != "" && form.Get("token") != s.token && r.Header.Get("Authorization") != "Bearer "+s.token {
				answer = okFalse("invalid_auth")
			} else {
				answer = h(form)
				if q := s.after[method]; len(q) > 0 && answer["ok"] == true {
					failure, s.after[method] = &q[0], q[1:]
				}
			}
		}
		s.mu.Unlock()

		if failure != nil {
			s.fail(w, r, *failure)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(answer)
	}
}

// missingScope returns the scope method lacks, or "" (under s.mu).
func (s *Server) missingScope(method string, form url.Values) string {
	if s.scopes == nil {
		return ""
	}
	var need []string
	switch method {
	case PostMessage, Update:
		need = []string{"chat:write"}
	case History:
		need = []string{"channels:history"}
	case UserGroupsUsersList:
		need = []string{"usergroups:read"}
	case UserConversations:
		types := form.Get("types")
		if types == "" {
			types = "public_channel"
		}
		for _, t := range strings.Split(types, ",") {
			switch strings.TrimSpace(t) {
			case "public_channel":
				need = append(need, "channels:read")
			case "private_channel":
				need = append(need, "groups:read")
			case "mpim":
				need = append(need, "mpim:read")
			case "im":
				need = append(need, "im:read")
			}
		}
	}
	for _, sc := range need {
		if !s.scopes[sc] {
			return sc
		}
	}
	return ""
}

// provided lists the granted scopes as Slack does (under s.mu).
func (s *Server) provided() string {
	var out []string
	for sc := range s.scopes {
		out = append(out, sc)
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

func parseForm(r *http.Request, body []byte) (url.Values, error) {
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var raw map[string]any
		if err := json.Unmarshal(body, &raw); err != nil {
			return nil, err
		}
		form := url.Values{}
		for k, v := range raw {
			switch v := v.(type) {
			case string:
				form.Set(k, v)
			default:
				b, _ := json.Marshal(v)
				form.Set(k, string(b))
			}
		}
		return form, nil
	}
	return url.ParseQuery(string(body))
}

func okFalse(code string) map[string]any { return map[string]any{"ok": false, "error": code} }
