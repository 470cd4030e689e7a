package runbooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/rpcview"
	"github.com/incidentbot/incidentbot/rules"
)

func loadShipped(t testing.TB) *Set {
	t.Helper()
	s, w, err := LoadDefault("", actions.Default())
	if err != nil {
		t.Fatalf("shipped runbooks: %v", err)
	}
	if len(w) > 0 {
		t.Errorf("shipped runbooks have warnings:\n%s", w)
	}
	return s
}

// courseRunbook maps the course's alerts to the shipped runbooks.
var courseRunbook = map[string]string{
	"HighErrorRate":                   "high-error-rate",
	"HighLatency":                     "high-latency",
	"PodCrashLooping":                 "pod-crash-looping",
	"HighTransactionFailureRate":      "high-transaction-failure-rate",
	"RPCEndpointDown":                 "rpc-endpoint-down",
	"DatabaseConnectionPoolExhausted": "database-connection-pool-exhausted",
}

type webhook struct {
	Alerts []struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"alerts"`
}

// fixtureAlerts reads the Alertmanager webhook fixtures shared with the
// handler tests. A missing fixture fails the test.
func fixtureAlerts(t *testing.T) []map[string]string {
	t.Helper()
	files, err := filepath.Glob("../handlers/alertmanager/testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no Alertmanager fixtures found under ../handlers/alertmanager/testdata (err %v)", err)
	}
	var out []map[string]string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var w webhook
		if err := json.Unmarshal(b, &w); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, a := range w.Alerts {
			out = append(out, a.Labels)
		}
	}
	return out
}

func am(labels map[string]string) rules.Input {
	return rules.Input{Source: "alertmanager", Type: "alertmanager.alert", Labels: labels}
}

func TestShippedMatchFixtures(t *testing.T) {
	s := loadShipped(t)
	seen := map[string]bool{}
	for _, l := range fixtureAlerts(t) {
		want, ok := courseRunbook[l["alertname"]]
		if !ok {
			want = "fallback"
		}
		r := s.Match(am(l))
		if r == nil || r.Name != want {
			t.Errorf("%v: matched %v, want %s", l, r, want)
		}
		seen[l["alertname"]] = true
	}
	if len(seen) < 5 {
		t.Errorf("fixtures cover only %v", seen)
	}
}

func TestShippedMatchAndRoute(t *testing.T) {
	s := loadShipped(t)
	tests := []struct {
		name    string
		in      rules.Input
		want    string
		sev     notify.Severity
		page    bool
		channel string
	}{
		// The course's PrometheusRule (Part D), with its severities.
		{"HighErrorRate", am(map[string]string{"alertname": "HighErrorRate", "severity": "critical"}), "high-error-rate", notify.SeverityCritical, true, "#solana-dapps-alerts"},
		{"HighLatency", am(map[string]string{"alertname": "HighLatency", "severity": "warning"}), "high-latency", notify.SeverityWarning, false, "#solana-dapps-warnings"},
		{"PodCrashLooping", am(map[string]string{"alertname": "PodCrashLooping", "severity": "warning", "pod": "api-1"}), "pod-crash-looping", notify.SeverityWarning, false, "#solana-dapps-warnings"},
		{"HighTransactionFailureRate", am(map[string]string{"alertname": "HighTransactionFailureRate", "severity": "critical"}), "high-transaction-failure-rate", notify.SeverityCritical, true, "#solana-dapps-alerts"},
		{"RPCEndpointDown", am(map[string]string{"alertname": "RPCEndpointDown", "severity": "critical"}), "rpc-endpoint-down", notify.SeverityCritical, true, "#solana-dapps-alerts"},
		{"DatabaseConnectionPoolExhausted", am(map[string]string{"alertname": "DatabaseConnectionPoolExhausted", "severity": "warning"}), "database-connection-pool-exhausted", notify.SeverityWarning, false, "#solana-dapps-warnings"},
		{"page maps to critical", am(map[string]string{"alertname": "HighLatency", "severity": "page"}), "high-latency", notify.SeverityCritical, true, "#solana-dapps-alerts"},
		{"missing severity uses default", am(map[string]string{"alertname": "RPCEndpointDown"}), "rpc-endpoint-down", notify.SeverityCritical, true, "#solana-dapps-alerts"},
		{"unknown alert", am(map[string]string{"alertname": "DiskFull", "severity": "warning"}), "fallback", notify.SeverityWarning, false, "#solana-dapps-warnings"},
		{"rpc unhealthy", rules.Input{Source: "solana", Type: "solana.rpc.unhealthy", Labels: map[string]string{"alertname": "SolanaRPCUnhealthy", "severity": "critical", "endpoint": "primary"}}, "solana-rpc-unhealthy", notify.SeverityCritical, true, "#solana-dapps-alerts"},
		{"rpc recovered", rules.Input{Source: "solana", Type: "solana.rpc.recovered", Labels: map[string]string{"alertname": "SolanaRPCUnhealthy", "severity": "critical"}}, "solana-rpc-unhealthy", notify.SeverityCritical, true, "#solana-dapps-alerts"},
		{"tx failure", rules.Input{Source: "solana", Type: "solana.tx.failure_rate", Labels: map[string]string{"alertname": "SolanaTxFailureRate", "severity": "warning", "program": "Escrow"}}, "solana-tx-failure-rate", notify.SeverityWarning, false, "#solana-dapps-warnings"},
		{"tx recovered", rules.Input{Source: "solana", Type: "solana.tx.failure_rate_recovered", Labels: map[string]string{"alertname": "SolanaTxFailureRate"}}, "solana-tx-failure-rate", notify.SeverityCritical, true, "#solana-dapps-alerts"},
		{"program upgraded pages whatever the label", rules.Input{Source: "solana", Type: "solana.program.upgraded", Labels: map[string]string{"alertname": "SolanaProgramUpgraded", "severity": "info"}}, "solana-program-change", notify.SeverityCritical, true, "#solana-dapps-alerts"},
		{"authority changed", rules.Input{Source: "solana", Type: "solana.program.authority_changed", Labels: map[string]string{"alertname": "SolanaProgramAuthorityChanged", "severity": "critical"}}, "solana-program-change", notify.SeverityCritical, true, "#solana-dapps-alerts"},
		{"balance low is Slack only", rules.Input{Source: "solana", Type: "solana.balance.low", Labels: map[string]string{"alertname": "SolanaBalanceLow", "severity": "critical", "wallet": "fee-payer"}}, "solana-balance-low", notify.SeverityWarning, false, "#solana-dapps-warnings"},
		{"balance recovered", rules.Input{Source: "solana", Type: "solana.balance.recovered", Labels: map[string]string{"alertname": "SolanaBalanceLow"}}, "solana-balance-low", notify.SeverityWarning, false, "#solana-dapps-warnings"},
		{"unknown solana kind", rules.Input{Source: "solana", Type: "solana.something.new", Labels: map[string]string{"alertname": "SolanaNew"}}, "fallback", notify.SeverityWarning, false, "#solana-dapps-warnings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.Match(tt.in)
			if r == nil || r.Name != tt.want {
				t.Fatalf("matched %v, want %s", r, tt.want)
			}
			sev := r.Severity(tt.in.Labels)
			if sev != tt.sev {
				t.Errorf("severity %s, want %s", sev, tt.sev)
			}
			rt := r.Route(sev)
			if rt.Page != tt.page || rt.Channel != tt.channel {
				t.Errorf("route %+v, want page=%v channel=%s", rt, tt.page, tt.channel)
			}
		})
	}
}

type fakeView struct {
	v   rpcview.View
	err error
}

func (f fakeView) View(context.Context) (rpcview.View, error) { return f.v, f.err }

func TestRender(t *testing.T) {
	s := loadShipped(t)
	view := fakeView{v: rpcview.View{Endpoints: []rpcview.Endpoint{
		{Name: "primary", URL: "https://primary.example", Role: rpcview.RolePrimary, Healthy: false, SlotLag: 187},
		{Name: "backup-1", URL: "https://backup.example", Role: rpcview.RoleBackup, Healthy: true, SlotLag: 2},
	}}}
	labels := map[string]string{"alertname": "RPCEndpointDown", "severity": "critical", "endpoint": "solana-rpc-primary", "instance": "rpc-1.internal:8899"}
	data := actions.PlanData{Source: "alertmanager", Type: "alertmanager.alert", Labels: labels,
		Annotations: map[string]string{"summary": "Solana RPC endpoint solana-rpc-primary is down", "runbook_url": "https://runbooks.example.com/rpc"},
		RPC:         view}
	r := s.Match(am(labels))
	out := r.Render(t.Context(), data)
	if out.Title != "Solana RPC endpoint solana-rpc-primary is unreachable" {
		t.Errorf("title %q", out.Title)
	}
	if out.Summary != "Solana RPC endpoint solana-rpc-primary is down" || out.RunbookURL != "https://runbooks.example.com/rpc" {
		t.Errorf("summary %q url %q", out.Summary, out.RunbookURL)
	}
	if len(out.Assessment) != 3 || out.Assessment[0].Text != "Check the endpoint: solana cluster-version --url rpc-1.internal:8899" {
		t.Errorf("assessment %+v", out.Assessment)
	}
	if len(out.Remediation) != 2 {
		t.Fatalf("remediation %+v", out.Remediation)
	}
	sw := out.Remediation[0]
	want := `deployment solana-dapps/api: set SOLANA_RPC_URL → https://backup.example (healthiest backup "backup-1", lag 2 slots)`
	if sw.ID != "switch-rpc" || sw.Action != "solana.switch_rpc" || sw.Plan != want || sw.Error != "" || sw.Automatic {
		t.Errorf("switch proposal %+v", sw)
	}
	if sw.Approval != "1 approval from @solana-oncall; not the requester; expires after 15m0s" {
		t.Errorf("approval %q", sw.Approval)
	}
	if p := out.Remediation[1].Plan; !strings.HasPrefix(p, "manual: Notify the RPC provider: solana-rpc-primary is failing") {
		t.Errorf("manual plan %q", p)
	}
	if len(out.Escalation) != 3 || out.Escalation[1].Name != "L2 (Senior Engineer)" || out.Escalation[1].After.Minutes() != 30 {
		t.Errorf("escalation %+v", out.Escalation)
	}
	if len(out.PostIncident) != 4 || len(out.Causes) != 1 || out.Causes[0].Steps[0] != "switch-rpc" {
		t.Errorf("post incident %v causes %+v", out.PostIncident, out.Causes)
	}

	// Without a view the switch step carries an error, not a plan, and the
	// rest of the incident still renders.
	data.RPC = nil
	out = r.Render(t.Context(), data)
	if sw := out.Remediation[0]; sw.Plan != "" || !strings.Contains(sw.Error, "no healthy backup RPC endpoint") {
		t.Errorf("switch without view %+v", sw)
	}
	if out.Remediation[1].Error != "" {
		t.Errorf("manual step failed: %+v", out.Remediation[1])
	}

	// A program bug step whose labels are missing says, in one line, what
	// to add to the alert.
	he := s.Get("high-error-rate").Render(t.Context(), actions.PlanData{Source: "alertmanager", Type: "alertmanager.alert",
		Labels: map[string]string{"alertname": "HighErrorRate"}})
	var rb notify.Proposal
	for _, p := range he.Remediation {
		if p.ID == "rollback-program" {
			rb = p
		}
	}
	if rb.Error != "solana.program_rollback: needs label program_id and annotation rollback_buffer on the alert: add them to the PrometheusRule" {
		t.Errorf("rollback-program %+v", rb)
	}
	if he.Title != "High error rate on api" {
		t.Errorf("title %q", he.Title)
	}
}

// customRunbook matches the custom.event type and has no remediation.
const customRunbook = `
name: custom
title: Custom
match:
  types: [custom.event]
assessment: [{text: Look}]
escalation: [{name: L1, after: 0s, notify: "@bob"}]
`

func TestOverrideDir(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "rpc.yaml", `
name: rpc-endpoint-down
title: Our own RPC runbook
match:
  matchers: ['alertname="RPCEndpointDown"']
assessment: [{text: Call Bob}]
remediation:
  - id: bob
    title: Call Bob
    action: manual
    params: {text: Call Bob}
escalation: [{name: L1, after: 0s, notify: "@bob"}]
---
`+customRunbook)
	s, w, err := LoadDefault(dir, actions.Default())
	if err != nil {
		t.Fatal(err)
	}
	shipped := loadShipped(t)
	if len(s.All()) != len(shipped.All())+1 {
		t.Errorf("%d runbooks, want %d", len(s.All()), len(shipped.All())+1)
	}
	r := s.Match(am(map[string]string{"alertname": "RPCEndpointDown"}))
	if r.Title() != "Our own RPC runbook" || r.File != filepath.Join(dir, "rpc.yaml") {
		t.Errorf("override not used: %s from %s", r.Title(), r.File)
	}
	if s.Match(rules.Input{Type: "custom.event"}).Name != "custom" {
		t.Error("custom runbook not added")
	}
	if len(w) != 1 || !strings.Contains(w[0].Error(), `runbook "custom" has no remediation steps`) {
		t.Errorf("warnings %v", w)
	}
	// A broken override is an error, not a silent fallback to shipped.
	write(t, dir, "broken.yaml", "name: broken\ntitle: x\nmatch: {types: [x]}\nremediaton: []\n")
	if _, _, err := LoadDefault(dir, actions.Default()); err == nil || !strings.Contains(err.Error(), `broken.yaml:4: remediaton: unknown key "remediaton" (did you mean "remediation"?)`) {
		t.Errorf("err = %v", err)
	}
}

// TestOverrideDirFromConfigMapVolume: a Kubernetes ConfigMap volume keeps
// each key in a hidden timestamped directory, reached through the ..data
// symlink, with a top-level symlink per key. Each runbook loads once, from
// its top-level name (the Helm chart's runbooks.configMap).
func TestOverrideDirFromConfigMapVolume(t *testing.T) {
	dir := t.TempDir()
	ts := filepath.Join(dir, "..2026_11_24_10_00_00.123456789")
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, ts, "custom.yaml", customRunbook)
	for old, new := range map[string]string{filepath.Base(ts): "..data", "..data/custom.yaml": "custom.yaml"} {
		if err := os.Symlink(old, filepath.Join(dir, new)); err != nil {
			t.Fatal(err)
		}
	}
	s, _, err := LoadDefault(dir, actions.Default())
	if err != nil {
		t.Fatalf("ConfigMap layout: %v", err)
	}
	r := s.Match(rules.Input{Type: "custom.event"})
	if r.Name != "custom" || r.File != filepath.Join(dir, "custom.yaml") {
		t.Errorf("matched %q from %s, want custom from %s", r.Name, r.File, filepath.Join(dir, "custom.yaml"))
	}
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadFiles(t *testing.T) {
	s, w, err := LoadFiles(actions.Default(), "shipped")
	if err != nil || len(w) != 0 {
		t.Fatalf("err %v warnings %v", err, w)
	}
	if len(s.All()) != len(loadShipped(t).All()) {
		t.Errorf("%d runbooks", len(s.All()))
	}
	if _, _, err := LoadFiles(actions.Default(), "shipped/fallback.yaml", "shipped/fallback.yaml"); err == nil || !strings.Contains(err.Error(), `duplicate runbook name "fallback"`) {
		t.Errorf("duplicate: %v", err)
	}
	if _, _, err := LoadFiles(actions.Default(), "does-not-exist.yaml"); err == nil || !strings.HasPrefix(err.Error(), "does-not-exist.yaml:1: ") {
		t.Errorf("missing file: %v", err)
	}
}

const validHead = `name: rb
title: Test
match:
  matchers: ['alertname="X"']
`

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown action", validHead + `remediation:
  - id: a
    title: A
    action: manual
    params: {text: x}
  - id: b
    title: B
    action: kubernetes.rollbak
`, []string{`f.yaml:12: remediation[1].action: unknown action "kubernetes.rollbak" (did you mean "kubernetes.rollback"?)`}},
		{"unknown key", validHead + "priorty: 3\n", []string{`f.yaml:5: priorty: unknown key "priorty" (did you mean "priority"?)`}},
		{"wrong type", validHead + "priority: high\nfallback: \"yes\"\n", []string{
			`f.yaml:5: priority: expected an integer, got a string`, `f.yaml:6: fallback: expected true or false, got a string`}},
		{"list expected", validHead + "assessment: check things\n", []string{`f.yaml:5: assessment: expected a list, got a string`}},
		{"bad matcher", "name: rb\ntitle: T\nmatch:\n  matchers:\n    - 'alertname=~\"(\"'\n    - severity=critical\n    - 'a=\"b\" c'\n", []string{
			`f.yaml:5: match.matchers[0]: invalid matcher`, `f.yaml:7: match.matchers[2]: invalid matcher`}},
		{"bad template", validHead + "assessment:\n  - text: '{{ .Labels.x '\n", []string{`f.yaml:6: assessment[0].text: invalid template`}},
		{"bad title template", "name: rb\ntitle: '{{ if }}'\nmatch: {types: [x]}\n", []string{`f.yaml:2: title: invalid template`}},
		{"bad params", validHead + `causes:
  - name: C
    remediation:
      - id: scale
        title: Scale
        action: kubernetes.scale
        params:
          namespace: solana-dapps
          deployment: api
          replicas: 50
          max_replicas: 10
          replica: 1
        approval: {approvers: ["@oncall"]}
`, []string{`f.yaml:14: causes[0].remediation[0].params.replicas: 50 exceeds max_replicas 10`,
			`f.yaml:16: causes[0].remediation[0].params.replica: unknown key "replica"`}},
		{"duplicate step ids", validHead + `causes:
  - name: C
    remediation:
      - {id: a, title: A, action: manual, params: {text: x}}
remediation:
  - {id: a, title: A2, action: manual, params: {text: y}}
`, []string{`f.yaml:10: remediation[0].id: duplicate step id "a" (also causes[0].remediation[0])`}},
		{"bad durations", validHead + `remediation:
  - id: a
    title: A
    action: kubernetes.rollout_restart
    params: {namespace: x, deployment: y}
    cooldown: 10 minutes
    approval: {approvers: ["@oncall"], expires: -5m}
escalation:
  - {name: L1, after: 1h, notify: a}
  - {name: L2, after: 30m, notify: b}
  - {name: L3, after: forever, notify: c}
`, []string{`f.yaml:10: remediation[0].cooldown: invalid duration "10 minutes"`,
			`f.yaml:11: remediation[0].approval.expires: invalid duration "-5m"`,
			`f.yaml:14: escalation[1].after: 30m0s is not after the previous level (1h0m0s)`,
			`f.yaml:15: escalation[2].after: invalid duration "forever"`}},
		{"escalation mentions and repeats", validHead + `escalation:
  - {name: L1, after: 0s, notify: a, mention: [U0ONCALL1, "@senior"]}
escalation_repeat: 11
`, []string{`f.yaml:6: escalation[0].mention[1]: "@senior" is not a Slack user id (U…/W…) or user group id (S…); find it in the member's or group's profile`,
			`f.yaml:7: escalation_repeat: 11: want 0 to 10 rounds`}},
		{"approval policy", validHead + `remediation:
  - id: a
    title: A
    action: kubernetes.rollout_restart
    params: {namespace: x, deployment: y}
  - id: b
    title: B
    action: kubernetes.rollout_restart
    params: {namespace: x, deployment: y}
    approval: {approvers: [U123ABC, bob], min_approvals: 3, allow_self_approval: "no"}
`, []string{`f.yaml:6: remediation[0].approval.approvers: required: who may approve "a"`,
			`f.yaml:14: remediation[1].approval.approvers[1]: "bob" is not a Slack user id`,
			`f.yaml:14: remediation[1].approval.allow_self_approval: expected true or false, got a string`}},
		{"too few approvers", validHead + `remediation:
  - id: a
    title: A
    action: kubernetes.rollout_restart
    params: {namespace: x, deployment: y}
    approval: {approvers: [U123ABC], min_approvals: 2}
`, []string{`f.yaml:10: remediation[0].approval.min_approvals: 2 approvals needed but only 1 approvers listed`}},
		{"verify, revert and breaker", validHead + `breaker: {failures: 0, window: -1h, windw: 1h}
remediation:
  - id: revert-a
    title: A
    action: featureflag.disable
    params: {flag: enable_escrow}
    approval: {approvers: [U123ABC]}
    revert: sometimes
  - id: b
    title: B
    action: kubernetes.rollout_restart
    params: {namespace: x, deployment: y}
    approval: {approvers: [U123ABC]}
    revert: auto
    verify: {within: 0s}
  - id: c
    title: C
    action: featureflag.disable
    params: {flag: enable_escrow}
    approval: {approvers: [U123ABC]}
    verify: {within: 48h, whithin: 5m}
`, []string{`f.yaml:5: breaker.window: invalid duration "-1h"`,
			`f.yaml:5: breaker.windw: unknown key "windw"`,
			`f.yaml:7: remediation[0].id: "revert-a": step ids starting with "revert-" are reserved`,
			`f.yaml:12: remediation[0].revert: "sometimes": want auto, manual or never`,
			`f.yaml:18: remediation[1].revert: auto: action "kubernetes.rollout_restart" cannot revert its change (use revert: never)`,
			`f.yaml:19: remediation[1].verify.within: must be a positive duration`,
			`f.yaml:25: remediation[2].verify.within: 48h0m0s is too long: at most 24h0m0s`,
			`f.yaml:25: remediation[2].verify.whithin: unknown key "whithin"`}},
		{"breaker failures", validHead + "breaker: {failures: 0}\n", []string{`f.yaml:5: breaker.failures: must be at least 1`}},
		{"incident_resolves without a window", validHead + `remediation:
  - id: a
    title: A
    action: featureflag.disable
    params: {flag: enable_escrow}
    approval: {approvers: [U123ABC]}
    verify: {incident_resolves: false}
`, []string{`f.yaml:11: remediation[0].verify.incident_resolves: needs verify.within: the window the incident must resolve in`}},
		{"severity and routing", validHead + "severity: {default: urgent, map: {p1: sev1}}\nrouting:\n  critical: {channel: general}\n", []string{
			`f.yaml:5: severity.default: unknown severity "urgent"`, `f.yaml:5: severity.map.p1: unknown severity "sev1"`,
			`f.yaml:7: routing.critical.channel: "general" is not a Slack channel`}},
		{"missing match and required", "title: T\n", []string{`f.yaml:1: name: required`, `f.yaml:1: match: needs types or matchers`}},
		{"missing step fields", validHead + "remediation:\n  - title: A\n", []string{`f.yaml:6: remediation[0].id: required`, `f.yaml:6: remediation[0].action: required`}},
		{"bad name", "name: Bad Name\ntitle: T\nfallback: true\n", []string{`f.yaml:1: name: "Bad Name" is not a valid runbook name`}},
		{"yaml syntax", "name: rb\ntitle: [unclosed\n", []string{`f.yaml:1: invalid YAML: did not find expected ',' or ']'`}},
		{"tabs", "name: rb\n\ttitle: x\n", []string{`f.yaml:2: invalid YAML`}},
		{"alias", "name: &n rb\ntitle: *n\nfallback: true\n", []string{`f.yaml:2: title: YAML aliases are not supported`}},
		{"not a mapping", "- a\n- b\n", []string{`f.yaml:1: expected a mapping, got a list`}},
		{"second document", validHead + "remediation: [{id: a, title: A, action: manual, params: {text: x}}]\n---\nname: rb2\ntitle: T\nmatch: {types: []}\n", []string{
			`f.yaml:9: match: needs types or matchers`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse(actions.Default(), "f.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant it to contain:\n%s", err, w)
				}
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "f.yaml:") {
					t.Errorf("unpositioned error line %q", line)
				}
				for _, goType := range []string{"int", "string", "bool", "Duration", "Template", "struct", "yaml.Node"} {
					if strings.Contains(line, " "+goType+" ") || strings.Contains(line, "."+goType) {
						t.Errorf("error names a Go type: %q", line)
					}
				}
			}
		})
	}
}

// TestEveryProblemAtOnce checks that errors from several files come back
// together, joined, and warnings apart from them.
func TestEveryProblemAtOnce(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.yaml", "name: a\ntitle: A\nmatch: {types: [x]}\npriority: x\n")
	write(t, dir, "b.yaml", "name: b\ntitle: B\nmatch: {types: [y]}\nremediation: [{id: s, title: S, action: nope}]\n")
	write(t, dir, "c.yaml", "name: c\ntitle: C\nmatch: {types: [z]}\n")
	_, w, err := LoadFiles(actions.Default(), dir)
	var j interface{ Unwrap() []error }
	if !errors.As(err, &j) || len(j.Unwrap()) != 3 {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"a.yaml:4: priority:", `b.yaml:4: remediation[0].action: unknown action "nope"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	var p *Problem
	if !errors.As(err, &p) || p.Line == 0 {
		t.Errorf("errors are not *Problem: %v", err)
	}
	if !strings.Contains(w.String(), `c.yaml:1: runbook "c" has no remediation steps`) || !strings.Contains(w.String(), "no fallback runbook") {
		t.Errorf("warnings:\n%s", w)
	}
}

func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("shipped/*.yaml")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(validHead + "remediation: [{id: a, title: A, action: kubernetes.scale, params: {replicas: 3}}]\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("name: x\n---\n- 1\n"))
	reg := actions.Default()
	f.Fuzz(func(t *testing.T, data []byte) {
		rbs, _, err := Parse(reg, "fuzz.yaml", data)
		if err != nil {
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("error without a position: %v", err)
			}
			var j interface{ Unwrap() []error }
			if errors.As(err, &j) {
				for _, e := range j.Unwrap() {
					if p, ok := e.(*Problem); !ok || p.Line < 1 || p.File != "fuzz.yaml" {
						t.Fatalf("error without a position: %v", e)
					}
				}
			}
			return
		}
		for _, r := range rbs {
			_ = r.Render(context.Background(), actions.PlanData{})
		}
	})
}

// TestCheckFriction covers what `incidentbot check` reports about a
// runbook directory: shadowed runbooks, empty files, and no "no
// remediation steps" warning beside a step that failed validation.
func TestCheckFriction(t *testing.T) {
	reg := actions.Default()
	t.Run("shadowed by a shipped runbook", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "mine.yaml", `name: my-error-rate
title: Errors
match: {matchers: ['alertname="HighErrorRate"', 'service="api"']}
assessment: [{text: Look}]
remediation: [{id: a, title: A, action: manual, params: {text: call}}]
escalation: [{name: L1, after: 0s, notify: "@me"}]
`)
		_, w, err := LoadOver(reg, dir)
		if err != nil {
			t.Fatal(err)
		}
		want := `mine.yaml:1: runbook "my-error-rate" can never match: runbook "high-error-rate" (runbooks/shipped/high-error-rate.yaml:2) matches every signal it matches and wins (priority 10 over 0); change its match or priority`
		if len(w) != 1 || !strings.HasSuffix(w[0].Error(), want) {
			t.Errorf("warnings:\n%swant one ending %q", w, want)
		}
		// With a higher priority it wins, and nothing is said.
		write(t, dir, "mine.yaml", "priority: 11\n"+readFile(t, filepath.Join(dir, "mine.yaml")))
		if _, w, err := LoadOver(reg, dir); err != nil || len(w) != 0 {
			t.Errorf("priority 11: warnings %v, err %v", w, err)
		}
	})
	t.Run("same match, same priority: the first loaded wins", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "a.yaml", customRunbook)
		write(t, dir, "b.yaml", strings.Replace(customRunbook, "name: custom", "name: custom-two", 1))
		_, w, err := LoadFiles(reg, dir)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(w.String(), `runbook "custom-two" can never match: runbook "custom"`) || !strings.Contains(w.String(), "same match and priority 0, loaded first") {
			t.Errorf("warnings:\n%s", w)
		}
	})
	t.Run("empty file", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "empty.yaml", "# nothing yet\n")
		_, _, err := LoadFiles(reg, filepath.Join(dir, "empty.yaml"))
		if err == nil || !strings.HasSuffix(err.Error(), "empty.yaml:1: empty runbook file: no runbook in it") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("a failed step is not a missing step", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "x.yaml", validHead+"remediation: [{id: a, title: A, action: kubernetes.rollbak}]\n")
		_, w, err := LoadFiles(reg, dir)
		if err == nil || !strings.Contains(err.Error(), `unknown action "kubernetes.rollbak"`) {
			t.Fatalf("err = %v", err)
		}
		if strings.Contains(w.String(), "no remediation steps") {
			t.Errorf("false warning beside the error:\n%s", w)
		}
	})
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestEscalationRepeatsFromTheTop(t *testing.T) {
	set, _, err := LoadFiles(actions.Default(), write(t, t.TempDir(), "r.yaml", `name: r
title: R
match: {matchers: ['alertname="X"']}
routing: {critical: {channel: "#c", page: true}}
escalation:
  - {name: L1, after: 0s, notify: a}
  - {name: L2, after: 30m, notify: b, mention: [S0SENIORS]}
escalation_repeat: 1
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range set.Get("r").Escalation {
		got = append(got, fmt.Sprintf("%s@%s%v", l.Name, l.After, l.Mention))
	}
	want := "[L1@0s[] L2@30m0s[S0SENIORS] L1 (round 2)@1h0m0s[] L2 (round 2)@1h30m0s[S0SENIORS]]"
	if fmt.Sprint(got) != want {
		t.Fatalf("ladder %v, want %s", got, want)
	}
}

func TestALevelThatPagesNamesItsKey(t *testing.T) {
	set, _, err := LoadFiles(actions.Default(), write(t, t.TempDir(), "r.yaml", `name: r
title: R
match: {matchers: ['alertname="X"']}
routing: {critical: {channel: "#c", page: true}}
escalation:
  - {name: L1, after: 0s, notify: a}
  - {name: L2, after: 30m, notify: b, page: true, pagerduty_key_ref: senior}
`))
	if err != nil {
		t.Fatal(err)
	}
	if l := set.Get("r").Escalation[1]; !l.Page || l.PagerDutyKeyRef != "senior" {
		t.Fatalf("level %+v", l)
	}
	if err := set.CheckKeyRefs([]string{"payments"}); err == nil || !strings.Contains(err.Error(), `r.yaml:7: escalation[1].pagerduty_key_ref: no PagerDuty routing key "senior"`) {
		t.Fatalf("an unknown level key: %v", err)
	}
	_, _, err = LoadFiles(actions.Default(), write(t, t.TempDir(), "k.yaml", `name: k
title: K
match: {matchers: ['alertname="X"']}
escalation:
  - {name: L1, after: 0s, notify: a, page: true, pagerduty_key_ref: 0123456789abcdef0123456789abcdef}
`))
	if err == nil || strings.Contains(err.Error(), "0123456789abcdef") || !strings.Contains(err.Error(), "looks like a routing key itself") {
		t.Fatalf("a key in place of its name: %v", err)
	}
}

// TestVerifyRevertBreakerKeys: verify.within, revert (default manual for
// an action that can revert, never for one that cannot) and the breaker
// with its defaults.
func TestVerifyRevertBreakerKeys(t *testing.T) {
	rbs, _, err := Parse(actions.Default(), "f.yaml", []byte(validHead+`breaker: {failures: 5}
remediation:
  - id: a
    title: A
    action: featureflag.disable
    params: {flag: enable_escrow}
    approval: {approvers: [U123ABC]}
    verify: {within: 5m}
    revert: auto
  - id: b
    title: B
    action: featureflag.disable
    params: {flag: enable_escrow}
    approval: {approvers: [U123ABC]}
  - id: c
    title: C
    action: kubernetes.rollout_restart
    params: {namespace: x, deployment: y}
    approval: {approvers: [U123ABC]}
`))
	if err != nil {
		t.Fatal(err)
	}
	rb := rbs[0]
	if rb.Breaker != (Breaker{Failures: 5, Window: DefaultBreakerWindow}) {
		t.Errorf("breaker %+v", rb.Breaker)
	}
	for id, want := range map[string]Remediation{"a": {VerifyWithin: 5 * time.Minute, Revert: RevertAuto}, "b": {Revert: RevertManual}, "c": {Revert: RevertNever}} {
		st := rb.Step(id)
		if st.VerifyWithin != want.VerifyWithin || st.Revert != want.Revert {
			t.Errorf("%s: verify.within %s revert %s, want %s %s", id, st.VerifyWithin, st.Revert, want.VerifyWithin, want.Revert)
		}
	}
}
