package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/config"
	"github.com/incidentbot/incidentbot/rpcview"
	"github.com/incidentbot/incidentbot/watchers/solana"
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
	log := app.Logger(cfg, stderr)
	srv, err := app.NewServer(ctx, cfg, log, app.Options{Stdout: stdout})
	if err != nil {
		return err
	}
	var extra []func(context.Context) error
	if cfg.Solana.Enabled() {
		w, err := newWatchers(ctx, cfg, srv.Bus, srv.Registry, log)
		if err != nil {
			srv.Bus.Close()
			return err
		}
		extra = append(extra, w.Run)
	}
	return srv.Run(ctx, extra...)
}

func newWatchers(ctx context.Context, cfg config.Config, b *bus.Bus, reg prometheus.Registerer, log *slog.Logger) (*solana.Watchers, error) {
	kv, err := b.KV(ctx, bus.BucketRPCView)
	if err != nil {
		return nil, err
	}
	w, err := solana.New(cfg.Solana, b, rpcview.Store{KV: kv}, reg, log.With("component", "solana"))
	if err != nil {
		return nil, fmt.Errorf("solana watchers: %w", err)
	}
	return w, nil
}
