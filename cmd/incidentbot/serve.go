package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/config"
)

// loadConfig loads the configuration as every command does: one
// validation, shared by serve, watch, replay and check.
func loadConfig(path string, environ []string, o config.Options) (config.Config, error) {
	cfg, err := o.Load(path, environ)
	if err != nil {
		return cfg, configError{err}
	}
	return cfg, nil
}

// configError prints every configuration problem on a line of its own.
type configError struct{ err error }

func (e configError) Error() string {
	ps := config.Problems(e.err)
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = "  " + p.Error()
	}
	noun := "problems"
	if len(ps) == 1 {
		noun = "problem"
	}
	return fmt.Sprintf("invalid configuration, %d %s:\n%s", len(ps), noun, strings.Join(lines, "\n"))
}

func (e configError) Unwrap() error { return e.err }

func serve(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) error {
	fs := newFlags("serve", "[--config FILE] [--data-dir DIR] [--listen ADDR]",
		"Runs the bot: the Alertmanager receiver, the engine, the Solana watchers (when configured), /metrics,\n"+
			"/healthz and /readyz. SIGTERM drains in-flight work. Without --config it runs on its embedded\n"+
			"default: in-process NATS under ./data, shipped runbooks, console output instead of Slack/PagerDuty.",
		stdout, stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	dataDir := fs.String("data-dir", "", "directory for the embedded NATS JetStream store (overrides bus.data_dir)")
	listen := fs.String("listen", "", "HTTP listen address (overrides listen)")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"serve takes no arguments"}
	}
	// Flags are applied before validation: allow_unauthenticated, for one,
	// is only allowed on a loopback address.
	cfg, err := loadConfig(*cfgPath, environ, config.Options{Overrides: []func(*config.Config){func(c *config.Config) {
		if *dataDir != "" {
			c.Bus.DataDir = *dataDir
		}
		if *listen != "" {
			c.Listen = *listen
		}
	}}})
	if err != nil {
		return err
	}
	log := app.Logger(cfg, stderr)
	app.SetMemoryLimit(cfg.MemoryLimit, environ, log)
	srv, err := app.NewServer(ctx, cfg, log, app.Options{Stdout: stdout})
	if err != nil {
		return startErr(ctx, log, err)
	}
	return srv.Run(ctx)
}

// startErr is the error of a start that failed, or nil when SIGTERM cut
// the start short (while it waited for NATS, say): the bot then stops
// cleanly, as it would once running.
func startErr(ctx context.Context, log *slog.Logger, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) && errors.Is(err, context.Canceled) {
		log.Info("shutting down: stopped while starting", "err", err)
		return nil
	}
	return err
}

// openBusToRead opens the bus of the configuration at cfgPath (its data
// directory replaced by dataDir when set), secrets unread, for a command
// that reads what serve stored: what names it in errors.
func openBusToRead(ctx context.Context, cfgPath, dataDir string, environ []string, what string) (*bus.Bus, error) {
	cfg, err := loadConfig(cfgPath, environ, config.Options{SkipSecrets: true, Overrides: []func(*config.Config){func(c *config.Config) {
		if dataDir != "" {
			c.Bus.DataDir = dataDir
		}
	}}})
	if err != nil {
		return nil, err
	}
	b, err := bus.Open(ctx, cfg.Bus, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, fmt.Errorf("open the bus to read %s: %w", what, err)
	}
	return b, nil
}
