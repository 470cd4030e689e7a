// Package slacktestutil runs a fake Slack Web API for tests of anything
// that posts incident cards: slack-go's slacktest server, plus handlers
// that record chat.postMessage and chat.update, hand out a unique ts per
// message, keep each card's current state and thread, and fail on demand
// (HTTP 500, 429 with Retry-After, or an ok=false Slack error).
//
// Usage from any package's test:
//
//	srv := slacktestutil.Start(t)
//	chat, _ := slack.New(slack.Config{Token: "xoxb-test", APIURL: srv.URL()})
//	srv.FailNext("chat.postMessage", 2, slacktestutil.Failure{Status: 500})
//	ref, err := chat.PostCard(ctx, "C0INCIDENTS", inc)
//	card, _ := srv.Card(ref.Channel, ref.TS)
package slacktestutil

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack/slacktest"
)

// Methods the server records.
const (
	PostMessage = "chat.postMessage"
	Update      = "chat.update"
)

// Message is one recorded, accepted call, or the current state of a card.
type Message struct {
	// Method is PostMessage or Update.
	Method string
	// Channel is the channel as sent.
	Channel string
	// TS is the ts the server assigned (post) or the one edited (update).
	TS string
	// ThreadTS is the parent's ts for thread replies, else empty.
	ThreadTS string
	// Text is the fallback/mrkdwn text as sent.
	Text string
	// Blocks is the blocks JSON as sent; nil when there were none.
	Blocks json.RawMessage
	// Form is the whole request form (it holds the token).
	Form url.Values
}

// Failure is an injected failure for one call.
type Failure struct {
	// Status is the HTTP status to answer, e.g. 500 or 429. Zero means
	// 200 with {"ok":false,"error":Error}.
	Status int
	// RetryAfter, when positive, is sent as Retry-After in whole seconds
	// (rounded up).
	RetryAfter time.Duration
	// Error is the Slack error code of an ok=false answer; default
	// "internal_error".
	Error string
}

// Server is a running fake Slack Web API. Its methods are safe for
// concurrent use.
type Server struct {
	srv *slacktest.Server

	mu       sync.Mutex
	token    string
	seq      int
	calls    []Message
	attempts map[string]int
	failures map[string][]Failure
	holds    map[string][]*Hold
	cards    map[string]*Message // channel + "/" + ts
	threads  map[string][]Message
}

// New starts a server; call Close when done. Extra binders run after this
// package's own handlers, so they can add routes but not replace
// chat.postMessage or chat.update.
func New(binders ...slacktest.Binder) *Server {
	s := &Server{
		attempts: map[string]int{},
		failures: map[string][]Failure{},
		holds:    map[string][]*Hold{},
		cards:    map[string]*Message{},
		threads:  map[string][]Message{},
	}
	bind := func(c slacktest.Customize) {
		c.Handle("/"+PostMessage, s.handle(PostMessage))
		c.Handle("/"+Update, s.handle(Update))
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

// Close releases held calls and stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	for _, hs := range s.holds {
		for _, h := range hs {
			h.Release()
		}
	}
	s.mu.Unlock()
	s.srv.Stop()
}

// RequireToken makes every recorded method answer invalid_auth unless the
// request carries token (form field or bearer header).
func (s *Server) RequireToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = token
}

// FailNext makes the next n calls of method (PostMessage or Update) fail
// with f, after any failures already queued.
func (s *Server) FailNext(method string, n int, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failures[method] = append(s.failures[method], f)
	}
}

// Hold is a call of a method kept waiting: the server has read the
// request and answers only once Release is called (or the client gives up).
type Hold struct {
	arrived  chan struct{}
	released chan struct{}
	once     sync.Once
}

// Arrived is closed when the held call has reached the server.
func (h *Hold) Arrived() <-chan struct{} { return h.arrived }

// Release lets the held call be answered. It is safe to call more than once.
func (h *Hold) Release() { h.once.Do(func() { close(h.released) }) }

// HoldNext keeps the next call of method waiting until the returned Hold is
// released; the call is then handled as usual (failures queued by FailNext
// included). Holds are released at Close.
func (s *Server) HoldNext(method string) *Hold {
	h := &Hold{arrived: make(chan struct{}), released: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holds[method] = append(s.holds[method], h)
	return h
}

// Attempts counts the calls of method received, failed ones included.
func (s *Server) Attempts(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[method]
}

// Calls returns every accepted call in order.
func (s *Server) Calls() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.calls...)
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

// Card returns the current state of the top-level message at channel/ts:
// as posted, with the text and blocks of the last update applied.
func (s *Server) Card(channel, ts string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.cards[channel+"/"+ts]
	if !ok {
		return Message{}, false
	}
	return *m, true
}

// Thread returns the replies posted under channel/ts, in order.
func (s *Server) Thread(channel, ts string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.threads[channel+"/"+ts]...)
}

func (s *Server) handle(method string) http.HandlerFunc {
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
		defer s.mu.Unlock()
		s.attempts[method]++
		if q := s.failures[method]; len(q) > 0 {
			s.failures[method] = q[1:]
			fail(w, q[0])
			return
		}
		if s.token != "" && form.Get("token") != s.token && r.Header.Get("Authorization") != "Bearer "+s.token {
			okFalse(w, "invalid_auth")
			return
		}

		m := Message{
			Method:   method,
			Channel:  form.Get("channel"),
			ThreadTS: form.Get("thread_ts"),
			Text:     form.Get("text"),
			Form:     form,
		}
		if b := form.Get("blocks"); b != "" {
			m.Blocks = json.RawMessage(b)
		}
		if m.Channel == "" {
			okFalse(w, "channel_not_found")
			return
		}

		switch method {
		case PostMessage:
			s.seq++
			m.TS = fmt.Sprintf("1700000000.%06d", s.seq)
			if m.ThreadTS != "" {
				if _, ok := s.cards[m.Channel+"/"+m.ThreadTS]; !ok {
					okFalse(w, "thread_not_found")
					return
				}
				s.threads[m.Channel+"/"+m.ThreadTS] = append(s.threads[m.Channel+"/"+m.ThreadTS], m)
			} else {
				c := m
				s.cards[m.Channel+"/"+m.TS] = &c
			}
		case Update:
			m.TS = form.Get("ts")
			card, ok := s.cards[m.Channel+"/"+m.TS]
			if !ok {
				okFalse(w, "message_not_found")
				return
			}
			card.Text, card.Blocks = m.Text, m.Blocks
		}
		s.calls = append(s.calls, m)

		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"ok": true, "channel": m.Channel, "ts": m.TS, "text": m.Text,
			"message": map[string]any{"type": "message", "text": m.Text, "ts": m.TS, "thread_ts": m.ThreadTS},
		})
	}
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

func fail(w http.ResponseWriter, f Failure) {
	if f.RetryAfter > 0 {
		secs := (f.RetryAfter + time.Second - 1) / time.Second
		w.Header().Set("Retry-After", fmt.Sprint(int64(secs)))
	}
	if f.Status != 0 {
		http.Error(w, http.StatusText(f.Status), f.Status)
		return
	}
	code := f.Error
	if code == "" {
		code = "internal_error"
	}
	okFalse(w, code)
}

func okFalse(w http.ResponseWriter, code string) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": code})
}
