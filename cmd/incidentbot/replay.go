package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/config"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/notify/console"
	"github.com/incidentbot/incidentbot/runbooks"
)

// replay shows which runbook a payload selects and what would be posted,
// paged and proposed — without touching the bus, Slack or PagerDuty. The
// payload is an Alertmanager webhook body, or a watcher signal with --type.
func replay(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) error {
	fs := newFlags("replay", stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	typ := fs.String("type", "", "event type of a signal payload (e.g. solana.rpc.unhealthy); empty: Alertmanager webhook")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() != 1 {
		return usageError{"replay takes one payload file"}
	}
	// replay touches no sink: the configuration's shape and its
	// runbooks.dir are what it uses.
	cfg, err := loadConfig(*cfgPath, environ, config.Options{SkipSecrets: true})
	if err != nil {
		return err
	}
	data, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("read payload: %w", err)
	}
	// Decode exactly as the engine does, from the envelope a source would
	// have published.
	ev := bus.Event{Source: "alertmanager", Type: "alertmanager.notification", Data: data}
	if *typ != "" {
		ev.Type = *typ
		ev.Source, _, _ = strings.Cut(*typ, ".")
	}
	sigs, truncated, err := engine.Signals(ev)
	if err != nil {
		return fmt.Errorf("decode %s: %w", fs.Arg(0), err)
	}
	set, _, err := runbooks.LoadDefault(cfg.Runbooks.Dir, actions.Default())
	if err != nil {
		return fmt.Errorf("load runbooks: %w", err)
	}
	cat := app.Catalog{Set: set, DefaultChannel: cfg.Runbooks.DefaultChannel}
	previews, unmatched := engine.PreviewSignals(ctx, cat, sigs, truncated, time.Now())
	for _, s := range unmatched {
		fmt.Fprintf(stdout, "unmatched: %s (no runbook and no fallback)\n", s.Name())
	}
	for _, p := range previews {
		pageNote := "no page (severity " + string(p.Incident.Severity) + ": chat only)"
		if p.Pages {
			pageNote = "PAGES PagerDuty"
			if p.Route.PagerDutyKey != "" {
				pageNote += " (routing key " + p.Route.PagerDutyKey + ")"
			}
		}
		fmt.Fprintf(stdout, "── runbook %q → %s, %s\n", p.Incident.Runbook, p.Route.Channel, pageNote)
		fmt.Fprintln(stdout, console.Card(p.Incident))
	}
	if len(previews) == 0 && len(unmatched) == 0 {
		return errors.New("payload opens no incident (only resolved alerts)")
	}
	return nil
}
