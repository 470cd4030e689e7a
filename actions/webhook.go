package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/redact"
	"github.com/incidentbot/incidentbot/secret"
	"github.com/incidentbot/incidentbot/strictyaml"
)

// WebhookParams are webhook's parameters.
type WebhookParams struct {
	// URL is where to POST; it must fall under actions.webhook.allow.
	URL Template `yaml:"url"`
	// Body holds the JSON object's fields, each a template rendering a
	// string.
	Body map[string]Template `yaml:"body"`
	// Headers are extra request headers (templates, not secrets).
	Headers map[string]Template `yaml:"headers"`
	// SecretHeaders maps a header to the name of a secret configured in
	// actions.webhook.secrets (or a file of actions.webhook.secrets_dir):
	// the value is looked up when it runs and never shown.
	SecretHeaders map[string]string `yaml:"secret_headers"`
}

// Webhook POSTs a JSON body to an allowed URL.
var Webhook Action = webhookSpec{spec[WebhookParams]{
	desc: Description{
		Name: "webhook",
		Description: "POST a JSON object to a URL on the configuration's allowlist (actions.webhook.allow: scheme, host and path prefix), " +
			"for everything the other actions do not cover. Headers may come from secrets (actions.webhook.secrets). " +
			"Redirects are followed only to allowed URLs. Verify wants a 2xx answer; it cannot be reverted.",
		Params: []Param{
			{Name: "url", Type: "template", Required: true, Description: "http(s) URL under an actions.webhook.allow prefix, no user:password@"},
			{Name: "body", Type: "map of template", Description: "fields of the JSON object posted, each a string"},
			{Name: "headers", Type: "map of template", Description: "extra request headers"},
			{Name: "secret_headers", Type: "map of string", Description: "header name to the name of a secret in actions.webhook.secrets"},
		},
		Example: `id: restart-indexer
title: Ask the deploy service to restart the indexer
action: webhook
params:
  url: https://hooks.example.com/deploy/restart
  body:
    service: indexer
    namespace: '{{ .Labels.namespace }}'
  secret_headers:
    Authorization: deploy-hook-token
`,
		Needs: []string{"webhook"},
	},
	check: func(p *WebhookParams, v *validator) {
		if v.required("url", p.URL) {
			v.check("url", p.URL, checkWebhookURL)
		}
		seen := map[string]string{}
		for _, h := range slices.Sorted(maps.Keys(p.Headers)) {
			if err := checkHeaderName(h); err != nil {
				v.fail("headers", "%s", err)
			}
			seen[http.CanonicalHeaderKey(h)] = "headers"
			v.check("headers", p.Headers[h], checkHeaderValue)
		}
		for _, h := range slices.Sorted(maps.Keys(p.SecretHeaders)) {
			if err := checkHeaderName(h); err != nil {
				v.fail("secret_headers", "%s", err)
			}
			if _, dup := seen[http.CanonicalHeaderKey(h)]; dup {
				v.fail("secret_headers", "header %q is also in headers: keep one", h)
			}
			if ref := p.SecretHeaders[h]; !secretRefRE.MatchString(ref) {
				v.fail("secret_headers", "%q is not a secret name (letters, digits, '.', '_', '-'; at most 63)", ref)
			}
		}
	},
	plan: func(_ context.Context, p *WebhookParams, data PlanData) (string, error) {
		wp, err := resolveWebhook(p, data)
		if err != nil {
			return "", err
		}
		return wp.text(), nil
	},
}}

// secretRefRE is what a secret's name looks like: a Kubernetes Secret's
// key names.
var secretRefRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// headerName is an HTTP header name (RFC 9110 token).
var headerName = regexp.MustCompile("^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$")

// reservedHeaders are set by the HTTP client or the action, never by a
// runbook.
var reservedHeaders = []string{"Host", "Content-Length", "Content-Type", "Transfer-Encoding", "Connection", "Te", "Trailer", "Upgrade"}

func checkHeaderName(h string) error {
	if !headerName.MatchString(h) {
		return fmt.Errorf("%q is not a header name", h)
	}
	if slices.Contains(reservedHeaders, http.CanonicalHeaderKey(h)) {
		return fmt.Errorf("header %q is set by the bot, not the runbook", h)
	}
	return nil
}

func checkHeaderValue(s string) error {
	if strings.ContainsAny(s, "\r\n\x00") {
		return fmt.Errorf("header value contains a line break or NUL")
	}
	return nil
}

// checkWebhookURL checks what a webhook URL may be whatever the
// allowlist: http(s) with a host, no user:password@, no fragment, no "."
// or ".." path segments (which would step out of an allowed prefix).
func checkWebhookURL(s string) error {
	if err := checkURL(s); err != nil {
		return err
	}
	u, _ := url.Parse(s)
	if u.User != nil {
		return fmt.Errorf("%q carries user information: put credentials in secret_headers", redact.URL(s))
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return fmt.Errorf("%q has a fragment", redact.URL(s))
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("%q has a %q path segment", redact.URL(s), seg)
		}
	}
	return nil
}

// WebhookConfig is the webhook action's configuration (actions.webhook).
type WebhookConfig struct {
	// Allow lists URL prefixes a webhook may POST to, matched on scheme,
	// host (with port) and path prefix after parsing:
	// "https://hooks.example.com/deploy/" allows
	// https://hooks.example.com/deploy/restart and nothing outside
	// /deploy/. Empty: the action cannot post anywhere.
	Allow []string `yaml:"allow"`
	// Secrets are header values runbooks name in secret_headers;
	// SecretsDir adds one per file (a Secret volume), named by the file.
	Secrets    map[string]secret.Secret `yaml:"secrets"`
	SecretsDir string                   `yaml:"secrets_dir"`
}

// Webhooks is what the webhook action posts through.
type Webhooks interface {
	// Allowed reports why rawURL may not be posted to, nil when it may.
	Allowed(rawURL string) error
	// HasSecret reports whether a header secret named ref is configured.
	HasSecret(ref string) bool
	// Post sends body (JSON) to rawURL with headers and the secrets named
	// in secretHeaders (header → secret name), following redirects only
	// to allowed URLs, and returns the answer's status code.
	Post(ctx context.Context, rawURL string, body []byte, headers, secretHeaders map[string]string) (int, error)
}

// allowEntry is one parsed allowlist prefix.
type allowEntry struct {
	scheme, host, path string
}

// WebhookClient implements Webhooks with net/http.
type WebhookClient struct {
	allow   []allowEntry
	secrets map[string]secret.Secret
	client  *http.Client
}

// maxRedirects bounds the redirects a webhook follows.
const maxRedirects = 3

// NewWebhooks builds the webhook action's client from its configuration.
// base is the HTTP client to start from (nil: http.DefaultTransport, no
// timeout of its own: the run's context bounds each post).
func NewWebhooks(cfg WebhookConfig, base *http.Client) (*WebhookClient, error) {
	w := &WebhookClient{secrets: maps.Clone(cfg.Secrets)}
	for i, a := range cfg.Allow {
		e, err := parseAllow(a)
		if err != nil {
			return nil, fmt.Errorf("actions.webhook.allow[%d]: %w", i, err)
		}
		w.allow = append(w.allow, e)
	}
	c := &http.Client{}
	if base != nil {
		*c = *base
	}
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		if err := w.Allowed(req.URL.String()); err != nil {
			return fmt.Errorf("redirect refused: %w", err)
		}
		return nil
	}
	w.client = c
	return w, nil
}

// CheckAllow checks one allowlist entry, for configuration problems.
func CheckAllow(s string) error {
	_, err := parseAllow(s)
	return err
}

func parseAllow(s string) (allowEntry, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return allowEntry{}, fmt.Errorf("%q: want an http(s) URL prefix like https://hooks.example.com/", redact.URL(s))
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Contains(s, "#") {
		return allowEntry{}, fmt.Errorf("%q: a prefix has no user information, query or fragment", redact.URL(s))
	}
	if err := checkWebhookURL(s); err != nil {
		return allowEntry{}, err
	}
	p := u.Path
	if p == "" {
		p = "/"
	}
	return allowEntry{scheme: u.Scheme, host: canonicalHost(u), path: p}, nil
}

// canonicalHost is u's host in lower case without the scheme's default
// port.
func canonicalHost(u *url.URL) string {
	h, port := strings.ToLower(u.Hostname()), u.Port()
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if port != "" {
		return h + ":" + port
	}
	return h
}

// matches reports whether u falls under the prefix: the same scheme and
// host, and a path equal to the prefix's or under it (a prefix without a
// trailing slash matches whole segments: /deploy matches /deploy and
// /deploy/x, not /deployment).
func (e allowEntry) matches(u *url.URL) bool {
	if u.Scheme != e.scheme || canonicalHost(u) != e.host {
		return false
	}
	p := u.Path
	if p == "" {
		p = "/"
	}
	if strings.HasSuffix(e.path, "/") {
		return strings.HasPrefix(p, e.path)
	}
	return p == e.path || strings.HasPrefix(p, e.path+"/")
}

// Allowed implements Webhooks.
func (w *WebhookClient) Allowed(rawURL string) error {
	if err := checkWebhookURL(rawURL); err != nil {
		return err
	}
	u, _ := url.Parse(rawURL)
	if len(w.allow) == 0 {
		return fmt.Errorf("%s is not allowed: actions.webhook.allow is empty", redact.URL(rawURL))
	}
	for _, e := range w.allow {
		if e.matches(u) {
			return nil
		}
	}
	return fmt.Errorf("%s is not under any prefix of actions.webhook.allow", redact.URL(rawURL))
}

// allowedOrigin reports whether some prefix has u's scheme and host, for
// a URL whose path is templated.
func (w *WebhookClient) allowedOrigin(u *url.URL) bool {
	for _, e := range w.allow {
		if e.scheme == u.Scheme && e.host == canonicalHost(u) {
			return true
		}
	}
	return false
}

// HasSecret implements Webhooks.
func (w *WebhookClient) HasSecret(ref string) bool {
	_, ok := w.secrets[ref]
	return ok
}

// maxWebhookAnswer bounds what is read of an answer (and then dropped).
const maxWebhookAnswer = 64 << 10

// Post implements Webhooks.
func (w *WebhookClient) Post(ctx context.Context, rawURL string, body []byte, headers, secretHeaders map[string]string) (int, error) {
	if err := w.Allowed(rawURL); err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, strings.NewReader(string(body)))
	if err != nil {
		return 0, redact.Error(err)
	}
	for h, v := range headers {
		req.Header.Set(h, v)
	}
	for h, ref := range secretHeaders {
		s, ok := w.secrets[ref]
		if !ok {
			return 0, fmt.Errorf("header %s: no secret %q in actions.webhook.secrets", h, ref)
		}
		req.Header.Set(h, s.Reveal())
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "incidentbot")
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, Unanswered(redact.Error(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxWebhookAnswer))
	return resp.StatusCode, nil
}

// ErrWebhookNotConfigured is the dry run of a webhook without
// actions.webhook.allow.
var ErrWebhookNotConfigured = &DryRunError{Need: "actions.webhook.allow"}

// webhookPlan is a webhook plan's Params: the exact URL, body and
// headers, and the names (never the values) of the secret headers.
type webhookPlan struct {
	URL           string            `json:"url"`
	Body          map[string]string `json:"body"`
	Headers       map[string]string `json:"headers,omitempty"`
	SecretHeaders map[string]string `json:"secret_headers,omitempty"`
}

func (wp webhookPlan) body() []byte {
	b, _ := json.Marshal(wp.Body) // a map of strings always encodes; keys sorted
	if wp.Body == nil {
		b = []byte("{}")
	}
	return b
}

func (wp webhookPlan) text() string {
	s := fmt.Sprintf("webhook: POST %s %s", redact.URL(wp.URL), redact.Text(string(wp.body())))
	var hs []string
	for _, h := range slices.Sorted(maps.Keys(wp.Headers)) {
		hs = append(hs, http.CanonicalHeaderKey(h))
	}
	for _, h := range slices.Sorted(maps.Keys(wp.SecretHeaders)) {
		hs = append(hs, fmt.Sprintf("%s from secret %s", http.CanonicalHeaderKey(h), wp.SecretHeaders[h]))
	}
	if len(hs) > 0 {
		s += " (headers: " + strings.Join(hs, ", ") + ")"
	}
	return s
}

func resolveWebhook(p *WebhookParams, data PlanData) (webhookPlan, error) {
	var wp webhookPlan
	u, err := render("url", p.URL, data, checkWebhookURL)
	if err != nil {
		return wp, err
	}
	wp.URL = u
	wp.Body = map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(p.Body)) {
		if wp.Body[k], err = render("body."+k, p.Body[k], data, nil); err != nil {
			return wp, err
		}
	}
	for _, h := range slices.Sorted(maps.Keys(p.Headers)) {
		if wp.Headers == nil {
			wp.Headers = map[string]string{}
		}
		if wp.Headers[h], err = render("headers."+h, p.Headers[h], data, checkHeaderValue); err != nil {
			return wp, err
		}
	}
	if len(p.SecretHeaders) > 0 {
		wp.SecretHeaders = maps.Clone(p.SecretHeaders)
	}
	return wp, nil
}

type webhookSpec struct{ spec[WebhookParams] }

func (s webhookSpec) Load(n *yaml.Node, path string) (Bound, error) {
	b, err := s.spec.Load(n, path)
	if err != nil {
		return nil, err
	}
	if n == nil {
		n = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	wb := webhookBound{bound: b.(bound[WebhookParams]), urlPath: strictyaml.Key(strictyaml.Key(path, "params"), "url"), line: n.Line}
	if un := strictyaml.Lookup(n, "url"); un != nil {
		wb.line = un.Line
	}
	secretsNode := strictyaml.Lookup(n, "secret_headers")
	for h, ref := range wb.p.SecretHeaders {
		r := webhookRef{ref: ref, path: strictyaml.Key(strictyaml.Key(strictyaml.Key(path, "params"), "secret_headers"), h), line: n.Line}
		if secretsNode != nil {
			if vn := strictyaml.Lookup(secretsNode, h); vn != nil {
				r.line = vn.Line
			}
		}
		wb.refs = append(wb.refs, r)
	}
	slices.SortFunc(wb.refs, func(a, b webhookRef) int { return strings.Compare(a.path, b.path) })
	return wb, nil
}

type webhookRef struct {
	ref, path string
	line      int
}

type webhookBound struct {
	bound[WebhookParams]
	// urlPath and line say where the url is written, refs where each
	// secret header is, for CheckWebhookConfig.
	urlPath string
	line    int
	refs    []webhookRef
}

var _ Runner = webhookBound{}

// CheckWebhookConfig checks a bound webhook step against the
// configuration when the runbooks load: a URL known at load time must be
// allowed (a templated one must at least name an allowed scheme and host
// when those are written out), and every secret header must name a
// configured secret (checked only when secretsKnown: every secret was
// read here). Other bound actions have nothing to check.
func CheckWebhookConfig(b Bound, w *WebhookClient, secretsKnown bool) []*strictyaml.Error {
	wb, ok := b.(webhookBound)
	if !ok {
		return nil
	}
	var errs []*strictyaml.Error
	fail := func(line int, path, format string, args ...any) {
		errs = append(errs, &strictyaml.Error{Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	raw := wb.p.URL.String()
	if wb.p.URL.Static() {
		if err := w.Allowed(raw); err != nil {
			fail(wb.line, wb.urlPath, "%s", err)
		}
	} else {
		// Templated: check the scheme and host when they are written out.
		head, _, _ := strings.Cut(raw, "{{")
		if scheme, rest, ok := strings.Cut(head, "://"); ok && (scheme == "http" || scheme == "https") {
			if host, _, whole := strings.Cut(rest, "/"); whole && host != "" && !strings.Contains(host, "@") {
				if u, err := url.Parse(scheme + "://" + host + "/"); err == nil && !w.allowedOrigin(u) {
					fail(wb.line, wb.urlPath, "%s://%s is not the scheme and host of any prefix of actions.webhook.allow", u.Scheme, canonicalHost(u))
				}
			}
		}
	}
	if secretsKnown {
		for _, r := range wb.refs {
			if !w.HasSecret(r.ref) {
				fail(r.line, r.path, "no secret %q is configured: name it in actions.webhook.secrets or as a file in actions.webhook.secrets_dir", r.ref)
			}
		}
	}
	return errs
}

// Resolve renders the exact URL, body and headers, and refuses a URL off
// the allowlist.
func (b webhookBound) Resolve(_ context.Context, env Env, data PlanData) (Plan, error) {
	p := b.p
	wp, err := resolveWebhook(&p, data)
	if err != nil {
		var missing *MissingError
		if errors.As(err, &missing) {
			err = withAllMissing(missing, &b.p, data)
		}
		return Plan{}, fmt.Errorf("%s: %w", b.name, err)
	}
	if env.Webhooks == nil {
		return Plan{}, fmt.Errorf("%s: %w", b.name, ErrWebhookNotConfigured)
	}
	if err := env.Webhooks.Allowed(wp.URL); err != nil {
		return Plan{}, fmt.Errorf("%s: %w", b.name, err)
	}
	for h, ref := range wp.SecretHeaders {
		if !env.Webhooks.HasSecret(ref) {
			return Plan{}, fmt.Errorf("%s: header %s: no secret %q in actions.webhook.secrets", b.name, h, ref)
		}
	}
	return NewPlan(b.name, wp.text(), "webhook "+redact.URL(wp.URL), wp)
}

func webhookParams(p Plan) (webhookPlan, error) {
	var wp webhookPlan
	if err := json.Unmarshal(p.Params, &wp); err != nil || wp.URL == "" {
		return wp, fmt.Errorf("%s: bad plan params", p.Action) // never the params: the URL may hold a token
	}
	return wp, nil
}

// webhookState is a webhook's answer in an Outcome.
type webhookState struct {
	Status int `json:"status"`
}

// Run posts the body once and records the answer's status.
func (b webhookBound) Run(ctx context.Context, env Env, p Plan) (Outcome, error) {
	wp, err := webhookParams(p)
	if err != nil {
		return Outcome{}, err
	}
	if env.Webhooks == nil {
		return Outcome{}, ErrWebhookNotConfigured
	}
	status, err := env.Webhooks.Post(ctx, wp.URL, wp.body(), wp.Headers, wp.SecretHeaders)
	if err != nil {
		return Outcome{}, fmt.Errorf("POST %s: %w", redact.URL(wp.URL), err)
	}
	aj, _ := json.Marshal(webhookState{Status: status})
	return Outcome{After: aj, Detail: fmt.Sprintf("POST %s: %d %s", redact.URL(wp.URL), status, http.StatusText(status))}, nil
}

// Verify wants the run's answer to be a 2xx.
func (b webhookBound) Verify(_ context.Context, _ Env, _ Plan, o Outcome) error {
	var st webhookState
	if err := json.Unmarshal(o.After, &st); err != nil || st.Status == 0 {
		return errors.New("webhook: no answer recorded by the run")
	}
	if st.Status < 200 || st.Status > 299 {
		return fmt.Errorf("the webhook answered %d %s, want 2xx", st.Status, http.StatusText(st.Status))
	}
	return nil
}
