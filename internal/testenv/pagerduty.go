package testenv

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
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
}

// PagerDuty is an Events API v2 server: POST /v2/enqueue answers 202 with
// the documented body and records the event.
type PagerDuty struct {
	URL    string
	mu     sync.Mutex
	events []PagerDutyEvent
}

// StartPagerDuty starts the server; it stops when the test ends.
func StartPagerDuty(t testing.TB) *PagerDuty {
	pd := &PagerDuty{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v2/enqueue" {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var ev PagerDutyEvent
		if err := json.Unmarshal(body, &ev); err != nil || ev.RoutingKey == "" || ev.EventAction == "" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"status":"invalid event","message":"Event object is invalid","errors":["bad"]}`)
			return
		}
		pd.mu.Lock()
		pd.events = append(pd.events, ev)
		pd.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "success", "message": "Event processed", "dedup_key": ev.DedupKey})
	}))
	t.Cleanup(srv.Close)
	pd.URL = srv.URL
	return pd
}

// Events returns the events received so far.
func (pd *PagerDuty) Events() []PagerDutyEvent {
	pd.mu.Lock()
	defer pd.mu.Unlock()
	return append([]PagerDutyEvent(nil), pd.events...)
}
