package testenv

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// PagerDutyEvent is one Events API v2 request as received.
type PagerDutyEvent struct {
	RoutingKey  string `json:"routing_key"`
	EventAction string `json:"event_action"`
	DedupKey    string `json:"dedup_key"`
	Payload     struct {
		Summary  string `json:"summary"`
		Source   string `json:"source"`
		Severity string `json:"severity"`
	} `json:"payload"`
	// Received is when the server accepted the event.
	Received time.Time `json:"-"`
}

// PagerDutyFailure is how the server answers while it is down.
type PagerDutyFailure struct {
	// Status is the HTTP status to answer, e.g. 500 or 429.
	Status int
	// Hang, when true, answers nothing: the request waits until its
	// client gives up or the server stops.
	Hang bool
}

// PagerDuty is an Events API v2 server: POST /v2/enqueue answers 202 with
// the documented body and records the event, except during an outage
// (Down), when it fails without recording anything.
type PagerDuty struct {
	URL      string
	mu       sync.Mutex
	events   []PagerDutyEvent
	attempts int
	down     *PagerDutyFailure
	closed   chan struct{}
}

// StartPagerDuty starts the server; it stops when the test ends.
func StartPagerDuty(t testing.TB) *PagerDuty {
	pd := &PagerDuty{closed: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v2/enqueue" {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		body, _ := io.ReadAll(r.Body)
		pd.mu.Lock()
		pd.attempts++
		down := pd.down
		pd.mu.Unlock()
		if down != nil {
			if down.Hang {
				select {
				case <-r.Context().Done():
				case <-pd.closed:
				}
				return
			}
			http.Error(w, http.StatusText(down.Status), down.Status)
			return
		}
		var ev PagerDutyEvent
		if err := json.Unmarshal(body, &ev); err != nil || ev.RoutingKey == "" || ev.EventAction == "" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"status":"invalid event","message":"Event object is invalid","errors":["bad"]}`)
			return
		}
		ev.Received = time.Now()
		pd.mu.Lock()
		pd.events = append(pd.events, ev)
		pd.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "success", "message": "Event processed", "dedup_key": ev.DedupKey})
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(pd.closed) }) // runs first: hanging requests end before Close waits for them
	pd.URL = srv.URL
	return pd
}

// Events returns the events received so far.
func (pd *PagerDuty) Events() []PagerDutyEvent {
	pd.mu.Lock()
	defer pd.mu.Unlock()
	return append([]PagerDutyEvent(nil), pd.events...)
}

// Attempts counts the requests to /v2/enqueue, failed ones included.
func (pd *PagerDuty) Attempts() int {
	pd.mu.Lock()
	defer pd.mu.Unlock()
	return pd.attempts
}

// Down starts an outage: until Up, every request fails with f and records
// nothing.
func (pd *PagerDuty) Down(f PagerDutyFailure) {
	pd.mu.Lock()
	defer pd.mu.Unlock()
	pd.down = &f
}

// Up ends an outage. Requests already hanging keep hanging until their
// clients give up.
func (pd *PagerDuty) Up() {
	pd.mu.Lock()
	defer pd.mu.Unlock()
	pd.down = nil
}
