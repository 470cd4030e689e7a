package slacktestutil

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

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
	// Hang, when true, answers nothing: the call waits until the client
	// gives up (its timeout or a cancelled context) or the server closes,
	// as when Slack is slow or its answer is lost on the way.
	Hang bool
}

// FailNext makes the next n calls of method fail with f before they take
// effect, after any failures already queued.
func (s *Server) FailNext(method string, n int, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failures[method] = append(s.failures[method], f)
	}
}

// FailAfterPost makes the next n chat.postMessage calls that succeed take
// effect — the message is recorded, and conversations.history lists it —
// and then answer with f instead of ok: the outcome is unknown to the
// client, as when Slack posted but the answer was a 500 or never came
// (Failure.Hang). Failures queued by FailNext come first.
func (s *Server) FailAfterPost(n int, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.after[PostMessage] = append(s.after[PostMessage], f)
	}
}

// Down starts an outage: until Up, every call of every method this
// package answers fails with f before it takes effect (with f.Hang, it
// hangs until its client gives up). Calls are still counted by Attempts;
// failures queued by FailNext wait for the end of the outage.
func (s *Server) Down(f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = &f
}

// Up ends an outage begun with Down: calls from now on are answered as
// usual. Calls already hanging keep hanging until their clients give up.
func (s *Server) Up() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = nil
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
// included). A held call whose client gives up takes no effect. Holds are
// released at Close.
func (s *Server) HoldNext(method string) *Hold {
	h := &Hold{arrived: make(chan struct{}), released: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holds[method] = append(s.holds[method], h)
	return h
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, f Failure) {
	if f.Hang {
		select {
		case <-r.Context().Done():
		case <-s.closed:
			panic(http.ErrAbortHandler) // drop the connection unanswered
		}
		return
	}
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
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(okFalse(code))
}

// Arrival is one chat.postMessage or chat.update call as it reached the
// server, failed ones included.
type Arrival struct {
	// Method is PostMessage or Update.
	Method string
	// Channel is the channel as sent: an id, or a name such as "#alerts".
	Channel string
	// At is when the call reached the server (time.Now, not SetClock's
	// clock), after any hold.
	At time.Time
	// RetryAfter is the Retry-After the server answered with, for a call
	// it rate limited; zero otherwise. The channel's window is
	// [At, At+RetryAfter).
	RetryAfter time.Duration
}

// channelLimit is a rate limit queued for the calls into one channel.
type channelLimit struct {
	channel    string
	retryAfter time.Duration
}

// RateLimitChannel makes the next n chat.postMessage and chat.update
// calls into channel (an id or a name; both match the same channel once
// the server knows it) answer HTTP 429 with a Retry-After of retryAfter,
// rounded up to whole seconds, before they take effect. They come after an
// outage (Down) and before failures queued by FailNext.
func (s *Server) RateLimitChannel(channel string, n int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.limits = append(s.limits, channelLimit{channel: channel, retryAfter: retryAfter})
	}
}

// Arrivals returns every chat.postMessage and chat.update call received,
// in order of arrival.
func (s *Server) Arrivals() []Arrival {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.arrivals)
}

// sameChannel reports whether the channel references a and b name the
// same channel (under s.mu).
func (s *Server) sameChannel(a, b string) bool {
	if a == b {
		return true
	}
	ca, cb := s.chans.lookup(a), s.chans.lookup(b)
	return ca != nil && ca == cb
}

// arrive records a call of method and returns the rate limit to answer it
// with, if one is queued for its channel (under s.mu).
func (s *Server) arrive(method string, form url.Values) *Failure {
	if method != PostMessage && method != Update {
		return nil
	}
	a := Arrival{Method: method, Channel: form.Get("channel"), At: time.Now()}
	var f *Failure
	if s.down == nil {
		for i, l := range s.limits {
			if s.sameChannel(l.channel, a.Channel) {
				s.limits = slices.Delete(s.limits, i, i+1)
				secs := (l.retryAfter + time.Second - 1) / time.Second
				a.RetryAfter = secs * time.Second
				f = &Failure{Status: http.StatusTooManyRequests, RetryAfter: a.RetryAfter}
				break
			}
		}
	}
	s.arrivals = append(s.arrivals, a)
	return f
}
