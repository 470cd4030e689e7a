package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/runbooks"
	"github.com/incidentbot/incidentbot/watchers/solana"
)

var subcommands = []string{"serve", "watch", "check", "replay", "report", "audit", "test", "actions", "version"}

// TestHelpEverywhere: --help (and -h, and `help CMD`) on every subcommand
// prints its usage to stdout and exits 0, without running anything.
func TestHelpEverywhere(t *testing.T) {
	for _, cmd := range subcommands {
		for _, args := range [][]string{{cmd, "--help"}, {cmd, "-h"}, {"help", cmd}} {
			var out, errb bytes.Buffer
			err := run(context.Background(), args, nil, &out, &errb, nil)
			if err != nil {
				t.Errorf("%v: err %v, want exit 0", args, err)
			}
			if !strings.HasPrefix(out.String(), "Usage: incidentbot "+cmd) || !strings.Contains(out.String(), "-version") {
				t.Errorf("%v: stdout %q, want the usage", args, out.String())
			}
		}
	}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), args, nil, &out, &errb, nil); err != nil || !strings.Contains(out.String(), "incidentbot serve") {
			t.Errorf("%v: err %v, stdout %q", args, err, out.String())
		}
	}
	// A bad flag is a usage error, with the usage on stderr.
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"check", "--nope"}, nil, &out, &errb, nil); exitCode(err) != 2 || !strings.Contains(errb.String(), "Usage: incidentbot check") {
		t.Errorf("check --nope: err %v, stderr %q", err, errb.String())
	}
}

// TestVersionEverywhere: --version on the command line and on every
// subcommand prints the version and exits 0.
func TestVersionEverywhere(t *testing.T) {
	cases := [][]string{{"--version"}, {"-version"}, {"version"}}
	for _, cmd := range subcommands {
		cases = append(cases, []string{cmd, "--version"})
	}
	for _, args := range cases {
		var out, errb bytes.Buffer
		if err := run(context.Background(), args, nil, &out, &errb, nil); err != nil || !strings.HasPrefix(out.String(), "incidentbot "+version) {
			t.Errorf("%v: err %v, stdout %q", args, err, out.String())
		}
	}
}

func TestVersionJSON(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"version", "--json"}, nil, &out, &errb, nil); err != nil {
		t.Fatal(err)
	}
	var v versionInfo
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if v.Version != version || v.Commit == "" || !strings.HasPrefix(v.Go, "go1.") {
		t.Errorf("version --json = %+v", v)
	}
	for _, m := range coreModules {
		if !strings.HasPrefix(v.Modules[m], "v") {
			t.Errorf("module %s: version %q", m, v.Modules[m])
		}
	}
}

const example = "../../deploy/examples/solana-rpc-unhealthy.json"

// TestReplayShippedExampleAndStdin: the shipped on-chain example replays
// to its runbook, from a file and from stdin.
func TestReplayShippedExampleAndStdin(t *testing.T) {
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"replay", "--type", "solana.rpc.unhealthy", example}, {"replay", "--type", "solana.rpc.unhealthy", "-"}} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), args, bytes.NewReader(data), &out, &errb, nil); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errb.String())
		}
		for _, want := range []string{`runbook "solana-rpc-unhealthy"`, "PAGES PagerDuty", "unhealthy (187 slots behind)"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%v: output lacks %q:\n%s", args, want, out.String())
			}
		}
	}
	// An Alertmanager webhook from stdin too.
	hook, _ := os.ReadFile("../../handlers/alertmanager/testdata/webhook.firing.single.json")
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"replay", "-"}, bytes.NewReader(hook), &out, &errb, nil); err != nil || !strings.Contains(out.String(), "── runbook") {
		t.Errorf("replay - (webhook): %v\n%s", err, out.String())
	}
}

func TestReplayRefusesUnknownType(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"replay", "--type", "solana.rpc.unhelthy", example}, nil, &out, &errb, nil)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), `unknown event type`) {
		t.Fatalf("err = %v, want a usage error", err)
	}
	for _, typ := range append(solana.EventTypes, alertmanagerType) {
		if !strings.Contains(err.Error(), typ) {
			t.Errorf("error does not list %s: %v", typ, err)
		}
	}
}

// TestEveryRunbookTypeIsReplayable: the types shipped runbooks match are
// types replay accepts.
func TestEveryRunbookTypeIsReplayable(t *testing.T) {
	set, _, err := runbooks.LoadDefault("", actions.Default())
	if err != nil {
		t.Fatal(err)
	}
	for _, rb := range set.All() {
		for _, typ := range rb.Selector.Types {
			if !slices.Contains(solana.EventTypes, typ) {
				t.Errorf("runbook %s matches type %q, which replay --type refuses", rb.Name, typ)
			}
		}
	}
}

// TestActionsSaysWhatRuns: `actions` says which actions run and which
// only propose a plan.
func TestActionsSaysWhatRuns(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"actions"}, nil, &out, &errb, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "kubernetes.scale (runs)") || !strings.Contains(out.String(), "manual (plan only)") {
		t.Errorf("actions output:\n%s", out.String())
	}
}
