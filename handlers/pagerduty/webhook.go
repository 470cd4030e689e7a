// Package pagerduty receives PagerDuty webhooks (v3) so that an
// acknowledgement, a resolution, a reassignment or an escalation made in
// PagerDuty shows on the incident's card and in its thread. Each verified
// webhook becomes a command on the bus (see package command), answered 202
// as soon as the bus has it; the engine does the rest. Our own Events API
// actions, echoed back by PagerDuty, change nothing.
package pagerduty

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/PagerDuty/go-pagerduty/webhookv3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/input"
	"github.com/incidentbot/incidentbot/internal/ratelog"
	"github.com/incidentbot/incidentbot/secret"
)

// Path is where the receiver listens.
const Path = "/webhook/pagerduty"

// MaxBodyBytes caps a webhook body. PagerDuty guarantees at most 55 KB and
// drops anything over 256 KB.
const MaxBodyBytes = 512 << 10

// BodyTimeout bounds reading a webhook's body, which must be read whole to
// verify its signature: PagerDuty sends it at once and waits 5 s for an
// answer.
const BodyTimeout = 5 * time.Second

// UnauthorizedLogInterval is the least time between two log lines about
// webhooks with a missing or wrong signature; each line counts those left
// out.
const UnauthorizedLogInterval = 10 * time.Second

// Config configures the webhook receiver.
type Config struct {
	// Secrets are the webhook subscription's signing secrets: the current
	// one, and during a rotation the previous one too. A request signed
	// with any of them is accepted.
	Secrets []secret.Secret
	// BodyTimeout bounds reading a body; 0 means BodyTimeout.
	BodyTimeout time.Duration
}

// Sender sends commands to the engine.
type Sender interface {
	Send(ctx context.Context, c command.Command) (engine.Ref, error)
}

// Deps are the receiver's collaborators.
type Deps struct {
	Commands   Sender
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Receiver is the HTTP handler for PagerDuty webhooks v3.
type Receiver struct {
	secrets      []secret.Secret
	bodyTimeout  time.Duration
	commands     Sender
	log          *slog.Logger
	unauthorized *ratelog.Logger
	requests     *prometheus.CounterVec
}

// New returns a receiver. At least one secret is required: an unsigned
// webhook could acknowledge or resolve any incident.
func New(cfg Config, d Deps) (*Receiver, error) {
	var secrets []secret.Secret
	for _, s := range cfg.Secrets {
		if s.IsSet() {
			secrets = append(secrets, s)
		}
	}
	if len(secrets) == 0 {
		return nil, errors.New("pagerduty webhook: no signing secret configured (pagerduty.webhook_secret)")
	}
	if d.Commands == nil {
		return nil, errors.New("pagerduty webhook: no command sender")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	rc := &Receiver{secrets: secrets, commands: d.Commands, log: d.Logger,
		bodyTimeout:  cmp.Or(cfg.BodyTimeout, BodyTimeout),
		unauthorized: ratelog.New(d.Logger, slog.LevelWarn, UnauthorizedLogInterval),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "incidentbot", Name: "pagerduty_webhooks_total",
			Help: "PagerDuty webhooks received, by result (accepted, ignored, unauthorized, invalid, unavailable)."}, []string{"result"})}
	if d.Registerer != nil {
		if err := d.Registerer.Register(rc.requests); err != nil {
			return nil, fmt.Errorf("register pagerduty webhook metrics: %w", err)
		}
	}
	return rc, nil
}

// Routes registers the receiver on mux.
func (rc *Receiver) Routes(mux *http.ServeMux) {
	mux.Handle("POST "+Path, rc)
	mux.Handle(Path, rc)
}

// ServeHTTP implements http.Handler.
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The body is read whole before the signature can be checked: bound
	// the time a client may take to send it (the size is bounded in serve).
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(rc.bodyTimeout))
	result, code, msg := rc.serve(r)
	rc.requests.WithLabelValues(result).Inc()
	switch code {
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", http.MethodPost)
	case http.StatusUnauthorized, http.StatusRequestTimeout, http.StatusRequestEntityTooLarge, http.StatusBadRequest:
		// Answer at once rather than drain what is left of the body.
		w.Header().Set("Connection", "close")
	}
	if code == http.StatusUnauthorized {
		rc.unauthorized.Log(r.Context(), "pagerduty webhook rejected: "+msg, "remote", r.RemoteAddr)
	}
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n")
}

func (rc *Receiver) serve(r *http.Request) (result string, code int, msg string) {
	if r.Method != http.MethodPost {
		return "invalid", http.StatusMethodNotAllowed, "method not allowed: use POST"
	}
	if r.Header.Get("X-PagerDuty-Signature") == "" {
		return "unauthorized", http.StatusUnauthorized, "missing X-PagerDuty-Signature"
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return "invalid", http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", MaxBodyBytes)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return "invalid", http.StatusRequestTimeout, "body not received in time"
		}
		return "invalid", http.StatusBadRequest, "read body: " + err.Error()
	}
	if !rc.verified(r, body) {
		return "unauthorized", http.StatusUnauthorized, "signature does not match"
	}
	ev, err := Decode(body)
	if err != nil {
		return "invalid", http.StatusBadRequest, err.Error()
	}
	c, ok, why := ev.Command(r.Header.Get("X-Webhook-Id"))
	if !ok {
		rc.log.Debug("pagerduty webhook ignored", "event", ev.Event.ID, "type", ev.Event.EventType, "why", why)
		return "ignored", http.StatusAccepted, "ignored: " + why
	}
	ctx, cancel := context.WithTimeout(r.Context(), 4*time.Second) // PagerDuty waits 5 s
	defer cancel()
	if _, err := rc.commands.Send(ctx, c); err != nil {
		switch {
		case errors.Is(err, engine.ErrNoIncident):
			// Not one of ours (the service has other integrations).
			return "ignored", http.StatusAccepted, "ignored: no incident with key " + c.Incident
		case errors.Is(err, bus.ErrUnavailable):
			rc.log.Warn("pagerduty webhook not accepted: bus unavailable", "event", ev.Event.ID, "err", err)
			return "unavailable", http.StatusServiceUnavailable, "bus unavailable, retry later"
		}
		rc.log.Error("pagerduty webhook not accepted", "event", ev.Event.ID, "err", err)
		return "unavailable", http.StatusServiceUnavailable, "could not accept: " + err.Error()
	}
	rc.log.Info("pagerduty webhook accepted", "event", ev.Event.ID, "type", ev.Event.EventType, "incident", c.Incident, "by", c.By.String())
	return "accepted", http.StatusAccepted, "accepted"
}

// verified checks the v1 HMAC-SHA256 signature against every configured
// secret; the header may carry several signatures during PagerDuty's own
// rotation.
func (rc *Receiver) verified(r *http.Request, body []byte) bool {
	for _, s := range rc.secrets {
		req := &http.Request{Header: r.Header, Body: io.NopCloser(bytes.NewReader(body))}
		if webhookv3.VerifySignature(req, s.Reveal()) == nil {
			return true
		}
	}
	return false
}

// Webhook is a PagerDuty webhook v3 body: exactly one event. go-pagerduty
// has no types for it, so these are ours, with only what we read.
type Webhook struct {
	Event Event `json:"event"`
}

// Event is the webhook's event.
type Event struct {
	ID           string    `json:"id"`
	EventType    string    `json:"event_type"`
	ResourceType string    `json:"resource_type"`
	OccurredAt   time.Time `json:"occurred_at"`
	// Agent is who did it; nil for PagerDuty's own automation.
	Agent *Reference      `json:"agent"`
	Data  json.RawMessage `json:"data"`
}

// Reference is a PagerDuty resource reference.
type Reference struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Summary string `json:"summary"`
}

// Incident is the part of an incident event's data we read.
type Incident struct {
	ID          string      `json:"id"`
	Status      string      `json:"status"`
	IncidentKey string      `json:"incident_key"`
	Title       string      `json:"title"`
	Assignees   []Reference `json:"assignees"`
	// EscalationPolicy and ResolveReason are informational.
	EscalationPolicy *Reference `json:"escalation_policy"`
}

// Decode parses and validates a webhook body.
func Decode(body []byte) (*Webhook, error) {
	var w Webhook
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("decode pagerduty webhook: %w", err)
	}
	var errs []error
	if w.Event.ID == "" {
		errs = append(errs, errors.New("event.id is empty"))
	}
	if w.Event.EventType == "" {
		errs = append(errs, errors.New("event.event_type is empty"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("invalid pagerduty webhook: %w", err)
	}
	return &w, nil
}

// Command turns the webhook into the command it asks of the engine. It
// reports false, with why, for events that change nothing of ours: other
// resource types, a trigger (ours, echoed), and acts of an integration
// (our own Events API acknowledge or resolve, echoed back).
func (w *Webhook) Command(webhookID string) (command.Command, bool, string) {
	ev := w.Event
	if ev.ResourceType != "" && ev.ResourceType != "incident" {
		return command.Command{}, false, "resource " + ev.ResourceType
	}
	var inc Incident
	if err := json.Unmarshal(ev.Data, &inc); err != nil || inc.IncidentKey == "" {
		return command.Command{}, false, "no incident_key"
	}
	if ev.Agent != nil && isIntegration(ev.Agent.Type) {
		return command.Command{}, false, "an integration's own action (our Events API echoed back)"
	}
	by := input.Actor{Name: "PagerDuty", Via: "pagerduty"}
	if ev.Agent != nil {
		by.ID, by.Name = ev.Agent.ID, ev.Agent.Summary
	}
	requestID := webhookID
	if requestID == "" {
		requestID = ev.ID
	}
	c := command.Command{Incident: inc.IncidentKey, By: by, RequestID: requestID, At: ev.OccurredAt}
	switch ev.EventType {
	case "incident.acknowledged":
		c.Verb = input.Ack
	case "incident.unacknowledged":
		c.Verb = input.Unack
	case "incident.resolved":
		c.Verb = input.Resolve
		c.Text = "resolved in PagerDuty"
	case "incident.reassigned":
		c.Verb, c.Text = input.Note, "reassigned in PagerDuty to "+names(inc.Assignees)
	case "incident.escalated":
		c.Verb, c.Text = input.Note, "escalated in PagerDuty to "+names(inc.Assignees)
	default:
		return command.Command{}, false, "event type " + ev.EventType
	}
	return c, true, ""
}

func isIntegration(t string) bool {
	return strings.HasSuffix(t, "integration_reference") || t == "service_reference"
}

func names(refs []Reference) string {
	var out []string
	for _, r := range refs {
		out = append(out, r.Summary)
	}
	if len(out) == 0 {
		return "nobody"
	}
	return strings.Join(out, ", ")
}
