package runbooktest

import (
	"context"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/runbooks"
)

// TestShippedTests: the tests shipped in runbooks/tests pass, and together
// they open an incident of every shipped runbook.
func TestShippedTests(t *testing.T) {
	files, err := filepath.Glob("../tests/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no shipped runbook tests under ../tests (err %v)", err)
	}
	covered := map[string]bool{}
	for _, path := range files {
		f, err := Load(path)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		res, err := Run(context.Background(), f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		for _, fl := range res.Failures {
			t.Errorf("%s", fl.Report(path))
		}
		for _, r := range res.Runbooks {
			covered[r] = true
		}
	}
	set, _, err := runbooks.LoadDefault("", actions.Default())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range set.All() {
		if !covered[r.Name] {
			t.Errorf("shipped runbook %s: no shipped test opens an incident of it", r.Name)
		}
	}
}

func parse(t *testing.T, src string, files map[string]string) (*File, error) {
	t.Helper()
	return Parse("f.yaml", []byte(src), func(name string) ([]byte, error) {
		if b, ok := files[name]; ok {
			return []byte(b), nil
		}
		return nil, fs.ErrNotExist
	})
}

const rpcAlert = `{alertname: RPCEndpointDown, severity: critical, endpoint: primary}`

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string
	}{
		{"unknown keys", "tests:\n  - name: x\n    inputs: [{at: 0s, alerts: [{labels: " + rpcAlert + "}]}]\n    expect: [{at: 1m, incidents: [{runbok: x}]}]\n",
			[]string{`f.yaml:4: tests[0].expect[0].incidents[0].runbok: unknown key "runbok" (did you mean "runbook"?)`}},
		{"no input kind, two kinds", "tests:\n  - name: x\n    inputs:\n      - at: 0s\n      - at: 1m\n        ack: {}\n        note: {text: n}\n    expect: [{at: 1m, unmatched: []}]\n",
			[]string{`f.yaml:4: tests[0].inputs[0]: no input: give one of alerts`, `f.yaml:5: tests[0].inputs[1]: ack and note in one input`}},
		{"out of order, bad values", `tests:
  - name: x
    inputs:
      - {at: 5m, alerts: [{labels: {severity: critical}, status: fired}]}
      - {at: 1m, event: {type: solana.rpc.unhelthy, signal: {group_key: g, fingerprint: f, status: firing}}}
      - {at: 2m, note: {}}
    expect:
      - {at: 1m, incidents: [{runbook: x, severity: sev1, status: open, pager: [page]}]}
      - {at: 30s}
`, []string{
			`f.yaml:4: tests[0].inputs[0].alerts[0].status: "fired": want firing or resolved`,
			`f.yaml:5: tests[0].inputs[1].at: 1m0s is before the previous input (5m0s)`,
			`f.yaml:5: tests[0].inputs[1].event.type: unknown event type "solana.rpc.unhelthy" (did you mean "solana.rpc.unhealthy"?)`,
			`f.yaml:6: tests[0].inputs[2].note.text: a note needs text`,
			`f.yaml:8: tests[0].expect[0].incidents[0].severity: "sev1": want critical, warning, info`,
			`f.yaml:8: tests[0].expect[0].incidents[0].status: "open": want firing, acknowledged, resolved`,
			`f.yaml:8: tests[0].expect[0].incidents[0].pager[0]: "page": want trigger, acknowledge, resolve`,
			`f.yaml:9: tests[0].expect[1].at: 30s is before the previous expectation (1m0s)`,
			`f.yaml:9: tests[0].expect[1]: asserts nothing`,
		}},
		{"payloads", `tests:
  - name: x
    inputs:
      - at: 0s
        alertmanager: {file: missing.json}
      - at: 0s
        alertmanager: {version: "3", alerts: []}
      - at: 0s
        event: {type: solana.rpc.unhealthy, file: bad.json}
      - at: 0s
        alertmanager: {a: &x [1, 2], b: *x}
    expect: [{at: 1m, unmatched: []}]
`, []string{
			`f.yaml:11: tests[0].inputs[3].alertmanager: YAML aliases are not supported`,
			`f.yaml:5: tests[0].inputs[0].alertmanager.file: file does not exist`,
			`f.yaml:7: tests[0].inputs[1].alertmanager: invalid alertmanager payload: version "3": want "4"`,
			`f.yaml:9: tests[0].inputs[2].event: invalid signal: group_key is empty`,
		}},
		{"next escalation", "tests:\n  - name: x\n    inputs: [{at: 0s, alerts: [{labels: " + rpcAlert + "}]}]\n    expect: [{at: 1m, incidents: [{runbook: x, next_escalation: soon}]}]\n",
			[]string{`f.yaml:4: tests[0].expect[0].incidents[0].next_escalation: expected {level: NAME, at: DURATION} or none`}},
		{"file settings", "start: yesterday\nshipped_runbooks: false\nrpc_view: {endpoints: [{name: a, url: u, role: spare}]}\ntests: []\n", []string{
			`f.yaml:1: start: "yesterday" is not an RFC 3339 time`, `f.yaml:2: shipped_runbooks: false, but no runbook_files`,
			`f.yaml:3: rpc_view.endpoints[0].role: "spare": want primary or backup`, `f.yaml:4: tests: no tests`}},
		{"yaml", "tests: [\n", []string{`f.yaml:1: invalid YAML: did not find expected node content`}},
		{"two documents", "tests: []\n---\ntests: []\n", []string{`f.yaml:2: one test file holds one YAML document`}},
		{"empty", "", []string{`f.yaml:1: empty test file`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, tt.src, map[string]string{"bad.json": `{"status": "firing"}`})
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
			}
		})
	}
}

// TestFailuresSayWhereAndWhat: a test that expects the wrong runbook, page,
// plan and escalation fails with the lines of those keys and what the bot
// decided instead.
func TestFailuresSayWhereAndWhat(t *testing.T) {
	f, err := parse(t, `tests:
  - name: wrong on purpose
    inputs:
      - at: 0s
        alerts: [{labels: `+rpcAlert+`}]
    expect:
      - at: 31m
        incidents:
          - runbook: solana-rpc-unhealthy
            page: false
            steps:
              - {id: switch-rpc, plan: set SOLANA_RPC_URL}
              - {id: notify-rpc-provider}
            escalations: [{level: L2 (Senior Engineer), at: 31m}]
  - name: two incidents expected
    inputs:
      - {at: 0s, alerts: [{labels: `+rpcAlert+`}]}
    expect:
      - {at: 1m, incidents: [{runbook: rpc-endpoint-down}, {runbook: rpc-endpoint-down}]}
  - name: right
    inputs:
      - {at: 0s, alerts: [{labels: `+rpcAlert+`}]}
      - {at: 1m, ack: {by: Ada}}
    expect:
      - {at: 2m, incidents: [{runbook: rpc-endpoint-down, status: acknowledged, pager: [trigger, acknowledge]}]}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	if res.Passed != 1 || len(res.Failures) != 2 {
		t.Fatalf("passed %d, failures %+v", res.Passed, res.Failures)
	}
	got := res.Failures[0].Report("f.yaml") + res.Failures[1].Report("f.yaml")
	for _, want := range []string{
		"FAIL f.yaml:2: wrong on purpose\n",
		"  f.yaml:9: at 31m: incident 1 (INC-0001) runbook\n      - solana-rpc-unhealthy\n      + rpc-endpoint-down\n",
		"  f.yaml:10: at 31m: incident 1 (INC-0001) page\n      - false\n      + true\n",
		"  f.yaml:11: at 31m: incident 1 (INC-0001) steps\n      - switch-rpc: set SOLANA_RPC_URL\n      + switch-rpc: error solana.switch_rpc: no healthy backup RPC endpoint to switch to",
		"        notify-rpc-provider\n",
		"  f.yaml:14: at 31m: incident 1 (INC-0001) escalations\n      - L2 (Senior Engineer) at 31m\n      + L1 (On-Call) at 0s\n      + L2 (Senior Engineer) at 30m\n",
		"FAIL f.yaml:15: two incidents expected\n  f.yaml:19: at 1m: incidents: 2 expected, 1 opened\n      - 1. runbook rpc-endpoint-down (line 19)\n      - 2. runbook rpc-endpoint-down (line 19)\n      + 1. INC-0001 runbook rpc-endpoint-down, critical, firing, #solana-dapps-alerts, pages [RPCEndpointDown]\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks\n%s\nreport:\n%s", want, got)
		}
	}
}

// TestCommandsAddressIncidents: a command names its incident when there
// are several, and one for an incident that does not exist is refused.
func TestCommandsAddressIncidents(t *testing.T) {
	f, err := parse(t, `tests:
  - name: ambiguous
    inputs:
      - {at: 0s, alerts: [{labels: `+rpcAlert+`}]}
      - {at: 0s, alerts: [{labels: {alertname: HighLatency, severity: warning}}]}
      - {at: 1m, ack: {}}
    expect: [{at: 2m, unmatched: []}]
  - name: unknown
    inputs:
      - {at: 0s, alerts: [{labels: `+rpcAlert+`}]}
      - {at: 1m, resolve: {incident: INC-0042}}
    expect: [{at: 2m, unmatched: []}]
  - name: named
    inputs:
      - {at: 0s, alerts: [{labels: `+rpcAlert+`}]}
      - {at: 0s, alerts: [{labels: {alertname: HighLatency, severity: warning}}]}
      - {at: 1m, resolve: {incident: inc-0002, text: fixed}}
    expect: [{at: 2m, incidents: [{runbook: rpc-endpoint-down, status: firing}, {runbook: high-latency, status: resolved, thread: ["Resolved by tester (slack)"]}]}]
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	if res.Passed != 1 || len(res.Failures) != 2 {
		t.Fatalf("passed %d, failures %+v", res.Passed, res.Failures)
	}
	if p := res.Failures[0].Problems; len(p) != 1 || p[0].Line != 6 || !strings.Contains(p[0].What, "2 incidents exist; say which with incident: (INC-0001, INC-0002)") {
		t.Errorf("ambiguous: %+v", p)
	}
	if p := res.Failures[1].Problems; len(p) != 1 || p[0].Line != 11 || !strings.Contains(p[0].What, "resolve INC-0042 refused") || !strings.Contains(strings.Join(p[0].Diff, ""), "no such incident") {
		t.Errorf("unknown: %+v", p)
	}
	if !slices.Equal(res.Runbooks, []string{"high-latency", "rpc-endpoint-down"}) {
		t.Errorf("runbooks %v", res.Runbooks)
	}
}

func TestDiff(t *testing.T) {
	got := diff([]string{"a", "b", "c"}, []string{"a", "x", "c", "d"})
	want := []string{"  a", "- b", "+ x", "  c", "+ d"}
	if !slices.Equal(got, want) {
		t.Errorf("diff = %q, want %q", got, want)
	}
}

// FuzzLoadTest: whatever the bytes, the loader neither panics nor returns
// an unpositioned error.
func FuzzLoadTest(f *testing.F) {
	seeds, _ := filepath.Glob("../tests/*.yaml")
	for _, s := range seeds {
		b, err := readLimited(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("tests:\n  - name: x\n    inputs: [{at: 0s, ack: }]\n    expect: [{at: 1m, incidents: [{runbook: x, next_escalation: none}]}]\n"))
	f.Add([]byte("tests: [{name: a, inputs: [{at: 1s, alertmanager: {a: &x [1], b: *x}}], expect: []}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Parse("f.yaml", data, func(name string) ([]byte, error) { return []byte(`{"group_key":"g"}`), nil })
		if err == nil {
			return
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if !strings.HasPrefix(line, "f.yaml:") {
				t.Fatalf("unpositioned error line %q in\n%v", line, err)
			}
		}
	})
}
