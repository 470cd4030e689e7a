package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheckShippedRunbooks(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"check"}, nil, &out, &errb, nil); err != nil {
		t.Fatalf("check: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "ok:") {
		t.Fatalf("output %q", out.String())
	}
}

func TestCheckReportsPositionsAndFails(t *testing.T) {
	dir := t.TempDir()
	bad := "name: broken\ntitle: Broken\nmatch:\n  matchers: ['alertname=\"X\"']\nremediation:\n  - id: a\n    title: A\n    action: kubernetes.rollbak\n"
	os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte(bad), 0o600)
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"check", dir}, nil, &out, &errb, nil)
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("check of a broken runbook: err=%v", err)
	}
	if !strings.Contains(errb.String(), "broken.yaml:8") || !strings.Contains(errb.String(), "kubernetes.rollbak") {
		t.Fatalf("no file:line in %q", errb.String())
	}
}

func TestReplayShowsRunbookAndPage(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"replay", "../../handlers/alertmanager/testdata/webhook.firing.grouped.json"}, nil, &out, &errb, nil)
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, errb.String())
	}
	for _, want := range []string{`runbook "rpc-endpoint-down"`, "PAGES PagerDuty", `runbook "pod-crash-looping"`, "no page (severity warning"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("replay output lacks %q", want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	var out, errb bytes.Buffer
	for _, args := range [][]string{nil, {"frobnicate"}, {"replay"}} {
		if err := run(context.Background(), args, nil, &out, &errb, nil); exitCode(err) != 2 {
			t.Errorf("run %v: err=%v, want usage error", args, err)
		}
	}
}

// TestServeListenFlagIsValidated: --listen is applied before validation, so
// allow_unauthenticated cannot be smuggled onto a public address by a flag
// (the Helm chart passes --listen=0.0.0.0:8080).
func TestServeListenFlagIsValidated(t *testing.T) {
	env := []string{"INCIDENTBOT_ALERTMANAGER_ALLOW_UNAUTHENTICATED=true", "INCIDENTBOT_BUS_DATA_DIR=" + t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // if it did start, stop it
	defer cancel()
	var out, errb bytes.Buffer
	err := run(ctx, []string{"serve", "--listen=0.0.0.0:0"}, nil, &out, &errb, env)
	if err == nil || !strings.Contains(err.Error(), "alertmanager.allow_unauthenticated: only allowed when listen (0.0.0.0:0) is a loopback address") {
		t.Fatalf("serve --listen=0.0.0.0:0 with allow_unauthenticated: err=%v, want the loopback rule", err)
	}
}
