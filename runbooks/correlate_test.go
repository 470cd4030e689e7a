package runbooks

import (
	"strings"
	"testing"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/rules"
	"github.com/incidentbot/incidentbot/watchers/solana/watchtest"
)

// TestShippedCorrelations: the course's alert and the watchers' event for
// the same endpoint, or the same program, get one correlation key; another
// endpoint or program another; a signal without the label none.
func TestShippedCorrelations(t *testing.T) {
	s := loadShipped(t)
	alerts := courseAlerts(t)
	caps := watchtest.Capture(t)
	key := func(in rules.Input) (string, string, bool) {
		t.Helper()
		r := s.Match(in)
		if r == nil {
			t.Fatalf("no runbook for %v", in)
		}
		k, ok := r.CorrelationKey(in.Labels)
		return r.Name, k, ok
	}
	watcher := func(scenario string) rules.Input {
		for _, c := range caps {
			if c.Scenario == scenario {
				return rules.Input{Source: c.Signal.Source, Type: c.Signal.Type, Labels: c.Signal.Labels}
			}
		}
		t.Fatalf("no watcher event for %q", scenario)
		return rules.Input{}
	}
	course := func(name string, labels ...string) rules.Input {
		sig := alerts[name]
		l := map[string]string{}
		for k, v := range sig.Labels {
			l[k] = v
		}
		for i := 0; i+1 < len(labels); i += 2 {
			l[labels[i]] = labels[i+1]
		}
		return rules.Input{Source: sig.Source, Type: sig.Type, Labels: l}
	}
	for _, pair := range []struct {
		alert, watcher   string
		alertRB, watchRB string
	}{
		{"RPCEndpointDown", "primary endpoint behind", "rpc-endpoint-down", "solana-rpc-unhealthy"},
		{"HighTransactionFailureRate", "escrow transactions failing", "high-transaction-failure-rate", "solana-tx-failure-rate"},
	} {
		an, ak, aok := key(course(pair.alert))
		wn, wk, wok := key(watcher(pair.watcher))
		if an != pair.alertRB || wn != pair.watchRB {
			t.Errorf("%s matched %s, %s matched %s", pair.alert, an, pair.watcher, wn)
		}
		if !aok || !wok || ak != wk {
			t.Errorf("%s and %q: keys %q (%v) and %q (%v), want one key", pair.alert, pair.watcher, ak, aok, wk, wok)
		}
	}
	_, backupAlert, _ := key(course("RPCEndpointDown", "endpoint", watchtest.Backup))
	_, backupEvent, ok := key(watcher("backup endpoint unhealthy"))
	_, primary, _ := key(course("RPCEndpointDown"))
	if !ok || backupAlert != backupEvent || backupAlert == primary {
		t.Errorf("backup: alert key %q, event key %q, primary key %q: want the backup's two equal and apart from the primary", backupAlert, backupEvent, primary)
	}
	_, payments, _ := key(watcher("payments transactions failing"))
	_, escrow, _ := key(watcher("escrow transactions failing"))
	if payments == escrow {
		t.Errorf("two programs share the key %q", payments)
	}
	// The course's rule summed over every program carries no program
	// label: that alert is not correlated, and stays an incident of its own.
	in := course("HighTransactionFailureRate")
	delete(in.Labels, "program")
	if _, k, ok := key(in); ok {
		t.Errorf("an alert without the program label correlates: %q", k)
	}
	// Runbooks that correlate with nothing have no key.
	if _, k, ok := key(course("HighLatency")); ok {
		t.Errorf("high-latency correlates: %q", k)
	}
}

func TestCorrelateLoadErrors(t *testing.T) {
	rb := func(name, extra string) string {
		return "name: " + name + "\ntitle: T\nmatch: {types: [" + name + "]}\nremediation: [{id: a, title: A, action: manual, params: {text: x}}]\n" + extra
	}
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"unknown runbook", map[string]string{"a.yaml": rb("rpc-down", "correlate:\n  with: [rpc-unhealty]\n  on: [endpoint]\n"), "b.yaml": rb("rpc-unhealthy", "")},
			[]string{`a.yaml:6: correlate.with[0]: unknown runbook "rpc-unhealty" (did you mean "rpc-unhealthy"?)`}},
		{"self, twice, bad labels", map[string]string{"a.yaml": rb("a", "correlate:\n  with: [a, b, b]\n  on: [end-point, alertname, x, x]\n"), "b.yaml": rb("b", "")},
			[]string{`a.yaml:6: correlate.with[0]: a runbook cannot correlate with itself`, `a.yaml:6: correlate.with[2]: runbook "b" listed twice`,
				`a.yaml:7: correlate.on[0]: "end-point" is not a label name`, `a.yaml:7: correlate.on[1]: alertname differs between the sources`,
				`a.yaml:7: correlate.on[3]: label "x" listed twice`}},
		{"empty", map[string]string{"a.yaml": rb("a", "correlate:\n  with: []\n  on: []\n")},
			[]string{`a.yaml:6: correlate.with: name at least one runbook`, `a.yaml:7: correlate.on: name at least one label`}},
		{"missing keys", map[string]string{"a.yaml": rb("a", "correlate: {with: [b]}\n"), "b.yaml": rb("b", "")},
			[]string{`a.yaml:5: correlate.on: required`}},
		{"groups disagree", map[string]string{"a.yaml": rb("a", "correlate: {with: [b], on: [endpoint]}\n"), "b.yaml": rb("b", ""),
			"c.yaml": rb("c", "correlate:\n  with: [b]\n  on: [program]\n")},
			[]string{`c.yaml:7: correlate.on: [program] differs from [endpoint] of runbook "a" (`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, c := range tt.files {
				write(t, dir, n, c)
			}
			_, _, err := LoadFiles(actions.Default(), dir)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant it to contain:\n%s", err, w)
				}
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, dir) {
					t.Errorf("unpositioned error line %q", line)
				}
			}
		})
	}
}

// TestCorrelateGroups: links are symmetric and transitive, declared on
// either side, and an override keeps the shipped group.
func TestCorrelateGroups(t *testing.T) {
	dir := t.TempDir()
	rb := func(name, extra string) string {
		return "name: " + name + "\ntitle: T\nmatch: {types: [" + name + "]}\nremediation: [{id: a, title: A, action: manual, params: {text: x}}]\n" + extra
	}
	write(t, dir, "a.yaml", rb("a", "correlate: {with: [b], on: [endpoint, cluster]}\n"))
	write(t, dir, "b.yaml", rb("b", ""))
	write(t, dir, "c.yaml", rb("c", "correlate: {with: [b], on: [cluster, endpoint]}\n"))
	write(t, dir, "d.yaml", rb("d", ""))
	s, _, err := LoadFiles(actions.Default(), dir)
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"endpoint": "primary", "cluster": "mainnet"}
	var keys []string
	for _, n := range []string{"a", "b", "c"} {
		k, ok := s.Get(n).CorrelationKey(labels)
		if !ok {
			t.Fatalf("%s: no key", n)
		}
		keys = append(keys, k)
	}
	if want := `correlate:{a,b,c}:{cluster="mainnet",endpoint="primary"}`; keys[0] != want || keys[1] != want || keys[2] != want {
		t.Errorf("keys %q, want each %q", keys, want)
	}
	if _, ok := s.Get("a").CorrelationKey(map[string]string{"endpoint": "primary", "cluster": ""}); ok {
		t.Error("an empty label value correlates")
	}
	if s.Get("d").Correlation != nil {
		t.Errorf("d correlates: %+v", s.Get("d").Correlation)
	}

	// A team's own solana-rpc-unhealthy, replacing the shipped one by
	// name, still joins the RPCEndpointDown incidents: the shipped
	// rpc-endpoint-down names it.
	over := t.TempDir()
	write(t, over, "rpc.yaml", strings.Replace(readFile(t, "shipped/solana-rpc-unhealthy.yaml"), `title: "`, `title: "Ours — `, 1))
	s, _, err = LoadOver(actions.Default(), over)
	if err != nil {
		t.Fatal(err)
	}
	ours := s.Get("solana-rpc-unhealthy")
	if !strings.HasPrefix(ours.Title(), "Ours") || ours.Correlation == nil || ours.Correlation != s.Get("rpc-endpoint-down").Correlation {
		t.Errorf("overridden runbook: title %q, correlation %+v", ours.Title(), ours.Correlation)
	}
}
