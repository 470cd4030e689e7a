package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/runbooks"
)

// TestCheckAgreesWithServe: check --config and serve share one validation,
// so for the same configuration check passes exactly when serve starts.
func TestCheckAgreesWithServe(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	token := write("token", "s3cret\n")
	empty := write("empty-token", "")
	blank := write("blank-token", "  \n")
	badRunbooks := filepath.Join(dir, "bad-runbooks")
	os.Mkdir(badRunbooks, 0o700)
	os.WriteFile(filepath.Join(badRunbooks, "x.yaml"), []byte("name: x\ntitle: X\nmatch: {matchers: ['alertname=\"X\"']}\nremediation:\n  - {id: a, title: A, action: kubernetes.rollbak}\n"), 0o600)

	tests := []struct {
		name, config string
		ok           bool
		want         string // in check's output and serve's error
	}{
		{"loopback without credentials", "listen: 127.0.0.1:0\n", true, ""},
		{"public with a bearer token file", "listen: 0.0.0.0:0\nalertmanager: {bearer_token_file: " + token + "}\n", true, ""},
		{"public without credentials", "listen: 0.0.0.0:0\n", false, "listen: 0.0.0.0:0 is not a loopback address"},
		{"port out of range", "listen: 127.0.0.1:99999\n", false, `port "99999" is not a port number`},
		{"negative reopen window", "listen: 127.0.0.1:0\nengine: {reopen_window: -5m}\n", false, `engine.reopen_window: invalid duration "-5m": negative`},
		{"zero shutdown timeout", "listen: 127.0.0.1:0\nshutdown_timeout: 0s\n", false, "shutdown_timeout: must be a positive duration"},
		{"empty bearer token file", "listen: 127.0.0.1:0\nalertmanager: {bearer_token_file: " + empty + "}\n", false, empty + " is empty"},
		{"blank bearer token file", "listen: 127.0.0.1:0\nalertmanager: {bearer_token_file: " + blank + "}\n", false, blank + " is empty"},
		{"missing secret file", "listen: 127.0.0.1:0\nslack: {token_file: " + filepath.Join(dir, "nope") + "}\n", false, "nope not found on this host"},
		{"bearer and basic", "listen: 127.0.0.1:0\nalertmanager: {bearer_token: t, username: u, password: p}\n", false, "both a bearer token and basic auth"},
		{"unknown key", "listen: 127.0.0.1:0\nslak: {}\n", false, `unknown key "slak" (did you mean "slack"?)`},
		{"broken runbooks.dir", "listen: 127.0.0.1:0\nrunbooks: {dir: " + badRunbooks + "}\n", false, `unknown action "kubernetes.rollbak"`},
		{"missing runbooks.dir", "listen: 127.0.0.1:0\nrunbooks: {dir: " + filepath.Join(dir, "none") + "}\n", false, "none not found on this host"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write(strings.ReplaceAll(tt.name, " ", "-")+".yaml", tt.config)
			var out, errb bytes.Buffer
			checkErr := run(context.Background(), []string{"check", "--config", path}, nil, &out, &errb, nil)
			if (checkErr == nil) != tt.ok {
				t.Errorf("check: err=%v, want ok=%v\n%s", checkErr, tt.ok, errb.String())
			}
			if tt.want != "" && !strings.Contains(errb.String(), tt.want) {
				t.Errorf("check output lacks %q:\n%s", tt.want, errb.String())
			}
			dataDir := filepath.Join(dir, "data", string(rune('a'+i)))
			s, serveErr := startServe(t, []string{"--config", path, "--data-dir", dataDir}, nil)
			if s != nil {
				s.stop(t)
			}
			if (serveErr == nil) != tt.ok {
				t.Errorf("serve: err=%v, want ok=%v (check said %v)", serveErr, tt.ok, checkErr)
			}
			if tt.want != "" && (serveErr == nil || !strings.Contains(serveErr.Error(), tt.want)) {
				t.Errorf("serve: %v; want it to say %q", serveErr, tt.want)
			}
		})
	}
}

// TestCheckDirLoadsLikeServe: `check DIR` checks DIR over the shipped
// runbooks, as serve loads runbooks.dir; --only checks DIR alone.
func TestCheckDirLoadsLikeServe(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "mine.yaml"), []byte(`name: my-error-rate
title: Errors
match: {matchers: ['alertname="HighErrorRate"']}
assessment: [{text: Look}]
remediation: [{id: a, title: A, action: manual, params: {text: call}}]
escalation: [{name: L1, after: 0s, notify: "@me"}]
`), 0o600)
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"check", dir}, nil, &out, &errb, nil); err != nil {
		t.Fatalf("check DIR: %v\n%s", err, errb.String())
	}
	if !strings.Contains(errb.String(), `warning: `+filepath.Join(dir, "mine.yaml")+`:1: runbook "my-error-rate" can never match: runbook "high-error-rate"`) {
		t.Errorf("check DIR: no shadowing warning naming the shipped runbook:\n%s", errb.String())
	}
	shipped, _, err := runbooks.LoadDefault("", actions.Default())
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("ok: %d runbooks", len(shipped.All())+1); !strings.Contains(out.String(), want) {
		t.Errorf("check DIR: %q, want the shipped runbooks and DIR's", out.String())
	}
	out.Reset()
	errb.Reset()
	if err := run(context.Background(), []string{"check", "--only", dir}, nil, &out, &errb, nil); err != nil {
		t.Fatalf("check --only DIR: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "ok: 1 runbooks") || strings.Contains(errb.String(), "can never match") {
		t.Errorf("check --only DIR: %q\n%s", out.String(), errb.String())
	}
}

// TestCheckReportsAMissingFileOnce and fails.
func TestCheckReportsAMissingFileOnce(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"check", "no-such-runbook.yaml"}, nil, &out, &errb, nil)
	if err == nil || strings.Count(errb.String(), "no-such-runbook.yaml") != 1 {
		t.Errorf("err %v, output:\n%s\nwant the missing file named once", err, errb.String())
	}
}

// TestWatchNeedsNoSinkSecrets: watch gets past configuration with the
// Slack, PagerDuty and receiver secret files absent; it fails only where
// it needs something, the shared bus.
func TestWatchNeedsNoSinkSecrets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "watch.yaml")
	os.WriteFile(path, []byte(`listen: 0.0.0.0:0
bus: {url: "nats://127.0.0.1:1"}
slack: {token_file: /nonexistent/slack-token}
pagerduty: {routing_key_file: /nonexistent/pd-key}
alertmanager: {bearer_token_file: /nonexistent/am-token}
solana:
  endpoints: [{name: a, url: "https://rpc.example", role: primary}]
`), 0o600)
	var out, errb bytes.Buffer
	// A bus that is down is waited for, until the context ends.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := run(ctx, []string{"watch", "--config", path}, nil, &out, &errb, nil)
	if err == nil || strings.Contains(err.Error(), "configuration") || !strings.Contains(err.Error(), "waiting for NATS") {
		t.Fatalf("watch: %v, want only the unreachable bus to stop it", err)
	}
}
