package slack

import (
	"fmt"
	"time"

	"github.com/incidentbot/incidentbot/notify"
)

var t0 = time.Date(2025, 8, 13, 14, 2, 11, 0, time.UTC)

// firingCritical is a critical incident with every part of the card set,
// including text that needs escaping.
func firingCritical() notify.Incident {
	return notify.Incident{
		ID:         "INC-7F3A2C",
		Key:        `{}/{severity="critical"}:{alertname="SolanaRPCDown"}|rpc-endpoint-down`,
		Version:    3,
		Title:      "RPC endpoint down for api <prod> & friends",
		Summary:    "getHealth fails on https://rpc-a.example.com: Node is behind by 212 slots",
		Severity:   notify.SeverityCritical,
		Status:     notify.StatusFiring,
		Source:     "alertmanager",
		Runbook:    "rpc-endpoint-down",
		RunbookURL: "https://runbooks.example.com/rpc-endpoint-down",
		Labels: map[string]string{
			"alertname": "SolanaRPCDown", "severity": "critical", "namespace": "solana-dapps",
			"service": "api", "cluster": "prod-use1",
		},
		Alerts: []notify.Alert{
			{Fingerprint: "0df005333d9e37c9", Name: "SolanaRPCDown", Status: notify.StatusFiring,
				Summary: "rpc-a unhealthy (behind 212 slots)", Labels: map[string]string{"alertname": "SolanaRPCDown", "instance": "rpc-a:8899", "namespace": "solana-dapps"},
				StartsAt: t0, GeneratorURL: "http://prometheus:9090/graph?g0.expr=up&g0.tab=1"},
			{Fingerprint: "1aa005333d9e37c9", Name: "SolanaRPCDown", Status: notify.StatusResolved,
				Summary: "rpc-b unhealthy", Labels: map[string]string{"alertname": "SolanaRPCDown", "instance": "rpc-b:8899"},
				StartsAt: t0.Add(-5 * time.Minute), EndsAt: t0.Add(time.Minute)},
		},
		Assessment: []notify.Step{
			{Text: "Check the RPC health dashboard", Link: "https://grafana.example.com/d/rpc?var-node=rpc-a&from=now-1h"},
			{Text: "Compare slot height with a public RPC: `solana slot`"},
		},
		Remediation: []notify.Proposal{
			{ID: "switch-rpc", Title: "Switch to backup RPC", Action: "kubernetes.set_env",
				Plan:     "deployment solana-dapps/api: set SOLANA_RPC_URL → https://rpc-b.example.com",
				Approval: "one approver from @sre-oncall",
				Hash:     "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809", State: notify.StepPending,
				Status: "pending: requested by ada (slack), plan 1a2b3c4d5e6f — 0 of 1 approvals; expires 12:30 UTC"},
			{ID: "restart-api", Title: "Restart api pods", Action: "kubernetes.rollout_restart",
				Plan: "deployment solana-dapps/api: rollout restart (3 pods)", Approval: "automatic after 5m if still firing", Automatic: true,
				Hash: "9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0"},
			{ID: "scale-rpc", Title: "Scale RPC pool", Action: "kubernetes.scale", Error: `deployment "rpc" not found in namespace solana-dapps`},
		},
		Escalation: []notify.EscalationLevel{
			{Name: "L1 (On-Call)", Who: "@sre-oncall"},
			{Name: "L2 (Platform lead)", After: 15 * time.Minute, Who: "@platform-lead"},
		},
		Links: []notify.Link{
			{Text: "Alertmanager", URL: "http://alertmanager.monitoring.svc:9093/#/alerts?receiver=incidentbot"},
		},
		StartedAt: t0,
		UpdatedAt: t0.Add(3 * time.Minute),
	}
}

func resolvedWarning() notify.Incident {
	inc := firingCritical()
	inc.ID = "INC-11B2C3"
	inc.Title = "High 5xx ratio on api"
	inc.Summary = "5xx ratio back under 5%"
	inc.Severity = notify.SeverityWarning
	inc.Status = notify.StatusResolved
	inc.Remediation = nil
	inc.Reopened = 2
	inc.ResolvedAt = t0.Add(42*time.Minute + 10*time.Second)
	inc.UpdatedAt = inc.ResolvedAt
	inc.Version = 9
	for i := range inc.Alerts {
		inc.Alerts[i].Status = notify.StatusResolved
		inc.Alerts[i].EndsAt = inc.ResolvedAt
	}
	return inc
}

func truncatedAlerts() notify.Incident {
	inc := notify.Incident{
		ID: "INC-0A0B0C", Version: 1, Title: "Program logs failing transactions", Severity: notify.SeverityCritical,
		Status: notify.StatusAcknowledged, AcknowledgedBy: "Ada", Source: "solana", Runbook: "tx-failures",
		Labels:    map[string]string{"program": "Prog1111111111111111111111111111111111111"},
		StartedAt: t0, UpdatedAt: t0.Add(time.Minute), TruncatedAlerts: 37,
	}
	for i := range 12 {
		inc.Alerts = append(inc.Alerts, notify.Alert{
			Fingerprint: fmt.Sprintf("fp%02d", i), Name: "TxFailed", Status: notify.StatusFiring,
			Summary:  fmt.Sprintf("signature %02d failed: custom program error 0x1", i),
			Labels:   map[string]string{"program": "Prog1111111111111111111111111111111111111", "signature": fmt.Sprintf("sig%02d", i)},
			StartsAt: t0.Add(time.Duration(i) * time.Second),
		})
	}
	return inc
}
