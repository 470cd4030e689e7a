package watchtest

import (
	"testing"
)

// TestCapture: every scenario yields the events it should, in order, each
// decoded as the engine decodes it.
func TestCapture(t *testing.T) {
	caps := Capture(t)
	want := []struct{ scenario, typ, subject, severity string }{
		{"escrow upgraded", "solana.program.upgraded", EscrowID, "critical"},
		{"escrow upgrade authority changed", "solana.program.authority_changed", EscrowID, "critical"},
		{"payments upgraded", "solana.program.upgraded", PaymentsID, "critical"},
		{"payments upgrade authority revoked", "solana.program.authority_changed", PaymentsID, "critical"},
		{"escrow transactions failing", "solana.tx.failure_rate", EscrowID, "critical"},
		{"escrow transactions succeeding again", "solana.tx.failure_rate_recovered", EscrowID, "critical"},
		{"payments transactions failing", "solana.tx.failure_rate", PaymentsID, "critical"},
		{"fee payer below its minimum", "solana.balance.low", FeePayerAddr, "warning"},
		{"fee payer topped up", "solana.balance.recovered", FeePayerAddr, "warning"},
		{"primary endpoint behind", "solana.rpc.unhealthy", Primary, "critical"},
		{"primary endpoint healthy again", "solana.rpc.recovered", Primary, "critical"},
		{"backup endpoint unhealthy", "solana.rpc.unhealthy", Backup, "warning"},
		{"primary endpoint down too: all endpoints down", "solana.rpc.unhealthy", Primary, "critical"},
	}
	if len(caps) != len(want)+2 {
		for _, c := range caps {
			t.Logf("%s: %s %s", c.Scenario, c.Event.Type, c.Event.Subject)
		}
		t.Fatalf("%d events captured, want %d", len(caps), len(want)+2)
	}
	for i, w := range want {
		c := caps[i]
		if c.Scenario != w.scenario || c.Event.Type != w.typ || c.Event.Subject != w.subject ||
			c.Signal.Type != w.typ || c.Signal.Source != "solana" || c.Signal.Labels["severity"] != w.severity {
			t.Errorf("event %d: %s: %s %s severity %q; want %s: %s %s severity %q", i,
				c.Scenario, c.Event.Type, c.Event.Subject, c.Signal.Labels["severity"], w.scenario, w.typ, w.subject, w.severity)
		}
	}
	for _, c := range caps[len(want):] {
		if c.Event.Type != "solana.rpc.recovered" {
			t.Errorf("%s: %s, want the endpoints' recoveries", c.Scenario, c.Event.Type)
		}
	}
	if hb, ok := caps[9].View.HealthiestBackup(); !ok || hb.Name != Backup {
		t.Errorf("view when the primary fell behind: %+v, want %s as the healthy backup", caps[9].View, Backup)
	}
}
