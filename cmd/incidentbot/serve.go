package main

import (
	"context"
	"fmt"
	"io"

	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/config"
)

func loadConfig(path string, environ []string, overrides ...func(*config.Config)) (config.Config, error) {
	cfg, err := config.Load(path, environ, overrides...)
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
	// Flags are applied before validation: allow_unauthenticated, for one,
	// is only allowed on a loopback address.
	cfg, err := loadConfig(*cfgPath, environ, func(c *config.Config) {
		if *dataDir != "" {
			c.Bus.DataDir = *dataDir
		}
		if *listen != "" {
			c.Listen = *listen
		}
	})
	if err != nil {
		return err
	}
	log := app.Logger(cfg, stderr)
	srv, err := app.NewServer(ctx, cfg, log, app.Options{Stdout: stdout})
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}
