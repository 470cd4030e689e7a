package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTestCommand: the shipped runbook tests pass (exit 0); a test that
// expects the wrong runbook, or the wrong page decision, fails with exit 1
// and says on which line of the test file, with what the bot decided.
func TestTestCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"test", "../../runbooks/tests"}, nil, &out, &errb, nil); err != nil {
		t.Fatalf("shipped tests: %v\n%s%s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "ok   ../../runbooks/tests/rpc-endpoint-down.yaml: 4 tests") {
		t.Errorf("output:\n%s", out.String())
	}

	dir := t.TempDir()
	// Payloads are read relative to the test file.
	hook, err := os.ReadFile("../../runbooks/tests/testdata/alertmanager/RPCEndpointDown.firing.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rpc.json"), hook, 0o600); err != nil {
		t.Fatal(err)
	}
	head := "tests:\n  - name: RPCEndpointDown\n    inputs:\n      - at: 0s\n        alertmanager: {file: rpc.json}\n    expect:\n      - at: 1m\n        incidents:\n"
	for _, tc := range []struct {
		name, expect string
		report       []string
	}{
		{"wrong runbook", "          - runbook: high-latency\n            page: true\n",
			[]string{"wrong runbook.yaml:9: at 1m: incident 1 (INC-0001) runbook\n      - high-latency\n      + rpc-endpoint-down\n"}},
		{"wrong page", "          - runbook: rpc-endpoint-down\n            severity: critical\n            page: false\n",
			[]string{"wrong page.yaml:11: at 1m: incident 1 (INC-0001) page\n      - false\n      + true\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".yaml")
			if err := os.WriteFile(path, []byte(head+tc.expect), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			err := run(context.Background(), []string{"test", path}, nil, &out, &errb, nil)
			if err == nil || exitCode(err) != 1 {
				t.Fatalf("err %v (exit %d), want exit 1\n%s", err, exitCode(err), out.String())
			}
			if !strings.HasPrefix(out.String(), "FAIL "+path+":2: RPCEndpointDown\n") {
				t.Errorf("output does not start with the failed test:\n%s", out.String())
			}
			for _, want := range tc.report {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks\n%s\noutput:\n%s", want, out.String())
				}
			}
		})
	}

	// A file that does not load is exit 1 too, with its file:line.
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(head+"          - runbok: x\n"), 0o600)
	out.Reset()
	errb.Reset()
	if err := run(context.Background(), []string{"test", bad}, nil, &out, &errb, nil); exitCode(err) != 1 || !strings.Contains(errb.String(), bad+`:9: tests[0].expect[0].incidents[0].runbok: unknown key "runbok"`) {
		t.Errorf("bad file: err %v\nstderr %s", err, errb.String())
	}
	if err := run(context.Background(), []string{"test"}, nil, &out, &errb, nil); exitCode(err) != 2 {
		t.Errorf("test without files: err %v, want a usage error", err)
	}
}

// TestTestHelpExplainsTheFormat: test --help documents the test file.
func TestTestHelpExplainsTheFormat(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"test", "--help"}, nil, &out, &errb, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"runbook_files:", "alertmanager: {file:", "event:", "ack: {by: Ada}", "escalations:", "next_escalation:", "page: true"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("test --help lacks %q", want)
		}
	}
}
