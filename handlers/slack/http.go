package slack

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slack-go/slack"
)

// Paths Slack posts to: the slash command's Request URL and the app's
// Interactivity Request URL.
const (
	CommandsPath     = "/slack/commands"
	InteractionsPath = "/slack/interactions"
)

// maxBody caps a request body; Slack's are a few KiB (an interaction
// carries the whole card).
const maxBody = 256 << 10

// HTTP serves Slack's requests over HTTP: each body is read once, its
// signature checked over the raw bytes, and only then parsed. A forged,
// stale or unsigned request gets 401 and does nothing.
type HTTP struct {
	h      *Handler
	verify Verifier
	log    *slog.Logger
	m      *metrics
}

// NewHTTP returns the HTTP transport of h. reg receives its metrics (nil:
// none).
func NewHTTP(h *Handler, v Verifier, reg prometheus.Registerer) (*HTTP, error) {
	if !v.Secret.IsSet() {
		return nil, errors.New("slack inbound over HTTP: no signing secret")
	}
	if v.Now == nil {
		v.Now = h.o.Now
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &HTTP{h: h, verify: v, log: h.log.With("transport", TransportHTTP), m: m}, nil
}

// Routes registers POST CommandsPath and InteractionsPath on mux, and 405
// for other methods there.
func (x *HTTP) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+CommandsPath, x.commands)
	mux.HandleFunc("POST "+InteractionsPath, x.interactions)
	for _, p := range []string{CommandsPath, InteractionsPath} {
		mux.HandleFunc(p, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed: use POST", http.StatusMethodNotAllowed)
		})
	}
}

// read reads the body once, capped, and verifies it; on failure it has
// answered and returns false.
func (x *HTTP) read(w http.ResponseWriter, r *http.Request, kind string) (url.Values, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			x.fail(w, kind, "too_large", http.StatusRequestEntityTooLarge, "body too large")
			return nil, false
		}
		x.fail(w, kind, "malformed", http.StatusBadRequest, "read body")
		return nil, false
	}
	if err := x.verify.Verify(r.Header, body); err != nil {
		x.log.Warn("slack request refused: "+err.Error(), "path", r.URL.Path, "remote", r.RemoteAddr)
		x.fail(w, kind, "unauthorized", http.StatusUnauthorized, "unauthorized")
		return nil, false
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		x.fail(w, kind, "malformed", http.StatusBadRequest, "malformed form body")
		return nil, false
	}
	return form, true
}

func (x *HTTP) fail(w http.ResponseWriter, kind, result string, code int, msg string) {
	x.m.requests.WithLabelValues(TransportHTTP, kind, result).Inc()
	http.Error(w, msg, code)
}

func (x *HTTP) commands(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	form, ok := x.read(w, r, "command")
	if !ok {
		return
	}
	if form.Get("ssl_check") == "1" && form.Get("command") == "" {
		w.WriteHeader(http.StatusOK) // Slack checking the certificate: nothing to do
		return
	}
	sc := slack.SlashCommand{
		Token: form.Get("token"), TeamID: form.Get("team_id"), TeamDomain: form.Get("team_domain"),
		EnterpriseID: form.Get("enterprise_id"), ChannelID: form.Get("channel_id"), ChannelName: form.Get("channel_name"),
		UserID: form.Get("user_id"), UserName: form.Get("user_name"), Command: form.Get("command"), Text: form.Get("text"),
		ResponseURL: form.Get("response_url"), TriggerID: form.Get("trigger_id"), APIAppID: form.Get("api_app_id"),
	}
	// Without a trigger_id, the signed timestamp and signature identify
	// the request: a replay of it is the same request.
	fallback := r.Header.Get("X-Slack-Request-Timestamp") + ":" + r.Header.Get("X-Slack-Signature")
	reply := x.h.SlashCommand(r.Context(), sc, TransportHTTP, fallback)
	writeJSON(w, reply.Payload())
	x.m.requests.WithLabelValues(TransportHTTP, "command", "ok").Inc()
	x.m.duration.WithLabelValues(TransportHTTP, "command").Observe(time.Since(start).Seconds())
}

func (x *HTTP) interactions(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	form, ok := x.read(w, r, "interaction")
	if !ok {
		return
	}
	var ic slack.InteractionCallback
	if err := json.Unmarshal([]byte(form.Get("payload")), &ic); err != nil {
		x.fail(w, "interaction", "malformed", http.StatusBadRequest, "malformed payload")
		return
	}
	reply, answer := x.h.Interaction(r.Context(), ic, TransportHTTP)
	// Slack shows nothing of this answer to a button click: the reply
	// goes to the response_url, after the acknowledgement.
	w.WriteHeader(http.StatusOK)
	if answer {
		x.h.Respond(ic.ResponseURL, reply)
	}
	x.m.requests.WithLabelValues(TransportHTTP, "interaction", "ok").Inc()
	x.m.duration.WithLabelValues(TransportHTTP, "interaction").Observe(time.Since(start).Seconds())
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newMetrics registers the inbound metrics; both transports share them
// (registered once by whichever is built first).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "incidentbot", Name: "slack_requests_total",
			Help: "Slack slash commands and interactions by transport (http, socket), kind and result.",
		}, []string{"transport", "kind", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "incidentbot", Name: "slack_request_duration_seconds",
			Help:    "Time to answer Slack (Slack gives up after 3 s).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"transport", "kind"}),
	}
	if reg != nil {
		for i, c := range []prometheus.Collector{m.requests, m.duration} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					return nil, err
				}
				switch i {
				case 0:
					m.requests = are.ExistingCollector.(*prometheus.CounterVec)
				case 1:
					m.duration = are.ExistingCollector.(*prometheus.HistogramVec)
				}
			}
		}
	}
	return m, nil
}
