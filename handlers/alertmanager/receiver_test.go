package alertmanager_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/handlers/alertmanager"
	"github.com/incidentbot/incidentbot/secret"
)

const token = "3c1f0e6b2a9d4f7e8b5c0a1d2e3f4a5b"

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type harness struct {
	bus *bus.Bus
	srv *httptest.Server
	reg *prometheus.Registry
}

func newHarness(t *testing.T, cfg alertmanager.Config) *harness {
	t.Helper()
	bcfg := bus.DefaultConfig()
	bcfg.DataDir = t.TempDir()
	b, err := bus.Open(context.Background(), bcfg, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	reg := prometheus.NewRegistry()
	rc, err := alertmanager.New(cfg, alertmanager.Deps{Publisher: b, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return &harness{bus: b, srv: srv, reg: reg}
}

func (h *harness) post(t *testing.T, body []byte, mod func(*http.Request)) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+alertmanager.Path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	if mod != nil {
		mod(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (h *harness) stored(t *testing.T) uint64 {
	t.Helper()
	n, err := h.bus.EventsStored(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func bearer() alertmanager.Config {
	return alertmanager.Config{BearerToken: token}
}

func TestReceiverAcceptsAndDeduplicates(t *testing.T) {
	h := newHarness(t, bearer())
	body := fixture(t, "webhook.firing.grouped.json")
	code, out := h.post(t, body, nil)
	if code != http.StatusOK || out["status"] != "accepted" || out["alerts"] != float64(5) {
		t.Fatalf("first delivery: %d %v", code, out)
	}
	// Alertmanager retry: identical bytes.
	code, out = h.post(t, body, nil)
	if code != http.StatusOK || out["duplicate"] != true {
		t.Fatalf("retry: %d %v, want 200 duplicate", code, out)
	}
	// The HA peer sends the same alerts with its own externalURL and with
	// the alerts in another order.
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	m["externalURL"] = "http://alertmanager-1.monitoring.svc:9093"
	alerts := m["alerts"].([]any)
	alerts[0], alerts[4] = alerts[4], alerts[0]
	peer, _ := json.Marshal(m)
	code, out = h.post(t, peer, nil)
	if code != http.StatusOK || out["duplicate"] != true {
		t.Fatalf("HA peer: %d %v, want 200 duplicate", code, out)
	}
	if n := h.stored(t); n != 1 {
		t.Fatalf("stored %d events, want 1", n)
	}
	// A state change (two alerts resolved) is a new event.
	code, out = h.post(t, fixture(t, "webhook.firing.partially_resolved.json"), nil)
	if code != http.StatusOK || out["duplicate"] == true {
		t.Fatalf("partial resolve: %d %v", code, out)
	}
	if n := h.stored(t); n != 2 {
		t.Fatalf("stored %d events, want 2", n)
	}
	if got := counterValue(t, h.reg, "incidentbot_webhooks_total", "duplicate"); got != 2 {
		t.Fatalf("duplicate counter = %v, want 2", got)
	}
	// 5 firing, then 3 firing and 2 resolved; the duplicates add nothing.
	if got := labelledValue(t, h.reg, "incidentbot_alerts_received_total", "status", "firing"); got != 8 {
		t.Errorf("alerts_received_total{status=firing} = %v, want 8 (duplicates not counted)", got)
	}
	if got := labelledValue(t, h.reg, "incidentbot_alerts_received_total", "status", "resolved"); got != 2 {
		t.Errorf("alerts_received_total{status=resolved} = %v, want 2", got)
	}
}

// TestUnauthorizedAdvertisesTheConfiguredScheme: a 401 names the one
// scheme the receiver accepts.
func TestUnauthorizedAdvertisesTheConfiguredScheme(t *testing.T) {
	for _, tc := range []struct {
		auth alertmanager.Config
		want string
	}{
		{alertmanager.Config{BearerToken: token}, `Bearer realm="incidentbot"`},
		{alertmanager.Config{Username: "am", Password: "pw"}, `Basic realm="incidentbot", charset="UTF-8"`},
	} {
		h := newHarness(t, tc.auth)
		req, _ := http.NewRequest(http.MethodPost, h.srv.URL+alertmanager.Path, bytes.NewReader(fixture(t, "webhook.firing.single.json")))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Values("WWW-Authenticate"); resp.StatusCode != 401 || len(got) != 1 || got[0] != tc.want {
			t.Errorf("%d WWW-Authenticate %q, want 401 with %q", resp.StatusCode, got, tc.want)
		}
	}
	if _, err := alertmanager.New(alertmanager.Config{BearerToken: token, Username: "am", Password: "pw"}, alertmanager.Deps{}); err == nil {
		t.Error("bearer token and basic auth both configured: want an error")
	}
}

// labelledValue reads the counter name{label=value} from reg.
func labelledValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == name && l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0
}

// counterValue reads the counter name{result=result} from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{result=%q}", name, result)
	return 0
}

func TestReceiverRejects(t *testing.T) {
	good := fixture(t, "webhook.firing.single.json")
	big := append([]byte(`{"version":"4","groupKey":"x","alerts":[],"pad":"`), bytes.Repeat([]byte("a"), 2<<20)...)
	big = append(big, []byte(`"}`)...)
	cases := []struct {
		name string
		body []byte
		mod  func(*http.Request)
		want int
	}{
		{"no credentials", good, func(r *http.Request) { r.Header.Del("Authorization") }, 401},
		{"forged token", good, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+strings.Repeat("0", 32)) }, 401},
		{"token prefix", good, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token[:10]) }, 401},
		{"basic auth not configured", good, func(r *http.Request) { r.SetBasicAuth("alertmanager", token) }, 401},
		{"not json", []byte("hello"), nil, 400},
		{"truncated json", good[:len(good)/2], nil, 400},
		{"wrong version", bytes.Replace(good, []byte(`"version": "4"`), []byte(`"version": "3"`), 1), nil, 400},
		{"no alerts", []byte(`{"version":"4","groupKey":"{}:{}","alerts":[]}`), nil, 400},
		{"bad alert status", []byte(`{"version":"4","groupKey":"{}:{}","alerts":[{"status":"pending","labels":{"a":"b"},"startsAt":"2025-01-01T00:00:00Z"}]}`), nil, 400},
		{"oversized", big, nil, 413},
	}
	h := newHarness(t, bearer())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := h.post(t, tc.body, tc.mod)
			if code != tc.want {
				t.Fatalf("status %d (%v), want %d", code, out, tc.want)
			}
			if out["error"] == "" || out["error"] == nil {
				t.Fatalf("no error text in %v", out)
			}
		})
	}
	if n := h.stored(t); n != 0 {
		t.Fatalf("rejected requests stored %d events", n)
	}
	resp, err := http.Get(h.srv.URL + alertmanager.Path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d, want 405", resp.StatusCode)
	}
}

func TestReceiverBasicAuth(t *testing.T) {
	h := newHarness(t, alertmanager.Config{Username: "alertmanager", Password: secret.Secret("s3cret")})
	body := fixture(t, "webhook.firing.single.json")
	if code, out := h.post(t, body, func(r *http.Request) { r.SetBasicAuth("alertmanager", "s3cret") }); code != 200 {
		t.Fatalf("good basic auth: %d %v", code, out)
	}
	for _, mod := range []func(*http.Request){
		func(r *http.Request) { r.SetBasicAuth("alertmanager", "wrong") },
		func(r *http.Request) { r.SetBasicAuth("someone", "s3cret") },
	} {
		if code, _ := h.post(t, body, mod); code != 401 {
			t.Fatalf("bad basic auth: %d, want 401", code)
		}
	}
}

func TestReceiverAnswers503WhenBusIsDown(t *testing.T) {
	h := newHarness(t, bearer())
	h.bus.Close()
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+alertmanager.Path, bytes.NewReader(fixture(t, "webhook.firing.single.json")))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("bus down: %d retry-after=%q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestReceiverRequiresAuthUnlessAllowed(t *testing.T) {
	if _, err := alertmanager.New(alertmanager.Config{}, alertmanager.Deps{}); err == nil {
		t.Fatal("receiver without credentials: want error")
	}
	if _, err := alertmanager.New(alertmanager.Config{AllowUnauthenticated: true}, alertmanager.Deps{}); err != nil {
		t.Fatalf("explicitly unauthenticated: %v", err)
	}
}

func TestTruncatedAlertsReported(t *testing.T) {
	h := newHarness(t, bearer())
	body := bytes.Replace(fixture(t, "webhook.firing.single.json"), []byte(`"truncatedAlerts": 0`), []byte(`"truncatedAlerts": 7`), 1)
	code, out := h.post(t, body, nil)
	if code != 200 || out["truncated_alerts"] != float64(7) {
		t.Fatalf("truncated: %d %v", code, out)
	}
}
