// Package pagerduty is the PagerDuty sink: it sends an incident's pages
// (trigger, acknowledge, resolve under one dedup key) through the Events
// API v2 with go-pagerduty. It implements notify.Pager.
package pagerduty

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/PagerDuty/go-pagerduty"

	"github.com/incidentbot/incidentbot/notify"
)

// Events API v2 base URLs; the client appends /v2/enqueue.
const (
	EndpointUS = "https://events.pagerduty.com"
	EndpointEU = "https://events.eu.pagerduty.com"
)

// Config configures the PagerDuty sink.
type Config struct {
	// RoutingKey is the default integration key, used when a Page names
	// none. It is a secret: it is never logged nor put in an error.
	RoutingKey string
	// RoutingKeys are the integration keys a Page may name by reference
	// (Page.RoutingKeyRef): reference name → key. Secrets too.
	RoutingKeys map[string]string
	// BaseURL is the Events API base URL: EndpointUS (the default),
	// EndpointEU, or a test server.
	BaseURL string
	// Timeout bounds each HTTP attempt. Zero means 10 s.
	Timeout time.Duration
	// Retry is the retry policy of every page.
	Retry notify.RetryPolicy
	// Client and ClientURL name the sender in PagerDuty's UI; Client
	// defaults to "incidentbot".
	Client    string
	ClientURL string
	// Source overrides payload.source; empty derives it from the labels
	// (instance, pod, service, job), then the incident's source.
	Source string
	// HTTPClient is the client to use; nil means a new http.Client.
	HTTPClient *http.Client
	// Logger receives retry warnings; nil discards them.
	Logger *slog.Logger
	// Observer, when set, is told the outcome of every page.
	Observer notify.Observer
}

// DefaultConfig returns the defaults: the US endpoint, 10 s per attempt,
// and four attempts starting 1 s apart (PagerDuty rate-limits per minute).
func DefaultConfig() Config {
	r := notify.DefaultRetryPolicy()
	r.BaseDelay = time.Second
	return Config{BaseURL: EndpointUS, Timeout: 10 * time.Second, Retry: r, Client: "incidentbot"}
}

// Pager is a notify.Pager on PagerDuty's Events API v2. It is safe for
// concurrent use.
type Pager struct {
	cfg    Config
	client *pagerduty.Client
	log    *slog.Logger
}

var _ notify.Pager = (*Pager)(nil)

// New returns a PagerDuty Pager for cfg. An empty RoutingKey is allowed
// when every Page names one of RoutingKeys.
func New(cfg Config) (*Pager, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = EndpointUS
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	if !strings.HasPrefix(cfg.BaseURL, "http://") && !strings.HasPrefix(cfg.BaseURL, "https://") {
		return nil, fmt.Errorf("pagerduty: base URL %q is not an http(s) URL", cfg.BaseURL)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Client == "" {
		cfg.Client = "incidentbot"
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: notify.PooledTransport()}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	client := pagerduty.NewClient("", pagerduty.WithV2EventsAPIEndpoint(cfg.BaseURL))
	client.HTTPClient = capturingClient{next: hc}
	return &Pager{cfg: cfg, client: client, log: log.With("sink", "pagerduty")}, nil
}

// Page sends p, retrying transient failures. A 400 (bad event) is
// permanent; 429, 5xx and network errors are retryable.
func (pg *Pager) Page(ctx context.Context, p notify.Page) (err error) {
	op := "pagerduty " + string(p.Action)
	start := time.Now()
	defer func() { pg.cfg.Observer.Observe("pagerduty", "page_"+string(p.Action), start, err) }()

	e, err := Event(p, EventOptions{Client: pg.cfg.Client, ClientURL: pg.cfg.ClientURL, Source: pg.cfg.Source})
	if err != nil {
		return &notify.Error{Op: op, Err: err}
	}
	key := pg.cfg.RoutingKey
	if ref := p.RoutingKeyRef; ref != "" {
		k, ok := pg.cfg.RoutingKeys[ref]
		if !ok || k == "" {
			// Configuration refuses such a runbook at load time; a page
			// recorded before the key was removed still gets here.
			return &notify.Error{Op: op, Err: fmt.Errorf("routing key %q is not configured (pagerduty.routing_keys)", ref)}
		}
		key = k
	}
	if key == "" {
		return &notify.Error{Op: op, Err: errors.New("no routing key: the page names none and pagerduty.routing_key is not set")}
	}
	e.RoutingKey = key

	policy := pg.cfg.Retry
	if policy.OnRetry == nil {
		log := pg.log.With("op", op, "incident", p.Incident.ID, "dedup_key", e.DedupKey)
		policy.OnRetry = func(attempt int, delay time.Duration, err error) {
			log.Warn("pagerduty event failed, retrying", "attempt", attempt, "delay", delay, "err", err)
		}
	}
	return policy.Do(ctx, op, func(ctx context.Context) error {
		return pg.send(ctx, op, key, e)
	})
}

// send makes one attempt and classifies its outcome.
func (pg *Pager) send(ctx context.Context, op, key string, e *pagerduty.V2Event) error {
	actx, cancel := context.WithTimeout(ctx, pg.cfg.Timeout)
	defer cancel()
	var cp capture
	_, err := pg.client.ManageEventWithContext(context.WithValue(actx, captureKey{}, &cp), e)
	if err == nil {
		return nil
	}

	scrub := func(s string) string { return strings.ReplaceAll(s, key, "<secret>") }
	switch {
	case cp.err != nil: // no response: network error, timeout, cancellation
		return &notify.Error{Op: op, Retryable: !errors.Is(cp.err, context.Canceled), Err: scrubbed(cp.err, scrub)}
	case cp.status >= 200 && cp.status < 300:
		// Accepted, only the body did not decode: the event is in.
		return nil
	case cp.status == 0:
		return &notify.Error{Op: op, Retryable: true, Err: errors.New(scrub(err.Error()))}
	}

	ne := &notify.Error{Op: op, Err: &StatusError{StatusCode: cp.status, Body: scrub(string(cp.body))}}
	var body pagerduty.V2EventResponse
	if json.Unmarshal(cp.body, &body) == nil {
		se := ne.Err.(*StatusError)
		se.Status, se.Message, se.Errors = scrub(body.Status), scrub(body.Message), body.Errors
		for i := range se.Errors {
			se.Errors[i] = scrub(se.Errors[i])
		}
	}
	switch {
	case cp.status == http.StatusTooManyRequests:
		ne.Retryable = true
		ne.RetryAfter = retryAfter(cp.header.Get("Retry-After"), time.Now())
	case cp.status >= 500, cp.status == http.StatusRequestTimeout:
		ne.Retryable = true
		ne.RetryAfter = retryAfter(cp.header.Get("Retry-After"), time.Now())
	}
	return ne
}

// StatusError is a non-2xx answer of the Events API, with the status,
// message and errors array of its body (which go-pagerduty's own error
// loses).
type StatusError struct {
	StatusCode int
	Status     string
	Message    string
	Errors     []string
	// Body is the raw body (at most 64 KiB), kept when it is not JSON.
	Body string
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("events api answered HTTP %d", e.StatusCode)
	switch {
	case e.Status != "" || e.Message != "":
		s += ": " + strings.TrimPrefix(e.Status+": "+e.Message, ": ")
		if len(e.Errors) > 0 {
			s += " (" + strings.Join(e.Errors, "; ") + ")"
		}
	case strings.TrimSpace(e.Body) != "":
		s += ": " + notify.Truncate(strings.Join(strings.Fields(e.Body), " "), 300)
	}
	return s
}

func scrubbed(err error, scrub func(string) string) error {
	if s := err.Error(); scrub(s) != s {
		return errors.New(scrub(s))
	}
	return err
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// capture is what capturingClient saw of one request.
type capture struct {
	status int
	header http.Header
	body   []byte
	err    error
}

type captureKey struct{}

// capturingClient records the status, headers and body (or transport
// error) of each response into the capture in the request's context, and
// hands go-pagerduty an untouched copy.
type capturingClient struct{ next *http.Client }

func (c capturingClient) Do(req *http.Request) (*http.Response, error) {
	resp, err := c.next.Do(req)
	cp, _ := req.Context().Value(captureKey{}).(*capture)
	if cp == nil {
		return resp, err
	}
	if err != nil {
		cp.err = err
		return resp, err
	}
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	cp.status, cp.header, cp.body = resp.StatusCode, resp.Header.Clone(), body
	if rerr != nil {
		cp.err = fmt.Errorf("read response body: %w", rerr)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}
