package rules

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/alertmanager/pkg/labels"
)

func mustMatchers(t testing.TB, ss ...string) labels.Matchers {
	t.Helper()
	var out labels.Matchers
	for _, s := range ss {
		ms, err := ParseMatchers(s)
		if err != nil {
			t.Fatalf("ParseMatchers(%q): %v", s, err)
		}
		out = append(out, ms...)
	}
	return out
}

func TestParseMatchers(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: `alertname="RPCEndpointDown"`, want: `{alertname="RPCEndpointDown"}`},
		{in: `severity=~"critical|page"`, want: `{severity=~"critical|page"}`},
		{in: `env!="dev"`, want: `{env!="dev"}`},
		{in: `service!~"canary.*"`, want: `{service!~"canary.*"}`},
		{in: `{service="api", env=~"prod.*"}`, want: `{env=~"prod.*",service="api"}`},
		{in: ``, wantErr: "empty matcher"},
		{in: `{}`, wantErr: "empty matcher"},
		{in: `alertname=""`, want: `{alertname=""}`},
		{in: `alertname=`, wantErr: "invalid matcher"},
		{in: `alertname=~"("`, wantErr: "invalid matcher"},
		{in: `alertname=="x"`, wantErr: "invalid matcher"},
		{in: `{a="b"`, wantErr: "invalid matcher"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ms, err := ParseMatchers(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Sort for a stable rendering.
			got := labels.Matchers(ms)
			if s := sortedString(got); s != tt.want {
				t.Errorf("got %s, want %s", s, tt.want)
			}
		})
	}
}

func sortedString(ms labels.Matchers) string {
	c := append(labels.Matchers(nil), ms...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j].Name < c[i].Name {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	parts := make([]string, len(c))
	for i, m := range c {
		parts[i] = m.String()
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func TestIndexMatch(t *testing.T) {
	entries := []Entry[string]{
		{Value: "rpc-down", Selector: Selector{Matchers: mustMatchers(t, `alertname="RPCEndpointDown"`)}},
		{Value: "rpc-down-prod", Selector: Selector{Matchers: mustMatchers(t, `alertname="RPCEndpointDown"`, `env="production"`)}},
		{Value: "errors", Selector: Selector{Matchers: mustMatchers(t, `alertname="HighErrorRate"`, `severity=~"critical|page"`)}},
		{Value: "errors-not-dev", Priority: 5, Selector: Selector{Matchers: mustMatchers(t, `alertname="HighErrorRate"`, `env!="dev"`, `service!~"canary.*"`)}},
		{Value: "any-critical-db", Selector: Selector{Matchers: mustMatchers(t, `database=~".+"`, `severity="critical"`)}},
		{Value: "regex-only", Selector: Selector{Matchers: mustMatchers(t, `alertname=~"Pod.*"`)}},
		{Value: "solana-rpc", Selector: Selector{Sources: []string{"solana"}, Types: []string{"solana.rpc.unhealthy", "solana.rpc.recovered"}}},
		{Value: "solana-rpc-am", Selector: Selector{Sources: []string{"alertmanager"}, Matchers: mustMatchers(t, `alertname="SolanaRPCUnhealthy"`)}},
		{Value: "low-prio-typed", Priority: -1, Selector: Selector{Types: []string{"solana.balance.low"}}},
		{Value: "balance", Selector: Selector{Types: []string{"solana.balance.low"}, Matchers: mustMatchers(t, `wallet=~".+"`)}},
		{Value: "first-tie", Selector: Selector{Matchers: mustMatchers(t, `alertname="Tie"`)}},
		{Value: "second-tie", Selector: Selector{Matchers: mustMatchers(t, `alertname="Tie"`)}},
		{Value: "fallback", Fallback: true},
		{Value: "fallback-hi", Fallback: true, Priority: 1, Selector: Selector{Sources: []string{"solana"}}},
	}
	ix := NewIndex(entries)
	am := func(kv ...string) Input {
		l := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		return Input{Source: "alertmanager", Type: "alertmanager.alert", Labels: l}
	}
	tests := []struct {
		name string
		in   Input
		want string
	}{
		{"equality", am("alertname", "RPCEndpointDown", "env", "staging"), "rpc-down"},
		{"more specific wins", am("alertname", "RPCEndpointDown", "env", "production"), "rpc-down-prod"},
		{"regex severity", am("alertname", "HighErrorRate", "severity", "page", "env", "dev"), "errors"},
		{"regex no match falls to fallback", am("alertname", "HighErrorRate", "severity", "warning", "env", "dev"), "fallback"},
		{"priority beats specificity", am("alertname", "HighErrorRate", "severity", "critical", "env", "prod", "service", "api"), "errors-not-dev"},
		{"negative regex excludes", am("alertname", "HighErrorRate", "severity", "critical", "env", "prod", "service", "canary-1"), "errors"},
		{"negative equality, missing label", am("alertname", "HighErrorRate", "severity", "info"), "errors-not-dev"},
		{"no alertname, indexed by other label", am("database", "pg", "severity", "critical"), "any-critical-db"},
		{"scan list regex", am("alertname", "PodCrashLooping"), "regex-only"},
		{"type selection", Input{Source: "solana", Type: "solana.rpc.unhealthy", Labels: map[string]string{"alertname": "SolanaRPCUnhealthy"}}, "solana-rpc"},
		{"type recovered", Input{Source: "solana", Type: "solana.rpc.recovered"}, "solana-rpc"},
		{"source selection", am("alertname", "SolanaRPCUnhealthy"), "solana-rpc-am"},
		{"typed with matcher beats lower priority", Input{Source: "solana", Type: "solana.balance.low", Labels: map[string]string{"wallet": "fee-payer"}}, "balance"},
		{"typed without label", Input{Source: "solana", Type: "solana.balance.low"}, "low-prio-typed"},
		{"load order breaks ties", am("alertname", "Tie"), "first-tie"},
		{"fallback priority", Input{Source: "solana", Type: "solana.unknown"}, "fallback-hi"},
		{"fallback", am("alertname", "Nope"), "fallback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok := ix.Match(tt.in)
			if !ok {
				t.Fatalf("no match, want %q", tt.want)
			}
			if e.Value != tt.want {
				t.Errorf("got %q, want %q", e.Value, tt.want)
			}
		})
	}
	if _, ok := NewIndex(entries[:2]).Match(am("alertname", "Other")); ok {
		t.Error("matched without a fallback")
	}
	if ix.Len() != len(entries) {
		t.Errorf("Len = %d", ix.Len())
	}
}

// TestIndexAgreesWithScan checks the index against a plain scan.
func TestIndexAgreesWithScan(t *testing.T) {
	var entries []Entry[int]
	for i := range 60 {
		var sel Selector
		switch i % 5 {
		case 0:
			sel.Matchers = mustMatchers(t, fmt.Sprintf(`alertname="A%d"`, i%7))
		case 1:
			sel.Matchers = mustMatchers(t, fmt.Sprintf(`alertname="A%d"`, i%7), fmt.Sprintf(`env="e%d"`, i%3))
		case 2:
			sel.Matchers = mustMatchers(t, fmt.Sprintf(`env="e%d"`, i%3))
		case 3:
			sel.Types = []string{fmt.Sprintf("t%d", i%4)}
		case 4:
			sel.Matchers = mustMatchers(t, fmt.Sprintf(`alertname=~"A[%d-9]"`, i%10))
		}
		entries = append(entries, Entry[int]{Selector: sel, Priority: i % 3, Value: i, Fallback: i == 59})
	}
	ix := NewIndex(entries)
	scan := func(in Input) (int, bool) {
		best := -1
		for _, fb := range []bool{false, true} {
			for i, e := range entries {
				if e.Fallback != fb || !e.Selector.Matches(in) {
					continue
				}
				if best < 0 || ix.better(i, best) {
					best = i
				}
			}
			if best >= 0 {
				return best, true
			}
		}
		return 0, false
	}
	for a := range 9 {
		for e := range 4 {
			for ty := range 5 {
				in := Input{Type: fmt.Sprintf("t%d", ty), Labels: map[string]string{"alertname": fmt.Sprintf("A%d", a), "env": fmt.Sprintf("e%d", e)}}
				want, wok := scan(in)
				got, gok := ix.Match(in)
				if wok != gok || (gok && got.Value != want) {
					t.Errorf("%v: index %v/%v, scan %v/%v", in, got.Value, gok, want, wok)
				}
			}
		}
	}
}

func benchEntries(b *testing.B, n int) []Entry[int] {
	var es []Entry[int]
	// A few runbooks without an equality matcher land in the scan list.
	es = append(es,
		Entry[int]{Selector: Selector{Matchers: mustMatchers(b, `alertname=~"Pod.*"`)}, Value: -1},
		Entry[int]{Selector: Selector{Matchers: mustMatchers(b, `severity=~"page"`)}, Value: -2},
		Entry[int]{Fallback: true, Value: -3},
	)
	for i := len(es); i < n; i++ {
		var sel Selector
		switch i % 3 {
		case 0:
			sel.Matchers = mustMatchers(b, fmt.Sprintf(`alertname="Alert%d"`, i), `severity=~"critical|page"`)
		case 1:
			sel.Matchers = mustMatchers(b, fmt.Sprintf(`alertname="Alert%d"`, i), `env!="dev"`)
		case 2:
			sel.Sources = []string{"solana"}
			sel.Types = []string{fmt.Sprintf("solana.kind%d", i)}
		}
		es = append(es, Entry[int]{Selector: sel, Value: i})
	}
	return es
}

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("runbooks=%d", n), func(b *testing.B) {
			ix := NewIndex(benchEntries(b, n))
			ins := []Input{
				{Source: "alertmanager", Type: "alertmanager.alert", Labels: map[string]string{"alertname": "Alert6", "severity": "critical", "env": "prod", "service": "api", "namespace": "solana-dapps"}},
				{Source: "alertmanager", Type: "alertmanager.alert", Labels: map[string]string{"alertname": "Unknown", "severity": "warning", "env": "prod"}},
				{Source: "solana", Type: "solana.kind5", Labels: map[string]string{"alertname": "SolanaRPCUnhealthy", "severity": "critical"}},
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, ok := ix.Match(ins[i%len(ins)]); !ok {
					b.Fatal("no match")
				}
			}
		})
	}
}

func FuzzParseMatchers(f *testing.F) {
	for _, s := range []string{`alertname="X"`, `{a=~"b|c", d!="e"}`, `a!~"(`, `{`, `"a"="b"`, "a=\"\\u00e9\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := ParseMatchers(s)
		if err == nil && len(ms) == 0 {
			t.Fatalf("no error and no matchers for %q", s)
		}
		for _, m := range ms {
			_ = m.Matches("x")
		}
	})
}
