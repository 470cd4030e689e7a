package main

import (
	"context"
	"errors"
	"io"

	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/config"
)

// watch runs only the Solana watchers, publishing to a shared NATS, so
// they can run as their own replicas. It serves /metrics (the solana_*
// metrics the course's alert rules query) and health on listen.
func watch(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) error {
	fs := newFlags("watch", stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	listen := fs.String("listen", "", "HTTP listen address for /metrics (overrides listen)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	cfg, err := loadConfig(*cfgPath, environ, func(c *config.Config) {
		if *listen != "" {
			c.Listen = *listen
		}
	})
	if err != nil {
		return err
	}
	if cfg.Bus.URL == "" {
		return errors.New("watch publishes to a shared NATS: set bus.url (INCIDENTBOT_BUS_URL); serve runs the watchers itself")
	}
	if !cfg.Solana.Enabled() {
		return errors.New("watch: no solana.endpoints configured")
	}
	srv, err := app.NewWatcher(ctx, cfg, app.Logger(cfg, stderr), app.Options{Stdout: stdout})
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}
