package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/report"
	"github.com/incidentbot/incidentbot/strictyaml"
)

// reportCmd prints one incident's report, or a summary of the incidents
// since a time, from what the bus recorded: the embedded data directory
// (while no serve holds it) or bus.url.
func reportCmd(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) error {
	fs := newFlags("report", "[--config FILE] [--data-dir DIR] (ID | --since DURATION)",
		"Prints an incident's report in Markdown: its timeline (fired, posted, paged, acknowledged by whom and where,\n"+
			"escalated, notes, silences, resolved), TTA, TTR and escalations. With --since (7d, 24h) it summarises the\n"+
			"incidents started since then instead: counts by runbook and severity, median and p90 of TTA and TTR.\n"+
			"It reads the bus: bus.url, or the embedded store in bus.data_dir when no serve is running on it.",
		stdout, stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	dataDir := fs.String("data-dir", "", "the embedded NATS JetStream store to read (overrides bus.data_dir)")
	since := fs.String("since", "", "summarise the incidents started within this long ago (7d, 24h, 90m)")
	if err := fs.parse(args); err != nil {
		return err
	}
	var window time.Duration
	switch {
	case *since != "" && fs.NArg() > 0:
		return usageError{"report takes an incident id or --since, not both"}
	case *since != "":
		d, err := strictyaml.ParseDuration(*since)
		if err != nil || d <= 0 {
			return usageError{fmt.Sprintf("report --since %q: want a duration like 7d, 24h or 90m", *since)}
		}
		window = d
	case fs.NArg() != 1:
		fs.printUsage(stderr)
		return usageError{"report takes one incident id (or --since DURATION)"}
	}
	b, err := openBusToRead(ctx, *cfgPath, *dataDir, environ, "incidents")
	if err != nil {
		return err
	}
	defer b.Close()
	kvs := map[string]bus.KV{}
	for _, spec := range engine.Buckets {
		kv, err := b.KV(ctx, spec.Name)
		if err != nil {
			return fmt.Errorf("read incidents: %w (has serve run on this bus?)", err)
		}
		kvs[spec.Name] = kv
	}
	reps := report.New(engine.NewReader(kvs))
	var out string
	if window > 0 {
		out, err = reps.Summary(ctx, time.Now().Add(-window))
	} else {
		out, err = reps.Report(ctx, fs.Arg(0))
	}
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, out)
	return err
}
