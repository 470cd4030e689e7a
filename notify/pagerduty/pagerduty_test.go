package pagerduty_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/notify/pagerduty"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Values of the documented examples in testdata/ (copied from
// shared/fixtures/pagerduty/events_v2).
const (
	routingKey = "3f9c2a7e1b4d4c8e9a6f0b2d7e5c1a38"
	dedupKey   = "69a00296f7b27e7c3d8b0f220495d763faf51220f41c87b7fc7cc3ff338878a9"
)

var t0 = time.Date(2025, 8, 13, 14, 2, 11, 512_000_000, time.UTC)

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func incident() notify.Incident {
	return notify.Incident{
		ID: "INC-2041", Key: `{}/{severity="critical"}:{alertname="HighErrorRate", service="api"}`, Version: 2,
		Title: "HighErrorRate service=api", Summary: "5xx ratio is 7.3% (threshold 5%)",
		Severity: notify.SeverityCritical, Status: notify.StatusFiring, Source: "alertmanager",
		Runbook: "high-error-rate", RunbookURL: "https://runbooks.example.com/api/high-error-rate",
		Labels: map[string]string{"alertname": "HighErrorRate", "service": "api", "severity": "critical", "namespace": "payments", "instance": "api.payments.prod-use1"},
		Alerts: []notify.Alert{{
			Fingerprint: "0df005333d9e37c9", Name: "HighErrorRate", Status: notify.StatusFiring,
			Summary: "5xx ratio is 7.3%", Labels: map[string]string{"alertname": "HighErrorRate", "pod": "api-7d9f"},
			StartsAt: t0, GeneratorURL: "http://prometheus:9090/graph?g0.expr=x",
		}},
		TruncatedAlerts: 3,
		Assessment:      []notify.Step{{Text: "Check error dashboard", Link: "https://grafana.example.com/d/api"}},
		Remediation: []notify.Proposal{{ID: "rollback", Title: "Roll back api", Action: "kubernetes.rollout_undo",
			Plan: "deployment payments/api: undo to revision 41", Approval: "one approver from @sre"}},
		Escalation: []notify.EscalationLevel{{Name: "L1", Who: "@oncall"}, {Name: "L2", After: 15 * time.Minute, Who: "@lead"}},
		Links: []notify.Link{
			{Text: "Slack", URL: "https://example.slack.com/archives/C1/p1700000000000001"},
			{Text: "Alertmanager", URL: "http://alertmanager.monitoring.svc:9093/#/alerts?receiver=incident-bot"},
			{Text: "bad", URL: "javascript:alert(1)"},
		},
		StartedAt: t0, UpdatedAt: t0,
	}
}

// fakePD is an Events API v2 server answering from a script.
type fakePD struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	paths  []string
	script []reply
}

type reply struct {
	status     int
	retryAfter string
	body       []byte
}

func startPD(t *testing.T, script ...reply) *fakePD {
	f := &fakePD{script: script}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.bodies = append(f.bodies, b)
		f.paths = append(f.paths, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
		rep := reply{status: http.StatusAccepted, body: readFile(t, "response.202.json")}
		if len(f.script) > 0 {
			rep, f.script = f.script[0], f.script[1:]
		}
		f.mu.Unlock()
		if rep.retryAfter != "" {
			w.Header().Set("Retry-After", rep.retryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.status)
		_, _ = w.Write(rep.body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakePD) requests() ([][]byte, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.bodies...), append([]string(nil), f.paths...)
}

type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return ctx.Err()
}

func newPager(t *testing.T, baseURL string, log io.Writer) (*pagerduty.Pager, *sleeps, *[]string) {
	t.Helper()
	s := &sleeps{}
	var mu sync.Mutex
	var results []string
	cfg := pagerduty.DefaultConfig()
	cfg.RoutingKey = routingKey
	cfg.BaseURL = baseURL
	cfg.ClientURL = "https://incident-bot.example.com/incidents/INC-2041"
	cfg.Retry.Sleep = s.sleep
	cfg.Retry.Rand = func() float64 { return 0 }
	cfg.Observer = func(sink, op, result string, _ time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		results = append(results, sink+"/"+op+"/"+result)
	}
	if log != nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(log, nil))
	}
	p, err := pagerduty.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p, s, &results
}

func jsonEqual(t *testing.T, got, want []byte) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("decode %s: %v", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(g, w)
}

func TestTriggerGolden(t *testing.T) {
	pd := startPD(t)
	p, _, obs := newPager(t, pd.URL, nil)
	if err := p.Page(t.Context(), notify.Page{Action: notify.PageTrigger, DedupKey: dedupKey, Incident: incident()}); err != nil {
		t.Fatal(err)
	}
	bodies, paths := pd.requests()
	if len(bodies) != 1 || paths[0] != "POST /v2/enqueue application/json" {
		t.Fatalf("requests %v", paths)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, bodies[0], "", "  "); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
	path := filepath.Join("testdata", "trigger.golden.json")
	if *update {
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want := readFile(t, "trigger.golden.json"); !bytes.Equal(pretty.Bytes(), want) {
		t.Errorf("trigger body differs from %s (go test ./notify/pagerduty -update):\n%s", path, pretty.Bytes())
	}

	// The documented fields are where the documented example has them.
	var got, doc map[string]any
	_ = json.Unmarshal(bodies[0], &got)
	_ = json.Unmarshal(readFile(t, "trigger.request.json"), &doc)
	for _, k := range []string{"routing_key", "event_action", "dedup_key", "client_url"} {
		if got[k] != doc[k] {
			t.Errorf("%s = %v, documented example has %v", k, got[k], doc[k])
		}
	}
	gp, dp := got["payload"].(map[string]any), doc["payload"].(map[string]any)
	for _, k := range []string{"source", "severity", "timestamp", "component", "group", "class"} {
		if gp[k] != dp[k] {
			t.Errorf("payload.%s = %v, documented example has %v", k, gp[k], dp[k])
		}
	}
	if (*obs)[0] != "pagerduty/page_trigger/success" {
		t.Errorf("observer saw %v", *obs)
	}
}

func TestAcknowledgeResolveMatchDocumentedBodies(t *testing.T) {
	for _, tt := range []struct {
		action  notify.PageAction
		fixture string
	}{
		{notify.PageAcknowledge, "acknowledge.request.json"},
		{notify.PageResolve, "resolve.request.json"},
	} {
		t.Run(string(tt.action), func(t *testing.T) {
			pd := startPD(t)
			p, _, _ := newPager(t, pd.URL+"/", nil) // a trailing slash is tolerated
			if err := p.Page(t.Context(), notify.Page{Action: tt.action, DedupKey: dedupKey, Incident: incident()}); err != nil {
				t.Fatal(err)
			}
			bodies, paths := pd.requests()
			if paths[0] != "POST /v2/enqueue application/json" {
				t.Errorf("request %s", paths[0])
			}
			if !jsonEqual(t, bodies[0], readFile(t, tt.fixture)) {
				t.Errorf("body %s, want %s", bodies[0], readFile(t, tt.fixture))
			}
		})
	}
}

func TestPageRoutingKeyRefOverridesDefault(t *testing.T) {
	pd := startPD(t)
	cfg := pagerduty.DefaultConfig()
	cfg.RoutingKey, cfg.BaseURL = routingKey, pd.URL
	cfg.RoutingKeys = map[string]string{"payments": "0123456789abcdef0123456789abcdef"}
	p, err := pagerduty.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Page(t.Context(), notify.Page{Action: notify.PageResolve, DedupKey: "k", RoutingKeyRef: "payments"}); err != nil {
		t.Fatal(err)
	}
	bodies, _ := pd.requests()
	if !strings.Contains(string(bodies[0]), `"routing_key":"0123456789abcdef0123456789abcdef"`) {
		t.Errorf("body %s, want the key the reference names", bodies[0])
	}
	// An unknown reference is never sent as a key: it fails for good.
	err = p.Page(t.Context(), notify.Page{Action: notify.PageTrigger, DedupKey: "k", RoutingKeyRef: "nope", Incident: incident()})
	if err == nil || notify.IsRetryable(err) || !strings.Contains(err.Error(), `routing key "nope" is not configured`) {
		t.Errorf("unknown reference: %v, want a permanent error naming it", err)
	}
	if bodies, _ := pd.requests(); len(bodies) != 1 {
		t.Errorf("an unknown reference reached PagerDuty: %d requests", len(bodies))
	}
}

func TestFailures(t *testing.T) {
	r400 := reply{status: 400, body: nil}
	tests := []struct {
		name       string
		script     []reply
		wantErr    string // substring; empty: success
		wantRetry  bool
		wantAfter  time.Duration
		wantCalls  int
		wantSleeps []time.Duration
	}{
		{"400 keeps the errors array", []reply{r400}, "events api answered HTTP 400: Unrecognized object: Event object format is unrecognized (JSON parse error)", false, 0, 1, nil},
		{"400 not JSON", []reply{{status: 400, body: []byte("<html>bad request</html>")}}, "HTTP 400: <html>bad request</html>", false, 0, 1, nil},
		{"429 then 202 honours Retry-After", []reply{{status: 429, retryAfter: "30", body: []byte(`{"status":"throttle event","message":"Requests for this service are arriving too quickly."}`)}}, "", false, 0, 2, []time.Duration{30 * time.Second}},
		{"500 twice then 202", []reply{{status: 500}, {status: 502}}, "", false, 0, 3, []time.Duration{500 * time.Millisecond, time.Second}},
		{"5xx exhausted", []reply{{status: 500}, {status: 500}, {status: 500}, {status: 503, retryAfter: "5"}}, "after 4 attempt(s): events api answered HTTP 503", true, 5 * time.Second, 4, []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second}},
		{"202 with odd body is success", []reply{{status: 202, body: []byte("ok")}}, "", false, 0, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range tt.script {
				if tt.script[i].status == 400 && tt.script[i].body == nil {
					tt.script[i].body = readFile(t, "response.400.json")
				}
			}
			pd := startPD(t, tt.script...)
			p, sl, obs := newPager(t, pd.URL, nil)
			err := p.Page(t.Context(), notify.Page{Action: notify.PageTrigger, DedupKey: dedupKey, Incident: incident()})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			} else {
				var ne *notify.Error
				if !errors.As(err, &ne) {
					t.Fatalf("err = %#v, want *notify.Error", err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "pagerduty trigger: ") {
					t.Errorf("err = %q, want it to contain %q", err, tt.wantErr)
				}
				if ne.Retryable != tt.wantRetry || notify.IsRetryable(err) != tt.wantRetry || ne.RetryAfter != tt.wantAfter {
					t.Errorf("retryable %v after %v, want %v after %v", ne.Retryable, ne.RetryAfter, tt.wantRetry, tt.wantAfter)
				}
				var se *pagerduty.StatusError
				if !errors.As(err, &se) {
					t.Errorf("err does not wrap *StatusError")
				}
				if !strings.HasSuffix((*obs)[0], "_error") {
					t.Errorf("observer saw %v", *obs)
				}
			}
			bodies, _ := pd.requests()
			if len(bodies) != tt.wantCalls {
				t.Errorf("%d calls, want %d", len(bodies), tt.wantCalls)
			}
			for _, b := range bodies[1:] {
				if !bytes.Equal(b, bodies[0]) {
					t.Errorf("retry sent a different body")
				}
			}
			if !reflect.DeepEqual(sl.d, tt.wantSleeps) {
				t.Errorf("slept %v, want %v", sl.d, tt.wantSleeps)
			}
		})
	}
}

func TestNetworkErrorIsRetryable(t *testing.T) {
	pd := startPD(t)
	pd.Close()
	p, sl, _ := newPager(t, pd.URL, nil)
	err := p.Page(t.Context(), notify.Page{Action: notify.PageTrigger, DedupKey: dedupKey, Incident: incident()})
	if !notify.IsRetryable(err) || len(sl.d) != 3 {
		t.Fatalf("err = %v (retryable %v), slept %v", err, notify.IsRetryable(err), sl.d)
	}
}

func TestDeadlineStopsRetries(t *testing.T) {
	pd := startPD(t, reply{status: 429, retryAfter: "60"})
	p, sl, _ := newPager(t, pd.URL, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := p.Page(ctx, notify.Page{Action: notify.PageTrigger, DedupKey: dedupKey, Incident: incident()})
	var ne *notify.Error
	if !errors.As(err, &ne) || !ne.Retryable || ne.RetryAfter != time.Minute || len(sl.d) != 0 {
		t.Fatalf("err = %#v, slept %v: want retryable, RetryAfter 1m, no sleep", err, sl.d)
	}
}

func TestInvalidPagesArePermanent(t *testing.T) {
	pd := startPD(t)
	p, _, _ := newPager(t, pd.URL, nil)
	noKey, _ := pagerduty.New(pagerduty.Config{BaseURL: pd.URL})
	for name, tt := range map[string]struct {
		p    *pagerduty.Pager
		page notify.Page
	}{
		"no dedup key":   {p, notify.Page{Action: notify.PageTrigger, Incident: incident()}},
		"unknown action": {p, notify.Page{Action: "snooze", DedupKey: "k"}},
		"no routing key": {noKey, notify.Page{Action: notify.PageResolve, DedupKey: "k"}},
	} {
		t.Run(name, func(t *testing.T) {
			err := tt.p.Page(t.Context(), tt.page)
			if err == nil || notify.IsRetryable(err) {
				t.Fatalf("err = %v, want a permanent error", err)
			}
		})
	}
	if bodies, _ := pd.requests(); len(bodies) != 0 {
		t.Errorf("%d requests sent for invalid pages", len(bodies))
	}
}

func TestRoutingKeyNeverLeaks(t *testing.T) {
	// A server that echoes the routing key back in its errors.
	echo := []byte(`{"status":"invalid event","message":"bad routing_key ` + routingKey + `","errors":["routing_key ` + routingKey + ` unknown"]}`)
	var logs bytes.Buffer
	var errs []error

	pd := startPD(t, reply{status: 400, body: echo})
	p, _, _ := newPager(t, pd.URL, &logs)
	errs = append(errs, p.Page(t.Context(), notify.Page{Action: notify.PageTrigger, DedupKey: dedupKey, Incident: incident()}))

	pd2 := startPD(t, reply{status: 500, body: echo}, reply{status: 500, body: echo}, reply{status: 500, body: echo}, reply{status: 500, body: echo})
	p2, _, _ := newPager(t, pd2.URL, &logs)
	errs = append(errs, p2.Page(t.Context(), notify.Page{Action: notify.PageTrigger, DedupKey: dedupKey, Incident: incident()}))

	pd3 := startPD(t)
	pd3.Close()
	p3, _, _ := newPager(t, pd3.URL, &logs)
	errs = append(errs, p3.Page(t.Context(), notify.Page{Action: notify.PageResolve, DedupKey: dedupKey}))

	for _, err := range errs {
		if err == nil {
			t.Fatal("expected an error")
		}
		if strings.Contains(err.Error(), routingKey) {
			t.Errorf("error carries the routing key: %v", err)
		}
	}
	if !strings.Contains(logs.String(), "retrying") {
		t.Errorf("expected retry logs, got %q", logs.String())
	}
	if strings.Contains(logs.String(), routingKey) {
		t.Errorf("logs carry the routing key:\n%s", logs.String())
	}
}

func TestEventLimits(t *testing.T) {
	inc := incident()
	inc.Title = strings.Repeat("€", 3000)
	for range 5000 {
		inc.Alerts = append(inc.Alerts, notify.Alert{Name: "A", Summary: strings.Repeat("x", 2000)})
	}
	long := strings.Repeat("k", 300)
	e, err := pagerduty.Event(notify.Page{Action: notify.PageTrigger, DedupKey: long, Incident: inc}, pagerduty.EventOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len([]rune(e.Payload.Summary)); n > 1024 {
		t.Errorf("summary %d characters", n)
	}
	if len(e.DedupKey) > 255 || e.DedupKey != pagerduty.DedupKey(long) {
		t.Errorf("dedup key %q", e.DedupKey)
	}
	b, _ := json.Marshal(e)
	if len(b) > 512<<10 {
		t.Errorf("event is %d bytes", len(b))
	}
	if pagerduty.Severity("bogus") != "error" {
		t.Error("unknown severity should map to error")
	}
}

func TestEUEndpoint(t *testing.T) {
	if pagerduty.EndpointEU != "https://events.eu.pagerduty.com" {
		t.Fatal(pagerduty.EndpointEU)
	}
	if _, err := pagerduty.New(pagerduty.Config{BaseURL: "events.eu.pagerduty.com"}); err == nil {
		t.Error("a base URL without scheme was accepted")
	}
}
