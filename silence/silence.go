// Package silence creates and expires Alertmanager silences through its
// API v2, for the engine's silence reconciler: a person asks in Slack to
// silence an incident, the engine records the wish, and this client makes
// Alertmanager hold it. Alertmanager's API has no idempotency key, so every
// silence carries a marker in its comment (incidentbot:INC-…) and Find looks
// for it before anything is created again after an unknown outcome.
package silence

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-openapi/runtime"
	httptransport "github.com/go-openapi/runtime/client"
	"github.com/go-openapi/strfmt"
	"github.com/prometheus/alertmanager/api/v2/client"
	amsilence "github.com/prometheus/alertmanager/api/v2/client/silence"
	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/alertmanager/pkg/labels"

	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/secret"
)

// Config says how to reach Alertmanager's API. At most one of a bearer
// token and basic auth is set; neither is fine for an Alertmanager that
// takes no credentials (behind a cluster-internal service).
type Config struct {
	// URL is Alertmanager's base URL (http://alertmanager:9093, with a
	// path prefix when it runs under one, e.g. --web.route-prefix).
	URL         string
	BearerToken secret.Secret
	Username    string
	Password    secret.Secret
	// Timeout bounds one API call (default 10s); the engine's effect
	// timeout bounds it too.
	Timeout time.Duration
}

// Silence is one silence to create or update.
type Silence struct {
	// ID, when set, updates that silence (Alertmanager keeps the id when
	// only the end moves, or expires it and answers with a new one).
	ID string
	// Matchers are equality matchers: label name to value.
	Matchers map[string]string
	// Match, when set, are matchers with any operator (=, !=, =~, !~),
	// as Alertmanager's parser gives them; Matchers is then ignored.
	Match     labels.Matchers
	StartsAt  time.Time
	EndsAt    time.Time
	CreatedBy string
	Comment   string
}

// Found is a silence found by its marker.
type Found struct {
	ID string
	// State is Alertmanager's: active, pending or expired.
	State string
	// StartsAt must be sent back unchanged to extend an active silence
	// in place (Alertmanager otherwise expires it and makes a new one).
	StartsAt, EndsAt time.Time
}

// Client is an Alertmanager API v2 client for silences.
type Client struct {
	api     *client.AlertmanagerAPI
	timeout time.Duration
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(cfg.URL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("alertmanager api: url %q: want http(s)://host:port", cfg.URL)
	}
	if cfg.BearerToken.IsSet() && cfg.Password.IsSet() {
		return nil, errors.New("alertmanager api: both a bearer token and basic auth configured; configure one")
	}
	if cfg.Password.IsSet() && cfg.Username == "" {
		return nil, errors.New("alertmanager api: basic auth password set without a username")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	base := strings.TrimRight(u.Path, "/") + client.DefaultBasePath
	tr := httptransport.NewWithClient(u.Host, base, []string{u.Scheme}, &http.Client{Timeout: cfg.Timeout})
	switch {
	case cfg.BearerToken.IsSet():
		tr.DefaultAuthentication = httptransport.BearerToken(cfg.BearerToken.Reveal())
	case cfg.Password.IsSet():
		tr.DefaultAuthentication = httptransport.BasicAuth(cfg.Username, cfg.Password.Reveal())
	}
	return &Client{api: client.New(tr, strfmt.Default), timeout: cfg.Timeout}, nil
}

// Marker is the token a silence's comment carries for incident id, by
// which Find recognises it.
func Marker(id string) string { return "incidentbot:" + id }

// Create creates s, or updates it when s.ID is set, and returns the id
// Alertmanager answers with: the same one when only the end of an active
// silence moved and StartsAt is the one it has (see Found), a new one
// otherwise (Alertmanager expires the old).
func (c *Client) Create(ctx context.Context, s Silence) (string, error) {
	ms := matchers(s.Matchers)
	if len(s.Match) > 0 {
		ms = apiMatchers(s.Match)
	}
	if len(ms) == 0 {
		return "", &notify.Error{Op: "alertmanager create silence", Err: errors.New("no matchers: a silence without them would match every alert")}
	}
	start, end := strfmt.DateTime(s.StartsAt.UTC()), strfmt.DateTime(s.EndsAt.UTC())
	body := &models.PostableSilence{ID: s.ID, Silence: models.Silence{
		Matchers: ms, StartsAt: &start, EndsAt: &end, CreatedBy: &s.CreatedBy, Comment: &s.Comment,
	}}
	ok, err := c.api.Silence.PostSilences(amsilence.NewPostSilencesParams().WithContext(ctx).WithTimeout(c.timeout).WithSilence(body))
	if err != nil {
		return "", classify("alertmanager create silence", err)
	}
	if ok.Payload == nil || ok.Payload.SilenceID == "" {
		return "", &notify.Error{Op: "alertmanager create silence", Retryable: true, Err: errors.New("answer carries no silence id")}
	}
	return ok.Payload.SilenceID, nil
}

// Find returns the newest silence that is not expired and whose comment
// carries marker; found is false when there is none.
func (c *Client) Find(ctx context.Context, marker string) (Found, bool, error) {
	ok, err := c.api.Silence.GetSilences(amsilence.NewGetSilencesParams().WithContext(ctx).WithTimeout(c.timeout))
	if err != nil {
		return Found{}, false, classify("alertmanager list silences", err)
	}
	var best Found
	var bestUpdated time.Time
	for _, s := range ok.Payload {
		if s == nil || s.ID == nil || s.Comment == nil || !hasMarker(*s.Comment, marker) {
			continue
		}
		state := ""
		if s.Status != nil && s.Status.State != nil {
			state = *s.Status.State
		}
		if state == models.SilenceStatusStateExpired {
			continue
		}
		var updated time.Time
		if s.UpdatedAt != nil {
			updated = time.Time(*s.UpdatedAt)
		}
		if best.ID == "" || updated.After(bestUpdated) {
			best, bestUpdated = Found{ID: *s.ID, State: state}, updated
			if s.EndsAt != nil {
				best.EndsAt = time.Time(*s.EndsAt)
			}
			if s.StartsAt != nil {
				best.StartsAt = time.Time(*s.StartsAt)
			}
		}
	}
	return best, best.ID != "", nil
}

// Got is a silence read back by its id.
type Got struct {
	ID string
	// State is Alertmanager's: active, pending or expired.
	State string
	// Matchers are the silence's matchers, in Alertmanager's order.
	Matchers         labels.Matchers
	StartsAt, EndsAt time.Time
	CreatedBy        string
	Comment          string
}

// ErrNotFound is returned (wrapped) by Get for a silence Alertmanager
// does not know.
var ErrNotFound = errors.New("no such silence")

// Get reads the silence id back.
func (c *Client) Get(ctx context.Context, id string) (Got, error) {
	ok, err := c.api.Silence.GetSilence(amsilence.NewGetSilenceParams().WithContext(ctx).WithTimeout(c.timeout).WithSilenceID(strfmt.UUID(id)))
	var nf *amsilence.GetSilenceNotFound
	switch {
	case errors.As(err, &nf):
		return Got{}, fmt.Errorf("alertmanager get silence %s: %w", id, ErrNotFound)
	case err != nil:
		return Got{}, classify("alertmanager get silence "+id, err)
	case ok.Payload == nil:
		return Got{}, &notify.Error{Op: "alertmanager get silence " + id, Retryable: true, Err: errors.New("empty answer")}
	}
	s := ok.Payload
	g := Got{ID: id}
	if s.ID != nil {
		g.ID = *s.ID
	}
	if s.Status != nil && s.Status.State != nil {
		g.State = *s.Status.State
	}
	if s.StartsAt != nil {
		g.StartsAt = time.Time(*s.StartsAt)
	}
	if s.EndsAt != nil {
		g.EndsAt = time.Time(*s.EndsAt)
	}
	if s.CreatedBy != nil {
		g.CreatedBy = *s.CreatedBy
	}
	if s.Comment != nil {
		g.Comment = *s.Comment
	}
	for _, m := range s.Matchers {
		if m == nil || m.Name == nil || m.Value == nil {
			continue
		}
		eq, re := true, false
		if m.IsEqual != nil {
			eq = *m.IsEqual
		}
		if m.IsRegex != nil {
			re = *m.IsRegex
		}
		t := labels.MatchEqual
		switch {
		case eq && re:
			t = labels.MatchRegexp
		case !eq && re:
			t = labels.MatchNotRegexp
		case !eq:
			t = labels.MatchNotEqual
		}
		lm, err := labels.NewMatcher(t, *m.Name, *m.Value)
		if err != nil {
			return Got{}, fmt.Errorf("alertmanager get silence %s: matcher %s: %w", id, *m.Name, err)
		}
		g.Matchers = append(g.Matchers, lm)
	}
	return g, nil
}

// hasMarker reports whether comment carries marker as a whole word, so
// INC-1 does not match a comment of INC-12.
func hasMarker(comment, marker string) bool {
	for _, f := range strings.FieldsFunc(comment, func(r rune) bool { return r == ' ' || r == '(' || r == ')' || r == ',' || r == '\n' }) {
		if f == marker {
			return true
		}
	}
	return false
}

// Expire expires the silence. One that is already expired or that
// Alertmanager no longer knows is not an error: the wish holds.
func (c *Client) Expire(ctx context.Context, id string) error {
	_, err := c.api.Silence.DeleteSilence(amsilence.NewDeleteSilenceParams().WithContext(ctx).WithTimeout(c.timeout).WithSilenceID(strfmt.UUID(id)))
	if err == nil {
		return nil
	}
	var nf *amsilence.DeleteSilenceNotFound
	if errors.As(err, &nf) {
		return nil
	}
	// Alertmanager answers 500 "already expired" for a silence that
	// ended: look before retrying forever.
	got, gerr := c.api.Silence.GetSilence(amsilence.NewGetSilenceParams().WithContext(ctx).WithTimeout(c.timeout).WithSilenceID(strfmt.UUID(id)))
	var gnf *amsilence.GetSilenceNotFound
	switch {
	case errors.As(gerr, &gnf):
		return nil
	case gerr == nil && got.Payload != nil && got.Payload.Status != nil && got.Payload.Status.State != nil &&
		*got.Payload.Status.State == models.SilenceStatusStateExpired:
		return nil
	}
	return classify("alertmanager expire silence "+id, err)
}

// matchers converts label equality into API matchers, sorted by name.
func matchers(m map[string]string) models.Matchers {
	out := make(models.Matchers, 0, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		name, value := name, m[name]
		isEqual, isRegex := true, false
		out = append(out, &models.Matcher{Name: &name, Value: &value, IsEqual: &isEqual, IsRegex: &isRegex})
	}
	return out
}

// apiMatchers converts parsed matchers into API matchers, in their order.
func apiMatchers(ms labels.Matchers) models.Matchers {
	out := make(models.Matchers, 0, len(ms))
	for _, m := range ms {
		if m == nil {
			continue
		}
		name, value := m.Name, m.Value
		isEqual := m.Type == labels.MatchEqual || m.Type == labels.MatchRegexp
		isRegex := m.Type == labels.MatchRegexp || m.Type == labels.MatchNotRegexp
		out = append(out, &models.Matcher{Name: &name, Value: &value, IsEqual: &isEqual, IsRegex: &isRegex})
	}
	return out
}

// classify says whether trying again may help: network errors and 5xx
// may, a refused request (4xx) will not.
func classify(op string, err error) error {
	ne := &notify.Error{Op: op, Retryable: true, Err: err}
	var coded interface{ Code() int }
	var apiErr *runtime.APIError
	var netErr net.Error
	switch {
	case errors.As(err, &apiErr):
		ne.Retryable = apiErr.Code >= 500 || apiErr.Code == http.StatusTooManyRequests
	case errors.As(err, &coded):
		ne.Retryable = coded.Code() >= 500 || coded.Code() == http.StatusTooManyRequests
	case errors.As(err, &netErr), errors.Is(err, context.DeadlineExceeded):
	}
	return ne
}
