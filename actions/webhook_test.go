package actions

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/secret"
)

// hookServer is an httptest server that records what it is sent.
type hookServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	method, path string
	header       http.Header
	body         []byte
}

func newHookServer(t *testing.T, h http.HandlerFunc) *hookServer {
	t.Helper()
	s := &hookServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, recorded{r.Method, r.URL.Path, r.Header.Clone(), b})
		s.mu.Unlock()
		if h != nil {
			h(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *hookServer) requests() []recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recorded(nil), s.reqs...)
}

func loadWebhook(t *testing.T, params string) Runner {
	t.Helper()
	b, err := load(t, "webhook", params)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := b.(Runner)
	if !ok {
		t.Fatal("webhook is not a Runner")
	}
	if _, ok := b.(Reverter); ok {
		t.Error("webhook is a Reverter: a POST cannot be undone")
	}
	return r
}

func webhookEnv(t *testing.T, allow ...string) Env {
	t.Helper()
	w, err := NewWebhooks(WebhookConfig{Allow: allow, Secrets: map[string]secret.Secret{"deploy-token": "Bearer s3cr3t-t0ken"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return Env{Webhooks: w}
}

// TestWebhookPostsOnce: an allowed URL gets one POST with the rendered
// JSON body, the headers and the secret header; no plan, outcome or
// error shows the secret; a 2xx verifies.
func TestWebhookPostsOnce(t *testing.T) {
	srv := newHookServer(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	env := webhookEnv(t, srv.URL+"/hooks/")
	r := loadWebhook(t, `url: '`+srv.URL+`/hooks/{{ .Labels.service }}/restart'
body:
  service: '{{ .Labels.service }}'
  action: restart
headers:
  X-Source: incidentbot
secret_headers:
  Authorization: deploy-token
`)
	ctx := context.Background()
	data := PlanData{Labels: map[string]string{"service": "api"}}
	p, err := r.Resolve(ctx, env, data)
	if err != nil {
		t.Fatal(err)
	}
	want := `webhook: POST ` + srv.URL + `/hooks/api/restart {"action":"restart","service":"api"} (headers: X-Source, Authorization from secret deploy-token)`
	if p.Text != want {
		t.Errorf("plan text:\n%s\nwant\n%s", p.Text, want)
	}
	if len(srv.requests()) != 0 {
		t.Fatal("Resolve posted")
	}
	out, err := r.Run(ctx, env, p)
	if err != nil {
		t.Fatal(err)
	}
	reqs := srv.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	got := reqs[0]
	var body map[string]string
	if err := json.Unmarshal(got.body, &body); err != nil || len(body) != 2 || body["service"] != "api" || body["action"] != "restart" {
		t.Errorf("body %s (%v), want {action: restart, service: api}", got.body, err)
	}
	if got.method != http.MethodPost || got.path != "/hooks/api/restart" || got.header.Get("Content-Type") != "application/json" ||
		got.header.Get("X-Source") != "incidentbot" || got.header.Get("Authorization") != "Bearer s3cr3t-t0ken" {
		t.Errorf("request %s %s headers %v", got.method, got.path, got.header)
	}
	if err := r.Verify(ctx, env, p, out); err != nil {
		t.Errorf("verify a 202: %v", err)
	}
	if !strings.Contains(out.Detail, "202") {
		t.Errorf("detail %q does not record the status", out.Detail)
	}
	for _, s := range []string{p.Text, p.Target, string(p.Params), out.Detail, string(out.After)} {
		if strings.Contains(s, "s3cr3t") {
			t.Errorf("secret in %q", s)
		}
	}
}

// TestWebhookRefusesOffList: a rendered URL outside the allowlist is
// refused at Resolve, and nothing is sent; so are a look-alike path, a
// path stepping out with "..", and an empty allowlist.
func TestWebhookRefusesOffList(t *testing.T) {
	allowed := newHookServer(t, nil)
	other := newHookServer(t, nil)
	env := webhookEnv(t, allowed.URL+"/hooks/")
	ctx := context.Background()
	for _, tc := range []struct{ url, want string }{
		{other.URL + "/hooks/x", "not under any prefix"},
		{allowed.URL + "/hooksevil/x", "not under any prefix"},
		{strings.Replace(allowed.URL, "http://", "https://", 1) + "/hooks/x", "not under any prefix"},
		{allowed.URL + "/hooks/../admin", `".." path segment`},
		{allowed.URL + "/hooks/%2e%2e/admin", `".." path segment`},
	} {
		r := loadWebhook(t, "url: '{{ .Labels.url }}'\n")
		_, err := r.Resolve(ctx, env, PlanData{Labels: map[string]string{"url": tc.url}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("resolve %s: %v, want %q", tc.url, err, tc.want)
		}
	}
	r := loadWebhook(t, "url: "+allowed.URL+"/hooks/x\n")
	if _, err := r.Resolve(ctx, Env{}, PlanData{}); !errors.Is(err, ErrDryRun) {
		t.Errorf("resolve without actions.webhook: %v, want a dry run", err)
	}
	if _, err := r.Resolve(ctx, webhookEnv(t), PlanData{}); err == nil || !strings.Contains(err.Error(), "allow is empty") {
		t.Errorf("resolve with an empty allowlist: %v", err)
	}
	if n := len(allowed.requests()) + len(other.requests()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

// TestWebhookRedirects: a redirect to a host off the list is not
// followed; one within the list is.
func TestWebhookRedirects(t *testing.T) {
	other := newHookServer(t, nil)
	var allowed *hookServer
	allowed = newHookServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hooks/away":
			http.Redirect(w, r, other.URL+"/hooks/x", http.StatusTemporaryRedirect)
		case "/hooks/moved":
			http.Redirect(w, r, allowed.URL+"/hooks/here", http.StatusPermanentRedirect)
		}
	})
	env := webhookEnv(t, allowed.URL+"/hooks/", other.URL+"/elsewhere/")
	ctx := context.Background()

	r := loadWebhook(t, "url: "+allowed.URL+"/hooks/away\nbody: {a: b}\n")
	p, err := r.Resolve(ctx, env, PlanData{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(ctx, env, p); err == nil || !strings.Contains(err.Error(), "redirect refused") {
		t.Errorf("run redirected off the list: %v, want refused", err)
	}
	if n := len(other.requests()); n != 0 {
		t.Errorf("the off-list host got %d requests", n)
	}

	r = loadWebhook(t, "url: "+allowed.URL+"/hooks/moved\nbody: {a: b}\n")
	if p, err = r.Resolve(ctx, env, PlanData{}); err != nil {
		t.Fatal(err)
	}
	out, err := r.Run(ctx, env, p)
	if err != nil {
		t.Fatal(err)
	}
	reqs := allowed.requests()
	last := reqs[len(reqs)-1]
	if last.path != "/hooks/here" || last.method != http.MethodPost || string(last.body) != `{"a":"b"}` {
		t.Errorf("after an allowed redirect: %s %s %s", last.method, last.path, last.body)
	}
	if err := r.Verify(ctx, env, p, out); err != nil {
		t.Errorf("verify: %v", err)
	}
}

// TestWebhookFailures: a non-2xx answer fails the check; the run's
// context bounds the post.
func TestWebhookFailures(t *testing.T) {
	srv := newHookServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hooks/hang" {
			<-r.Context().Done()
			return
		}
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	env := webhookEnv(t, srv.URL+"/hooks")
	ctx := context.Background()
	r := loadWebhook(t, "url: "+srv.URL+"/hooks/fail\n")
	p, err := r.Resolve(ctx, env, PlanData{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Run(ctx, env, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(ctx, env, p, out); err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("verify a 500: %v, want failed", err)
	}
	if !strings.Contains(out.Detail, "500") {
		t.Errorf("detail %q", out.Detail)
	}

	r = loadWebhook(t, "url: "+srv.URL+"/hooks/hang\n")
	if p, err = r.Resolve(ctx, env, PlanData{}); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := r.Run(cctx, env, p); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("run past its deadline: %v, want context.DeadlineExceeded", err)
	}
}

// TestWebhookConfigCheck: at load, a URL known then must be allowed, a
// templated one must name an allowed scheme and host, and secret headers
// must name configured secrets; each problem at its line.
func TestWebhookConfigCheck(t *testing.T) {
	w, err := NewWebhooks(WebhookConfig{Allow: []string{"https://hooks.example.com/deploy/"}, Secrets: map[string]secret.Secret{"tok": "x"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		params string
		want   []string
	}{
		{"url: https://hooks.example.com/deploy/x\nsecret_headers: {Authorization: tok}\n", nil},
		{"url: 'https://hooks.example.com/deploy/{{ .Labels.x }}'\n", nil},
		{"url: 'https://HOOKS.example.com:443/deploy/x'\n", nil},
		{"url: '{{ .Labels.url }}'\n", nil},
		{"url: https://evil.example.com/deploy/x\n", []string{"line 1: remediation[0].params.url: https://evil.example.com/deploy/x is not under any prefix"}},
		{"url: https://hooks.example.com/other\n", []string{"line 1: remediation[0].params.url: https://hooks.example.com/other is not under any prefix"}},
		{"url: 'https://evil.example.com/{{ .Labels.x }}'\n", []string{"line 1: remediation[0].params.url: https://evil.example.com is not the scheme and host"}},
		{"url: https://hooks.example.com/deploy/x\nsecret_headers:\n  X-Token: nope\n", []string{`line 3: remediation[0].params.secret_headers.X-Token: no secret "nope"`}},
	} {
		b, err := load(t, "webhook", tc.params)
		if err != nil {
			t.Fatalf("%s: %v", tc.params, err)
		}
		errs := CheckWebhookConfig(b, w, true)
		if len(errs) != len(tc.want) {
			t.Errorf("%s: %v, want %v", tc.params, errs, tc.want)
			continue
		}
		for i, e := range errs {
			if !strings.Contains(e.Error(), tc.want[i]) {
				t.Errorf("%s: %q, want %q", tc.params, e, tc.want[i])
			}
		}
	}
	b, _ := load(t, "manual", "text: x\n")
	if errs := CheckWebhookConfig(b, w, true); errs != nil {
		t.Errorf("manual: %v", errs)
	}
	for _, bad := range []string{"hooks.example.com", "ftp://h/", "https://u:p@h/", "https://h/x?y=1", "https://h/a/../b"} {
		if err := CheckAllow(bad); err == nil {
			t.Errorf("allow entry %q accepted", bad)
		}
	}
}
