package alertmanager

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/internal/ratelog"
	"github.com/incidentbot/incidentbot/secret"
)

// Path is where the receiver listens.
const Path = "/webhook/alertmanager"

// DefaultMaxBodyBytes is the default body limit (1 MiB).
const DefaultMaxBodyBytes = 1 << 20

// Auth is how Alertmanager authenticates, as its http_config offers:
// `authorization` (a bearer token) or `basic_auth`. One of the two is
// configured: Alertmanager sends one, and configuring both is refused.
type Auth struct {
	BearerToken secret.Secret
	Username    string
	Password    secret.Secret
}

// Configured reports whether any credential is set.
func (a Auth) Configured() bool { return a.BearerToken.IsSet() || a.Password.IsSet() }

// challenge is the WWW-Authenticate value of a 401: the configured scheme
// only.
func (a Auth) challenge() string {
	if a.BearerToken.IsSet() {
		return `Bearer realm="incidentbot"`
	}
	return `Basic realm="incidentbot", charset="UTF-8"`
}

// check validates the Authorization header in constant time.
func (a Auth) check(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if scheme, cred, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") && a.BearerToken.IsSet() {
		return a.BearerToken.Equal(strings.TrimSpace(cred))
	}
	if user, pass, ok := r.BasicAuth(); ok && a.Password.IsSet() {
		userOK := secret.Secret(a.Username).Equal(user)
		passOK := a.Password.Equal(pass)
		return userOK && passOK
	}
	return false
}

// Receiver is the HTTP handler for Alertmanager webhooks.
type Receiver struct {
	pub          bus.Publisher
	auth         Auth
	maxBodyBytes int64
	log          *slog.Logger
	// unauthorized logs rejected credentials at most once per
	// UnauthorizedLogInterval, so that a flood cannot fill the log.
	unauthorized *ratelog.Logger
	m            *metrics
	now          func() time.Time
}

// UnauthorizedLogInterval is the least time between two log lines about
// rejected credentials; each line counts those left out.
const UnauthorizedLogInterval = 10 * time.Second

// Config is the receiver's section of the configuration (alertmanager:).
// Exactly one of a bearer token and basic auth is set in production;
// AllowUnauthenticated is for a loopback listener only (the app decides).
type Config struct {
	BearerToken     secret.Secret `yaml:"bearer_token"`
	BearerTokenFile string        `yaml:"bearer_token_file"`
	Username        string        `yaml:"username"`
	Password        secret.Secret `yaml:"password"`
	PasswordFile    string        `yaml:"password_file"`
	// MaxBodyBytes limits a request body; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// AllowUnauthenticated accepts requests without credentials when none
	// is configured. Without it, an unconfigured receiver rejects all.
	AllowUnauthenticated bool `yaml:"allow_unauthenticated"`

	// URL is Alertmanager's own address (http://alertmanager:9093), for
	// its API v2: silences asked for from Slack are created there. Empty
	// leaves silences off. The settings below are the bot's credentials
	// toward that API (for a proxy in front of it), apart from those
	// Alertmanager presents to the webhook above.
	URL                string        `yaml:"url"`
	APIBearerToken     secret.Secret `yaml:"api_bearer_token"`
	APIBearerTokenFile string        `yaml:"api_bearer_token_file"`
	APIUsername        string        `yaml:"api_username"`
	APIPassword        secret.Secret `yaml:"api_password"`
	APIPasswordFile    string        `yaml:"api_password_file"`
	// SilenceMax bounds a silence asked for by a person (default 24h).
	SilenceMax time.Duration `yaml:"silence_max"`
}

// DefaultConfig returns the defaults: a 1 MiB body limit, no credentials,
// no API (silences off), silences of at most 24h.
func DefaultConfig() Config {
	return Config{MaxBodyBytes: DefaultMaxBodyBytes, SilenceMax: 24 * time.Hour}
}

// Auth is the credentials part of the configuration.
func (c Config) Auth() Auth {
	return Auth{BearerToken: c.BearerToken, Username: c.Username, Password: c.Password}
}

// Deps are the receiver's collaborators.
type Deps struct {
	// Publisher takes each notification durably.
	Publisher bus.Publisher
	Logger    *slog.Logger
	// Registerer receives the receiver's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// New returns a receiver that publishes to d.Publisher.
func New(cfg Config, d Deps) (*Receiver, error) {
	auth := cfg.Auth()
	if !auth.Configured() && !cfg.AllowUnauthenticated {
		return nil, errors.New("alertmanager receiver: no bearer_token or basic auth configured (set allow_unauthenticated only for local use)")
	}
	if auth.Password.IsSet() && auth.Username == "" {
		return nil, errors.New("alertmanager receiver: basic auth password set without a username")
	}
	if auth.BearerToken.IsSet() && auth.Password.IsSet() {
		return nil, errors.New("alertmanager receiver: both a bearer token and basic auth configured; configure the one Alertmanager sends")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(d.Registerer)
	if err != nil {
		return nil, err
	}
	return &Receiver{pub: d.Publisher, auth: auth, maxBodyBytes: cfg.MaxBodyBytes, log: d.Logger, m: m, now: time.Now,
		unauthorized: ratelog.New(d.Logger, slog.LevelWarn, UnauthorizedLogInterval)}, nil
}

// response is the JSON body of every answer.
type response struct {
	Status    string `json:"status"`
	Error     string `json:"error,omitempty"`
	EventID   string `json:"event_id,omitempty"`
	Alerts    int    `json:"alerts,omitempty"`
	Truncated uint64 `json:"truncated_alerts,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// ServeHTTP implements http.Handler.
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := rc.now()
	result := rc.serve(w, r)
	c := rc.m.byResult(result)
	c.requests.Inc()
	c.duration.Observe(rc.now().Sub(start).Seconds())
}

func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request) string {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		reply(w, http.StatusMethodNotAllowed, response{Status: "error", Error: "method not allowed: use POST"})
		return "method_not_allowed"
	}
	if rc.auth.Configured() && !rc.auth.check(r) {
		// Refused before a byte of the body is read; closing the
		// connection keeps the server from draining a body sent slowly
		// before it answers.
		w.Header().Set("WWW-Authenticate", rc.auth.challenge())
		w.Header().Set("Connection", "close")
		reply(w, http.StatusUnauthorized, response{Status: "error", Error: "unauthorized"})
		rc.unauthorized.Log(r.Context(), "alertmanager webhook rejected: bad or missing credentials", "remote", r.RemoteAddr)
		return "unauthorized"
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rc.maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			reply(w, http.StatusRequestEntityTooLarge, response{Status: "error", Error: "body exceeds " + formatBytes(rc.maxBodyBytes)})
			rc.log.Warn("alertmanager webhook rejected: body too large", "limit", rc.maxBodyBytes, "remote", r.RemoteAddr)
			return "too_large"
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The server's read deadline (http.read_timeout) passed.
			w.Header().Set("Connection", "close")
			reply(w, http.StatusRequestTimeout, response{Status: "error", Error: "body not received in time"})
			return "timeout"
		}
		w.Header().Set("Connection", "close")
		reply(w, http.StatusBadRequest, response{Status: "error", Error: "read body: " + err.Error()})
		return "malformed"
	}
	msg, err := Decode(body)
	if err != nil {
		reply(w, http.StatusBadRequest, response{Status: "error", Error: err.Error()})
		rc.log.Warn("alertmanager webhook rejected: malformed", "err", err, "remote", r.RemoteAddr)
		return "malformed"
	}
	ev := bus.Event{
		ID:      msg.EventID(),
		Source:  "alertmanager",
		Type:    EventType,
		Time:    rc.now(),
		Subject: msg.GroupKey,
		Data:    body,
	}
	res, err := rc.pub.Publish(r.Context(), ev)
	if errors.Is(err, bus.ErrTooLarge) {
		reply(w, http.StatusRequestEntityTooLarge, response{Status: "error", Error: "payload exceeds the bus's maximum message size; lower max_alerts"})
		rc.log.Error("alertmanager webhook: too large for the bus", "group", msg.GroupKey, "bytes", len(body), "err", err)
		return "too_large"
	}
	if err != nil {
		// The bus did not acknowledge: nothing is lost as long as
		// Alertmanager retries, which it does on 5xx only.
		w.Header().Set("Retry-After", "5")
		reply(w, http.StatusServiceUnavailable, response{Status: "error", Error: "event bus unavailable; retry"})
		rc.log.Error("alertmanager webhook: publish failed", "event", ev.ID, "group", msg.GroupKey, "err", err)
		if errors.Is(err, context.Canceled) {
			return "canceled"
		}
		return "unavailable"
	}
	firing := 0
	for _, a := range msg.Alerts {
		if a.Status == "firing" {
			firing++
		}
	}
	if !res.Duplicate {
		// A retry or the HA peer's copy carries the same alerts again.
		rc.m.firing.Add(float64(firing))
		rc.m.resolved.Add(float64(len(msg.Alerts) - firing))
	}
	if msg.TruncatedAlerts > 0 {
		rc.log.Warn("alertmanager truncated the notification (max_alerts)", "group", msg.GroupKey, "truncated", msg.TruncatedAlerts)
	}
	reply(w, http.StatusOK, response{Status: "accepted", EventID: ev.ID, Alerts: len(msg.Alerts), Truncated: msg.TruncatedAlerts, Duplicate: res.Duplicate})
	if res.Duplicate {
		return "duplicate"
	}
	return "accepted"
}

func reply(w http.ResponseWriter, code int, body response) {
	b, _ := json.Marshal(body) // cannot fail: strings, numbers, a bool
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	alerts   *prometheus.CounterVec
	// firing and resolved are alerts' children, resolved once.
	firing, resolved prometheus.Counter
	// results caches requests' and duration's children by result, so
	// that a request does not hash its label value twice.
	results sync.Map // string → resultMetrics
}

type resultMetrics struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// byResult returns the children of requests and duration for result,
// created on its first use as WithLabelValues would.
func (m *metrics) byResult(result string) resultMetrics {
	if c, ok := m.results.Load(result); ok {
		return c.(resultMetrics)
	}
	c := resultMetrics{requests: m.requests.WithLabelValues(result), duration: m.duration.WithLabelValues(result)}
	m.results.Store(result, c)
	return c
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "incidentbot", Name: "webhooks_total",
			Help:        "Webhook requests by source and result.",
			ConstLabels: prometheus.Labels{"source": "alertmanager"},
		}, []string{"result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "incidentbot", Name: "webhook_duration_seconds",
			Help:        "Time to authenticate, decode and durably publish a webhook.",
			ConstLabels: prometheus.Labels{"source": "alertmanager"},
			Buckets:     []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}, []string{"result"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "incidentbot", Name: "alerts_received_total",
			Help: "Alerts received from Alertmanager, by status; duplicate deliveries (retries, an HA pair's copies) are not counted.",
		}, []string{"status"}),
	}
	m.firing, m.resolved = m.alerts.WithLabelValues("firing"), m.alerts.WithLabelValues("resolved")
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.duration, m.alerts} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// Routes registers the receiver on mux: POST on Path, and 405 for any
// other method there.
func (rc *Receiver) Routes(mux *http.ServeMux) {
	mux.Handle("POST "+Path, rc)
	mux.Handle(Path, rc)
}
