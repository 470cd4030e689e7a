package pagerduty_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/handlers/pagerduty"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/secret"
)

// The fixtures' made-up secrets (signature.worked_examples.json).
const (
	current  = "pd-whsec-7Kq2Vn9xR4tY1wZ8bC3dF6gH0jL5mP2s"
	previous = "pd-whsec-OLD-2c7e0b5a9f1d4e3b8a6c2f0e9d7b5a31"
)

// sender records commands; known lists the incident keys that exist.
type sender struct {
	mu    sync.Mutex
	sent  []command.Command
	known map[string]bool
	err   error
}

func (s *sender) Send(_ context.Context, c command.Command) (engine.Ref, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return engine.Ref{}, s.err
	}
	if s.known != nil && !s.known[c.Incident] {
		return engine.Ref{}, fmt.Errorf("incident %s: %w", c.Incident, engine.ErrNoIncident)
	}
	s.sent = append(s.sent, c)
	return engine.Ref{ID: c.Incident}, nil
}

func newServer(t *testing.T, s *sender, secrets ...string) *httptest.Server {
	t.Helper()
	var cfg pagerduty.Config
	for _, x := range secrets {
		cfg.Secrets = append(cfg.Secrets, secret.Secret(x))
	}
	rc, err := pagerduty.New(cfg, pagerduty.Deps{Commands: s})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	rc.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url string, body []byte, sig, webhookID string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+pagerduty.Path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set("X-PagerDuty-Signature", sig)
	}
	if webhookID != "" {
		req.Header.Set("X-Webhook-Id", webhookID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func sign(body []byte, secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

type worked struct {
	Examples []struct {
		EventType string `json:"event_type"`
		BodyFile  string `json:"body_file"`
		Single    string `json:"expected_header_single_secret"`
		Rotation  string `json:"expected_header_during_rotation"`
	} `json:"examples"`
}

func examples(t *testing.T) worked {
	t.Helper()
	b, err := os.ReadFile("testdata/signature.worked_examples.json")
	if err != nil {
		t.Fatal(err)
	}
	var w worked
	if err := json.Unmarshal(b, &w); err != nil {
		t.Fatal(err)
	}
	return w
}

func body(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + strings.TrimPrefix(file, "webhooks_v3/"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWorkedSignatures: PagerDuty's own signatures over the exact bytes
// pass, with one secret, during PagerDuty's rotation (two signatures in the
// header), and during ours (the previous secret still configured).
func TestWorkedSignatures(t *testing.T) {
	for _, ex := range examples(t).Examples {
		b := body(t, ex.BodyFile)
		for _, tc := range []struct {
			name    string
			secrets []string
			header  string
		}{
			{"one secret", []string{current}, ex.Single},
			{"pagerduty rotating", []string{current}, ex.Rotation},
			{"ours rotating", []string{"a-newer-secret-not-yet-used-by-pd", current}, ex.Single},
			{"only the previous configured", []string{previous}, ex.Rotation},
		} {
			s := &sender{}
			srv := newServer(t, s, tc.secrets...)
			if code := post(t, srv.URL, b, tc.header, "wh-1"); code != http.StatusAccepted {
				t.Errorf("%s %s: %d, want 202", ex.EventType, tc.name, code)
			}
		}
	}
}

// TestRefusedRequestsPublishNothing: forged, unsigned, v2-only, tampered
// and oversized requests are refused before anything reaches the engine.
func TestRefusedRequestsPublishNothing(t *testing.T) {
	ex := examples(t).Examples[1] // acknowledged
	b := body(t, ex.BodyFile)
	s := &sender{}
	srv := newServer(t, s, current)
	tampered := bytes.Replace(b, []byte("acknowledged"), []byte("resolved"), 1)
	huge := append(bytes.Repeat([]byte(" "), pagerduty.MaxBodyBytes), b...)
	for _, tc := range []struct {
		name string
		body []byte
		sig  string
		want int
	}{
		{"forged with another secret", b, sign(b, "not-the-secret"), http.StatusUnauthorized},
		{"unsigned", b, "", http.StatusUnauthorized},
		{"only v2 signatures", b, strings.ReplaceAll(ex.Single, "v1=", "v2="), http.StatusUnauthorized},
		{"body changed after signing", tampered, ex.Single, http.StatusUnauthorized},
		{"oversized", huge, sign(huge, current), http.StatusRequestEntityTooLarge},
		{"signed garbage", []byte("{"), sign([]byte("{"), current), http.StatusBadRequest},
	} {
		if code := post(t, srv.URL, tc.body, tc.sig, "wh"); code != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, code, tc.want)
		}
	}
	if len(s.sent) != 0 {
		t.Fatalf("refused requests sent %d commands", len(s.sent))
	}
	if _, err := pagerduty.New(pagerduty.Config{}, pagerduty.Deps{Commands: s}); err == nil {
		t.Fatal("a receiver without a secret: want an error")
	}
}

// withEvent rewrites a fixture's event type, agent and incident key, as
// PagerDuty would send them for our incident.
func withEvent(t *testing.T, file, eventType, key string, agent any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body(t, file), &m); err != nil {
		t.Fatal(err)
	}
	ev := m["event"].(map[string]any)
	ev["event_type"] = eventType
	ev["agent"] = agent
	ev["data"].(map[string]any)["incident_key"] = key
	b, _ := json.Marshal(m)
	return b
}

func TestWebhooksBecomeCommands(t *testing.T) {
	dana := map[string]any{"id": "PUSR4DN", "type": "user_reference", "summary": "Dana Oncall"}
	integration := map[string]any{"id": "PINT1", "type": "events_api_v2_inbound_integration_reference", "summary": "incidentbot"}
	s := &sender{known: map[string]bool{"INC-1A2B3C4D": true}}
	srv := newServer(t, s, current)
	for _, tc := range []struct {
		eventType string
		agent     any
		key       string
		want      string // verb/actor/text, "" for nothing sent
	}{
		{"incident.acknowledged", dana, "INC-1A2B3C4D", "ack/Dana Oncall (pagerduty)/"},
		{"incident.unacknowledged", nil, "INC-1A2B3C4D", "unack/PagerDuty (pagerduty)/"},
		{"incident.resolved", dana, "INC-1A2B3C4D", "resolve/Dana Oncall (pagerduty)/resolved in PagerDuty"},
		{"incident.reassigned", dana, "INC-1A2B3C4D", "note/Dana Oncall (pagerduty)/reassigned in PagerDuty to Dana Oncall"},
		{"incident.escalated", nil, "INC-1A2B3C4D", "note/PagerDuty (pagerduty)/escalated in PagerDuty to Dana Oncall"},
		{"incident.acknowledged", integration, "INC-1A2B3C4D", ""}, // our own ack, echoed back
		{"incident.triggered", integration, "INC-1A2B3C4D", ""},
		{"incident.priority_updated", dana, "INC-1A2B3C4D", ""},
		{"incident.acknowledged", dana, "someone-elses-key", ""}, // not ours
	} {
		b := withEvent(t, "incident_acknowledged.body.raw.json", tc.eventType, tc.key, tc.agent)
		before := len(s.sent)
		if code := post(t, srv.URL, b, sign(b, current), "wh-"+tc.eventType); code != http.StatusAccepted {
			t.Errorf("%s: %d, want 202", tc.eventType, code)
			continue
		}
		got := ""
		if len(s.sent) > before {
			c := s.sent[len(s.sent)-1]
			got = fmt.Sprintf("%s/%s/%s", c.Verb, c.By.String(), c.Text)
			if c.RequestID != "wh-"+tc.eventType || c.By.Via != "pagerduty" || c.At.IsZero() {
				t.Errorf("%s: command %+v", tc.eventType, c)
			}
		}
		if got != tc.want {
			t.Errorf("%s by %v: sent %q, want %q", tc.eventType, tc.agent, got, tc.want)
		}
	}
}

func TestBusDownAnswers503SoPagerDutyRetries(t *testing.T) {
	s := &sender{err: fmt.Errorf("publish: %w", bus.ErrUnavailable)}
	srv := newServer(t, s, current)
	b := withEvent(t, "incident_acknowledged.body.raw.json", "incident.acknowledged", "INC-1", map[string]any{"id": "U", "type": "user_reference", "summary": "U"})
	if code := post(t, srv.URL, b, sign(b, current), "wh"); code != http.StatusServiceUnavailable {
		t.Fatalf("bus down: %d, want 503", code)
	}
}

func FuzzDecode(f *testing.F) {
	for _, name := range []string{"incident_acknowledged", "incident_resolved", "incident_triggered"} {
		b, err := os.ReadFile("testdata/" + name + ".body.raw.json")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"event":{"id":"x","event_type":"incident.acknowledged","data":null}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := pagerduty.Decode(b)
		if err != nil {
			return
		}
		c, ok, why := w.Command("id")
		if ok {
			if err := c.Validate(); err != nil && c.Verb != input.Note {
				t.Fatalf("a command from a decodable webhook is invalid: %v (%+v)", err, c)
			}
		} else if why == "" {
			t.Fatal("ignored without a reason")
		}
	})
}
