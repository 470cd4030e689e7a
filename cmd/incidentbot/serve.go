package main

import (
	"context"
	"fmt"
	"io"

	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/config"
)

func loadConfig(path string, environ []string) (config.Config, error) {
	cfg, err := config.Load(path, environ)
	if err != nil {
		return cfg, fmt.Errorf("configuration: %w", err)
	}
	return cfg, nil
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) error {
	fs := newFlags("serve", stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	dataDir := fs.String("data-dir", "", "directory for the embedded NATS JetStream store (overrides bus.data_dir)")
	listen := fs.String("listen", "", "HTTP listen address (overrides listen)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	cfg, err := loadConfig(*cfgPath, environ)
	if err != nil {
		return err
	}
	if *dataDir != "" {
		cfg.Bus.DataDir = *dataDir
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	// Validate again with the flags applied: allow_unauthenticated, for
	// one, is only allowed on a loopback address.
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	log := app.Logger(cfg, stderr)
	srv, err := app.NewServer(ctx, cfg, log, app.Options{Stdout: stdout})
	if err != nil {
		return err
	}
	var extra []func(context.Context) error
	if cfg.Solana.Enabled() {
		w, err := app.Watchers(ctx, cfg, srv.Bus, srv.Registry, log)
		if err != nil {
			srv.Bus.Close()
			return err
		}
		extra = append(extra, w.Run)
	}
	return srv.Run(ctx, extra...)
}
