package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/config"
)

// watch runs only the Solana watchers, publishing to a shared NATS, so
// they can run as their own replicas. It serves /metrics (the solana_*
// metrics the course's alert rules query) and /healthz on listen.
func watch(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) (err error) {
	fs := newFlags("watch", "--config FILE [--listen ADDR]",
		"Runs only the Solana watchers, publishing to a shared NATS (bus.url), so they can run as their own\n"+
			"replicas. It serves /metrics and /healthz on listen and needs no Slack, PagerDuty or receiver secrets.",
		stdout, stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	listen := fs.String("listen", "", "HTTP listen address for /metrics (overrides listen)")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"watch takes no arguments"}
	}
	// Validated for watch: bus.url and solana endpoints are required, and
	// no Slack, PagerDuty or receiver secrets are read.
	cfg, err := loadConfig(*cfgPath, environ, config.Options{Use: config.Watch, Overrides: []func(*config.Config){func(c *config.Config) {
		if *listen != "" {
			c.Listen = *listen
		}
	}}})
	if err != nil {
		return err
	}
	log := app.Logger(cfg, stderr)
	defer func() {
		if err == nil {
			log.Info("incidentbot watch stopped")
		}
	}()
	b, err := bus.Open(ctx, cfg.Bus, log.With("component", "bus"))
	if err != nil {
		return err
	}
	defer b.Drain(5 * time.Second)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	w, err := app.Watchers(ctx, cfg, b, reg, log)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	log.Info("solana watchers running", "metrics", ln.Addr().String())
	return w.Run(ctx)
}
