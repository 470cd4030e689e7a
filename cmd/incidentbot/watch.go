package main

import (
	"context"
	"io"

	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/config"
)

// watch runs only the Solana watchers, publishing to a shared NATS, so
// they can run as their own replicas. It serves /metrics (the solana_*
// metrics the course's alert rules query) and /healthz on listen.
func watch(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) error {
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
	srv, err := app.NewWatcher(ctx, cfg, log, app.Options{Stdout: stdout})
	if err != nil {
		return startErr(ctx, log, err)
	}
	return srv.Run(ctx)
}
