package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/incidentbot/incidentbot/bus"
	"github.com/incidentbot/incidentbot/engine"
	"github.com/incidentbot/incidentbot/strictyaml"
)

// auditLimit bounds how many audit records are read.
const auditLimit = 100000

// auditCmd prints the audit trail: every decision and effect, with who,
// when and, for remediation, the step, its plan and the plan's hash.
func auditCmd(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) error {
	fs := newFlags("audit", "[--config FILE] [--data-dir DIR] [--incident ID] [--since DURATION] [--json]",
		"Prints the audit trail, oldest first: incidents opened, acknowledged, escalated and resolved, and each\n"+
			"remediation step requested, approved, denied, expired, voided, run and its result (verified, failed,\n"+
			"outcome unknown), with who, when, the plan and its hash. --json prints one JSON record a line.\n"+
			"It reads the bus: bus.url, or the embedded store in bus.data_dir when no serve is running on it.",
		stdout, stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	dataDir := fs.String("data-dir", "", "the embedded NATS JetStream store to read (overrides bus.data_dir)")
	incident := fs.String("incident", "", "only this incident's records (INC-… ; case and prefix optional)")
	since := fs.String("since", "", "only records from within this long ago (7d, 24h, 90m)")
	asJSON := fs.Bool("json", false, "one JSON record a line")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"audit takes flags only"}
	}
	var from time.Time
	if *since != "" {
		d, err := strictyaml.ParseDuration(*since)
		if err != nil || d <= 0 {
			return usageError{fmt.Sprintf("audit --since %q: want a duration like 7d, 24h or 90m", *since)}
		}
		from = time.Now().Add(-d)
	}
	b, err := openBusToRead(ctx, *cfgPath, *dataDir, environ, "the audit trail")
	if err != nil {
		return err
	}
	defer b.Close()
	recs, err := b.AuditTrail(ctx, auditLimit)
	if err != nil {
		return err
	}
	want := ""
	if *incident != "" {
		want = engine.NormalizeID(*incident)
	}
	for _, r := range recs {
		if want != "" && engine.NormalizeID(r.Incident) != want {
			continue
		}
		if !from.IsZero() && r.Time.Before(from) {
			continue
		}
		if *asJSON {
			line, _ := json.Marshal(r)
			if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
				return err
			}
			continue
		}
		if _, err := io.WriteString(stdout, auditLine(r)); err != nil {
			return err
		}
	}
	return nil
}

// auditLine renders one record for people: time, kind, incident, who,
// what; then the attributes, sorted, on the same line.
func auditLine(r bus.AuditRecord) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %-24s %-12s %s", r.Time.UTC().Format("2006-01-02 15:04:05Z"), r.Kind, r.Incident, r.Actor)
	if r.Detail != "" {
		fmt.Fprintf(&b, " — %s", oneLineText(r.Detail))
	}
	for _, k := range slices.Sorted(maps.Keys(r.Attrs)) {
		if v := r.Attrs[k]; v != "" {
			fmt.Fprintf(&b, " %s=%q", k, oneLineText(v))
		}
	}
	b.WriteByte('\n')
	return b.String()
}

func oneLineText(s string) string { return strings.Join(strings.Fields(s), " ") }
