package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/command"
	"github.com/incidentbot/incidentbot/config"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/internal/connlimit"
	"github.com/incidentbot/incidentbot/internal/lease"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/report"
	"github.com/incidentbot/incidentbot/rpcview"
	"github.com/incidentbot/incidentbot/watchers/solana"
)

// Server is a running incidentbot process: the bus, an HTTP server whose
// routes each part registers, and the parts that run until shutdown. serve
// and watch build it with different parts (NewServer, NewWatcher).
type Server struct {
	cfg      config.Config
	log      *slog.Logger
	Bus      *bus.Bus
	Registry *prometheus.Registry
	// Engine, Commands and Reports are set by NewServer.
	Engine   *engine.Engine
	Commands *command.Sender
	Reports  report.Reporter
	// redis is the feature-flag store (redis.url), nil when not configured.
	redis redis.Cmdable
	// actionEnv holds the clients remediation actions resolve and run with.
	actionEnv actions.Env
	mux       *http.ServeMux
	listener  net.Listener
	// http serves from the start, before the bus is there: until Run,
	// only health and metrics answer, /readyz says what the bot waits for
	// (waiting) and every other route 503 (see route).
	http    *http.Server
	httpErr chan error
	serving atomic.Bool
	waiting atomic.Pointer[string]
	ready   *readiness
	parts   []func(context.Context) error
	// consumers drain first on shutdown, before the other parts stop.
	consumers []func(context.Context) error
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

// open builds what every command shares: the HTTP listener, serving
// health and metrics at once, then the bus, which may have to wait for
// NATS (until ctx ends); /readyz stays false until Run.
func open(ctx context.Context, cfg config.Config, log *slog.Logger, o Options) (*Server, error) {
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := &Server{cfg: cfg, log: log, Registry: reg, mux: http.NewServeMux(), listener: o.Listener, httpErr: make(chan error, 1)}
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	s.ready = newReadiness(func(ctx context.Context) error { return s.Bus.Ready(ctx) },
		func(ctx context.Context) error { return s.Bus.Probe(ctx) }, cfg.Bus.ProbeInterval, reg)
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.ready.check(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	if s.listener == nil {
		var err error
		if s.listener, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
		}
	}
	s.setWaiting("starting: connecting to the bus")
	s.http = s.httpServer(cfg.HTTP)
	go func() {
		if err := s.http.Serve(s.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.httpErr <- fmt.Errorf("http: %w", err)
		}
	}()
	log.Info("listening; not ready until the bus is", "addr", s.Addr())
	b, err := bus.Open(ctx, cfg.Bus, log.With("component", "bus"), bus.OnWait(func(w bus.Wait) { s.setWaiting(w.String()) }))
	if err != nil {
		_ = s.http.Close()
		return nil, err
	}
	s.Bus = b
	s.setWaiting("starting: ensuring streams and buckets")
	return s, nil
}

// httpServer bounds what clients can hold (see config.HTTPConfig): the
// deadlines and header size, and the connections open at once, through a
// limit listener that closes idle connections first to make room.
func (s *Server) httpServer(h config.HTTPConfig) *http.Server {
	d := config.DefaultHTTPConfig()
	h.ReadHeaderTimeout = cmp.Or(h.ReadHeaderTimeout, d.ReadHeaderTimeout)
	h.ReadTimeout = cmp.Or(h.ReadTimeout, d.ReadTimeout)
	h.IdleTimeout = cmp.Or(h.IdleTimeout, d.IdleTimeout)
	h.MaxHeaderBytes = cmp.Or(h.MaxHeaderBytes, d.MaxHeaderBytes)
	h.MaxConnections = cmp.Or(h.MaxConnections, d.MaxConnections)
	lim := connlimit.New(s.listener, h.MaxConnections)
	s.listener = lim
	s.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "incidentbot", Name: "http_connections",
			Help: "HTTP connections open (at most http.max_connections)."}, func() float64 { return float64(lim.Open()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "incidentbot", Name: "http_connections_evicted_total",
			Help: "Idle HTTP connections closed to make room for a new one at http.max_connections."}, func() float64 { return float64(lim.Evicted()) }),
	)
	return &http.Server{
		Handler:           http.HandlerFunc(s.route),
		ReadHeaderTimeout: h.ReadHeaderTimeout,
		ReadTimeout:       h.ReadTimeout,
		IdleTimeout:       h.IdleTimeout,
		MaxHeaderBytes:    h.MaxHeaderBytes,
		ConnState:         lim.ConnState,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

// setWaiting records what the server waits for before it is ready.
func (s *Server) setWaiting(what string) { s.waiting.Store(&what) }

// route serves the full routes once Run started everything; before that
// health and metrics, a /readyz that says what the bot waits for, and 503
// with Retry-After elsewhere (Alertmanager and PagerDuty retry a 503; a
// 404 would make them drop the notification).
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if s.serving.Load() {
		s.mux.ServeHTTP(w, r)
		return
	}
	switch r.URL.Path {
	case "/healthz", "/metrics":
		s.mux.ServeHTTP(w, r)
	case "/readyz":
		http.Error(w, "not ready: "+*s.waiting.Load(), http.StatusServiceUnavailable)
	default:
		w.Header().Set("Retry-After", "5")
		http.Error(w, "starting: not ready to take requests yet; retry", http.StatusServiceUnavailable)
	}
}

// abort releases what open and the constructors took when they fail.
func (s *Server) abort() {
	_ = s.http.Close()
	if s.Bus != nil {
		s.Bus.Close()
	}
}

// NewWatcher builds `watch`: only the Solana watchers, publishing to a
// shared bus, with /metrics and health.
func NewWatcher(ctx context.Context, cfg config.Config, log *slog.Logger, o Options) (*Server, error) {
	s, err := open(ctx, cfg, log, o)
	if err != nil {
		return nil, err
	}
	if err := s.addWatchers(ctx, cfg); err != nil {
		s.abort()
		return nil, err
	}
	return s, nil
}

func (s *Server) addWatchers(ctx context.Context, cfg config.Config) error {
	kv, err := s.Bus.EnsureBucket(ctx, rpcview.Bucket)
	if err != nil {
		return err
	}
	state, err := s.Bus.EnsureBucket(ctx, solana.StateBucket)
	if err != nil {
		return err
	}
	leases, err := s.Bus.EnsureBucket(ctx, lease.Bucket)
	if err != nil {
		return err
	}
	w, err := solana.New(cfg.Solana, s.Bus, rpcview.Store{KV: kv}, state, s.Registry, s.log.With("component", "solana"))
	if err != nil {
		return fmt.Errorf("solana watchers: %w", err)
	}
	// Replicas sharing the bus run each watcher on one of them at a time.
	w.Share(leases, lease.Holder())
	s.Add(w.Run)
	return nil
}

// Add runs f alongside the server until shutdown; an error from f (other
// than at shutdown) stops the server.
func (s *Server) Add(f func(context.Context) error) { s.parts = append(s.parts, f) }

// consume runs a durable consumer of the bus with h.
func (s *Server) consume(cfg bus.ConsumerConfig, h bus.Handler) {
	cfg.OnTerminate = func(ctx context.Context, ev bus.Event, reason error) {
		_ = s.Bus.Audit(ctx, bus.AuditRecord{Kind: "event.terminated", EventID: ev.ID, Actor: "incidentbot", Detail: reason.Error()})
	}
	s.consumers = append(s.consumers, func(ctx context.Context) error { return s.Bus.Consume(ctx, cfg, h) })
}

// Addr is the HTTP address the server listens on.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Handler is the HTTP handler (webhooks, metrics, health).
func (s *Server) Handler() http.Handler { return s.mux }

// Run serves until ctx is done, then drains: it stops taking requests,
// lets the consumers finish what they hold, stops the other parts, and
// closes the bus. extra parts run like those added with Add.
func (s *Server) Run(ctx context.Context, extra ...func(context.Context) error) error {
	srv := s.http
	parts := append(append([]func(context.Context) error{}, s.parts...), extra...)
	// Probe the store with real writes; a store wedged after a full disk
	// stops the process, for its supervisor to restart (bus.Watch).
	parts = append(parts, func(ctx context.Context) error { return s.Bus.Watch(ctx, s.ready.record) })
	errc := make(chan error, 1+len(parts)+len(s.consumers))
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	s.serving.Store(true) // every route answers from now on
	var cwg sync.WaitGroup
	for _, c := range s.consumers {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			if err := c(runCtx); err != nil {
				errc <- err
			}
		}()
	}
	consumersDone := make(chan struct{})
	go func() { cwg.Wait(); close(consumersDone) }()
	for _, f := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(runCtx); err != nil && runCtx.Err() == nil {
				errc <- err
			}
		}()
	}
	s.log.Info("incidentbot serving", "addr", s.Addr(), "bus", busDesc(s.cfg))
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		s.log.Error("stopping after failure", "err", runErr)
	case runErr = <-s.httpErr:
		s.log.Error("stopping after failure", "err", runErr)
	}
	s.log.Info("shutting down: draining in-flight work", "timeout", s.cfg.ShutdownTimeout)
	shCtx, shCancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer shCancel()
	_ = srv.Shutdown(shCtx) // stop taking requests first
	cancel()
	select {
	case <-consumersDone:
	case <-shCtx.Done():
		s.log.Warn("engine did not drain in time; unacknowledged events will be redelivered")
	}
	wg.Wait()
	s.Bus.Drain(5 * time.Second)
	s.log.Info("incidentbot stopped")
	return runErr
}

func busDesc(cfg config.Config) string {
	if cfg.Bus.URL == "" {
		return "embedded (" + cfg.Bus.DataDir + ")"
	}
	return "external"
}
