package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/config"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/notify/console"
	"github.com/incidentbot/incidentbot/runbooks"
	"github.com/incidentbot/incidentbot/watchers/solana"
)

// alertmanagerType is the event type of an Alertmanager webhook body.
const alertmanagerType = "alertmanager.notification"

// replay shows which runbook a payload selects and what would be posted,
// paged and proposed — without touching the bus, Slack or PagerDuty. The
// payload is an Alertmanager webhook body, or a watcher signal with --type;
// "-" reads it from stdin.
func replay(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, environ []string) error {
	fs := newFlags("replay", "[--config FILE] [--type TYPE] PAYLOAD.json|-",
		"Shows which runbook a payload matches and what would be posted, paged and proposed, with no side\n"+
			"effects. PAYLOAD is an Alertmanager webhook body, or with --type an on-chain event's data as the\n"+
			"watchers publish it (deploy/examples/solana-rpc-unhealthy.json); - reads it from stdin.",
		stdout, stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	typ := fs.String("type", "", "event type of a watcher payload: "+strings.Join(solana.EventTypes, ", ")+"; empty: an Alertmanager webhook")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.printUsage(stderr)
		return usageError{"replay takes one payload file (or - for stdin)"}
	}
	if *typ != "" && *typ != alertmanagerType && !slices.Contains(solana.EventTypes, *typ) {
		return usageError{fmt.Sprintf("replay --type %q: unknown event type; known: %s (and %s, the default)",
			*typ, strings.Join(solana.EventTypes, ", "), alertmanagerType)}
	}
	// replay touches no sink: the configuration's shape and its
	// runbooks.dir are what it uses.
	cfg, err := loadConfig(*cfgPath, environ, config.Options{SkipSecrets: true})
	if err != nil {
		return err
	}
	name := fs.Arg(0)
	var data []byte
	if name == "-" {
		if stdin == nil {
			stdin = strings.NewReader("")
		}
		name = "stdin"
		data, err = io.ReadAll(io.LimitReader(stdin, 16<<20))
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return fmt.Errorf("read payload: %w", err)
	}
	// Decode exactly as the engine does, from the envelope a source would
	// have published.
	ev := bus.Event{Source: "alertmanager", Type: alertmanagerType, Data: data}
	if *typ != "" && *typ != alertmanagerType {
		ev.Type = *typ
		ev.Source, _, _ = strings.Cut(*typ, ".")
	}
	ev.ID = "replay"
	ins, err := app.Decoders().Decode(ev)
	if err != nil {
		return fmt.Errorf("decode %s: %w", name, err)
	}
	set, _, err := runbooks.LoadDefault(cfg.Runbooks.Dir, actions.Default())
	if err == nil && *cfgPath != "" {
		err = app.CheckConfigRefs(set, cfg)
	}
	if err != nil {
		return fmt.Errorf("load runbooks: %w", err)
	}
	cat := app.Catalog{Set: set, DefaultChannel: cfg.Runbooks.DefaultChannel}
	previews, unmatched := engine.PreviewInputs(ctx, cat, ins, time.Now())
	for _, s := range unmatched {
		fmt.Fprintf(stdout, "unmatched: %s (no runbook and no fallback)\n", s.Name())
	}
	for _, p := range previews {
		pageNote := "no page (severity " + string(p.Incident.Severity) + ": chat only)"
		if p.Pages {
			pageNote = "PAGES PagerDuty"
			if p.Route.PagerDutyKey != "" {
				// The reference's name, never the key it stands for.
				pageNote += fmt.Sprintf(" (routing key %q, from pagerduty.routing_keys)", p.Route.PagerDutyKey)
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
