package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/config"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/handlers/alertmanager"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/notify/console"
	"github.com/incidentbot/incidentbot/notify/pagerduty"
	nslack "github.com/incidentbot/incidentbot/notify/slack"
	"github.com/incidentbot/incidentbot/rpcview"
	"github.com/incidentbot/incidentbot/runbooks"
)

// Logger builds the process logger from configuration.
func Logger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Sinks chooses Slack and PagerDuty when configured, the console otherwise.
func Sinks(cfg config.Config, out io.Writer, log *slog.Logger) (notify.Chat, notify.Pager, error) {
	con := console.New(out)
	var chat notify.Chat = con
	var pager notify.Pager = con
	if cfg.Slack.Token.IsSet() {
		sc := nslack.DefaultConfig()
		sc.Token = cfg.Slack.Token.Reveal()
		sc.APIURL = cfg.Slack.APIURL
		sc.Logger = log
		c, err := nslack.New(sc)
		if err != nil {
			return nil, nil, fmt.Errorf("slack: %w", err)
		}
		chat = c
	} else {
		log.Warn("slack.token not set: incident cards print to the console")
	}
	if cfg.PagerDuty.RoutingKey.IsSet() {
		pc := pagerduty.DefaultConfig()
		pc.RoutingKey = cfg.PagerDuty.RoutingKey.Reveal()
		pc.BaseURL = cfg.PagerDuty.EventsURL
		pc.Logger = log
		p, err := pagerduty.New(pc)
		if err != nil {
			return nil, nil, fmt.Errorf("pagerduty: %w", err)
		}
		pager = p
	} else {
		log.Warn("pagerduty.routing_key not set: pages print to the console")
	}
	return chat, pager, nil
}

// Server is a running incidentbot: bus, engine, receiver, HTTP.
type Server struct {
	cfg      config.Config
	log      *slog.Logger
	Bus      *bus.Bus
	Engine   *engine.Engine
	Registry *prometheus.Registry
	handler  http.Handler
	listener net.Listener
}

// Options let tests and embedders replace parts.
type Options struct {
	// Chat and Pager replace the configured sinks when set.
	Chat  notify.Chat
	Pager notify.Pager
	// Stdout receives console sink output (default os.Stdout).
	Stdout io.Writer
	// Listener replaces listening on cfg.Listen.
	Listener net.Listener
}

// NewServer opens the bus and builds every part; Run starts them.
func NewServer(ctx context.Context, cfg config.Config, log *slog.Logger, o Options) (*Server, error) {
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	set, warns, err := runbooks.LoadDefault(cfg.Runbooks.Dir, actions.Default())
	if err != nil {
		return nil, fmt.Errorf("load runbooks: %w", err)
	}
	for _, w := range warns {
		log.Warn("runbook warning", "problem", w.Error())
	}
	b, err := bus.Open(ctx, cfg.Bus, log.With("component", "bus"))
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, Bus: b}
	ok := false
	defer func() {
		if !ok {
			b.Close()
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.Registry = reg
	incidents, err := b.KV(ctx, bus.BucketIncidents)
	if err != nil {
		return nil, err
	}
	rpcKV, err := b.KV(ctx, bus.BucketRPCView)
	if err != nil {
		return nil, err
	}
	chat, pager, err := Sinks(cfg, o.Stdout, log)
	if err != nil {
		return nil, err
	}
	if o.Chat != nil {
		chat = o.Chat
	}
	if o.Pager != nil {
		pager = o.Pager
	}
	cat := Catalog{Set: set, DefaultChannel: cfg.Runbooks.DefaultChannel}
	if cfg.Solana.Enabled() || cfg.Bus.URL != "" {
		// Watchers here, or `incidentbot watch` on the shared bus, keep the
		// RPC view; without any, plans say none is configured.
		cat.RPC = rpcview.Store{KV: rpcKV}
	}
	eng, err := engine.New(cfg.Engine, engine.Deps{
		Catalog: cat, KV: incidents, Chat: chat, Pager: pager, Audit: b,
		Logger: log.With("component", "engine"), Metrics: engine.NewMetrics(reg),
	})
	if err != nil {
		return nil, err
	}
	s.Engine = eng
	noCreds := !cfg.Alertmanager.BearerToken.IsSet() && !cfg.Alertmanager.Password.IsSet()
	allowAnon := cfg.Alertmanager.AllowUnauthenticated || (noCreds && cfg.ListenIsLoopback())
	if noCreds && allowAnon {
		log.Warn("alertmanager webhook accepts unauthenticated requests (listening on loopback only); set alertmanager.bearer_token for production")
	}
	rc, err := alertmanager.NewReceiver(b, alertmanager.Options{
		Auth:                 alertmanager.Auth{BearerToken: cfg.Alertmanager.BearerToken, Username: cfg.Alertmanager.Username, Password: cfg.Alertmanager.Password},
		MaxBodyBytes:         cfg.Alertmanager.MaxBodyBytes,
		AllowUnauthenticated: allowAnon,
		Logger:               log.With("component", "alertmanager"),
		Registerer:           reg,
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("POST "+alertmanager.Path, rc)
	mux.Handle(alertmanager.Path, rc) // answers 405 for other methods
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := b.Ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	s.handler = mux
	s.listener = o.Listener
	if s.listener == nil {
		if s.listener, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
		}
	}
	ok = true
	return s, nil
}

// Addr is the HTTP address the server listens on.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Handler is the HTTP handler (webhooks, metrics, health).
func (s *Server) Handler() http.Handler { return s.handler }

// Run serves until ctx is done, then drains: it stops taking webhooks,
// lets the engine finish the events in hand, and closes the bus.
func (s *Server) Run(ctx context.Context, extra ...func(context.Context) error) error {
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 3+len(extra))
	var wg sync.WaitGroup
	start := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start(func() {
		if err := srv.Serve(s.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
		}
	})
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		err := s.Bus.Consume(runCtx, bus.ConsumerConfig{
			Durable: "engine",
			OnTerminate: func(ctx context.Context, ev bus.Event, reason error) {
				_ = s.Bus.Audit(ctx, bus.AuditRecord{Kind: "event.terminated", EventID: ev.ID, Actor: "incidentbot", Detail: reason.Error()})
			},
		}, s.Engine.Handle)
		if err != nil {
			errc <- err
		}
	}()
	start(func() { s.Engine.Sweep(runCtx, 30*time.Second) })
	for _, f := range extra {
		start(func() {
			if err := f(runCtx); err != nil && runCtx.Err() == nil {
				errc <- err
			}
		})
	}
	s.log.Info("incidentbot serving", "addr", s.Addr(), "webhook", alertmanager.Path, "bus", busDesc(s.cfg))
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		s.log.Error("stopping after failure", "err", runErr)
	}
	s.log.Info("shutting down: draining in-flight work", "timeout", s.cfg.ShutdownTimeout)
	shCtx, shCancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer shCancel()
	_ = srv.Shutdown(shCtx) // stop taking webhooks first
	cancel()
	select {
	case <-consumerDone:
	case <-shCtx.Done():
		s.log.Warn("engine did not drain in time; unacknowledged events will be redelivered")
	}
	wg.Wait()
	s.Bus.Drain(5 * time.Second)
	return runErr
}

func busDesc(cfg config.Config) string {
	if cfg.Bus.URL == "" {
		return "embedded (" + cfg.Bus.DataDir + ")"
	}
	return "external"
}
