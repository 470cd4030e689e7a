package runbooks

import (
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/notify"
	"github.com/incidentbot/incidentbot/rpcview"
	"github.com/incidentbot/incidentbot/rules"
	"github.com/incidentbot/incidentbot/signal"
	"github.com/incidentbot/incidentbot/watchers/solana/watchtest"
)

// stepWant is what one remediation step must render: a plan containing
// plan, or exactly the one-line error err.
type stepWant struct{ plan, err string }

// decision is what the bot must decide for one input: the runbook, its
// severity and page, the title, texts the card must show, and every
// remediation step of the runbook (a step left out fails the test).
type decision struct {
	runbook  string
	severity notify.Severity
	page     bool
	title    string
	contains []string
	steps    map[string]stepWant
}

// checkDecision matches and renders in as the engine does and compares
// with want.
func checkDecision(t *testing.T, s *Set, sig signal.Signal, rpc rpcview.Reader, want decision) {
	t.Helper()
	r := s.Match(rules.Input{Source: sig.Source, Type: sig.Type, Labels: sig.Labels})
	if r == nil || r.Name != want.runbook {
		t.Fatalf("matched %v, want runbook %s", r, want.runbook)
	}
	sev := r.Severity(sig.Labels)
	if sev != want.severity || r.Route(sev).Page != want.page {
		t.Errorf("severity %s page %v, want %s page %v", sev, r.Route(sev).Page, want.severity, want.page)
	}
	out := r.Render(t.Context(), actions.DataFromSignal(sig, rpc))
	if want.title != "" && out.Title != want.title {
		t.Errorf("title %q, want %q", out.Title, want.title)
	}
	var card []string
	for _, a := range out.Assessment {
		card = append(card, a.Text)
	}
	for _, c := range out.Causes {
		card = append(card, c.Symptoms, c.Check)
	}
	text := strings.Join(card, "\n")
	for _, c := range want.contains {
		if !strings.Contains(text, c) {
			t.Errorf("card lacks %q:\n%s", c, text)
		}
	}
	if strings.Contains(text, "[template error") || strings.Contains(out.Title, "[template error") {
		t.Errorf("template error on the card:\n%s\n%s", out.Title, text)
	}
	var ids []string
	for _, p := range out.Remediation {
		ids = append(ids, p.ID)
		w, ok := want.steps[p.ID]
		switch {
		case !ok:
			t.Errorf("step %s (%s) not in the table: plan %q error %q", p.ID, p.Action, p.Plan, p.Error)
		case w.err != "":
			if p.Error != w.err || p.Plan != "" {
				t.Errorf("step %s: plan %q error %q, want error %q", p.ID, p.Plan, p.Error, w.err)
			}
		default:
			if p.Error != "" || !strings.Contains(p.Plan, w.plan) {
				t.Errorf("step %s: plan %q error %q, want a plan containing %q", p.ID, p.Plan, p.Error, w.plan)
			}
			// The card's hash is the one a request from it resolves to.
			if plan, err := r.Step(p.ID).Resolve(t.Context(), actions.Env{}, actions.DataFromSignal(sig, rpc)); err != nil || p.Hash == "" || p.Hash != plan.Hash {
				t.Errorf("step %s: card hash %q, resolved %q (%v)", p.ID, p.Hash, plan.Hash, err)
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(want.steps)) {
		if !slices.Contains(ids, id) {
			t.Errorf("step %s expected but not proposed (proposed %v)", id, ids)
		}
	}
}

// TestShippedRunbooksOnRealInputs: every shipped runbook, fed the inputs
// that can select it, decides what the table says and renders a valid
// plan for each remediation step, or one line that says what the team
// must add. Watcher events are captured from the watchers running against
// fake nodes; alerts are the course's PrometheusRule in deploy/.
func TestShippedRunbooksOnRealInputs(t *testing.T) {
	s := loadShipped(t)
	caps := watchtest.Capture(t)
	t.Run("watcher events", func(t *testing.T) { checkWatcherEvents(t, s, caps) })
	t.Run("course alerts", func(t *testing.T) { checkCourseAlerts(t, s, caps[0].RPC()) })
	t.Run("runbook test inputs", func(t *testing.T) { checkTestInputs(t, caps, courseAlerts(t)) })
}

func checkWatcherEvents(t *testing.T, s *Set, caps []watchtest.Captured) {
	noBuffer := func(typ string) string {
		return "solana.program_rollback: needs annotation rollback_buffer on the " + typ +
			" event: set solana.programs[].rollback_buffer in the bot's configuration"
	}
	escrowRollback := stepWant{plan: "program " + watchtest.EscrowID + " on mainnet-beta: upgrade from staged buffer " + watchtest.EscrowBuffer}
	disableFlag := stepWant{plan: "redis: SET feature:enable_escrow false"}
	security := stepWant{plan: "manual: Treat as a possible key compromise"}
	switchToBackup := stepWant{plan: `(healthiest backup "` + watchtest.Backup + `", lag `}
	topUp := stepWant{plan: "manual: Transfer SOL to " + watchtest.FeePayerAddr + " (" + watchtest.FeePayer + ") from the treasury (keep it above 1000000 lamports)"}
	programShow := func(id string) []string { return []string{"Inspect: solana program show " + id} }
	// Keyed by scenario and subject (endpoint, program id or address).
	table := map[string]decision{
		"escrow upgraded/" + watchtest.EscrowID: {runbook: "solana-program-change", severity: notify.SeverityCritical, page: true,
			title: "Program escrow: upgraded", contains: programShow(watchtest.EscrowID),
			steps: map[string]stepWant{"disable-feature": disableFlag, "rollback-program": escrowRollback, "escalate-security": security}},
		"escrow upgrade authority changed/" + watchtest.EscrowID: {runbook: "solana-program-change", severity: notify.SeverityCritical, page: true,
			title: "Program escrow: upgrade authority changed", contains: append(programShow(watchtest.EscrowID), "Authority now "+watchtest.Rogue+", expected "+watchtest.Multisig),
			steps: map[string]stepWant{"disable-feature": disableFlag, "rollback-program": escrowRollback, "escalate-security": security}},
		"payments upgraded/" + watchtest.PaymentsID: {runbook: "solana-program-change", severity: notify.SeverityCritical, page: true,
			title: "Program payments: upgraded", contains: programShow(watchtest.PaymentsID),
			steps: map[string]stepWant{"disable-feature": disableFlag, "rollback-program": {err: noBuffer("solana.program.upgraded")}, "escalate-security": security}},
		"payments upgrade authority revoked/" + watchtest.PaymentsID: {runbook: "solana-program-change", severity: notify.SeverityCritical, page: true,
			title: "Program payments: upgrade authority changed", contains: append(programShow(watchtest.PaymentsID), "Authority now none"),
			steps: map[string]stepWant{"disable-feature": disableFlag, "rollback-program": {err: noBuffer("solana.program.authority_changed")}, "escalate-security": security}},
		"escrow transactions failing/" + watchtest.EscrowID: {runbook: "solana-tx-failure-rate", severity: notify.SeverityCritical, page: true,
			title: "Transaction failure rate 57.1% for escrow", contains: []string{"4 of 7 recent transactions failed"},
			steps: map[string]stepWant{"rollback-program": escrowRollback, "disable-feature": disableFlag}},
		"escrow transactions succeeding again/" + watchtest.EscrowID: {runbook: "solana-tx-failure-rate", severity: notify.SeverityCritical, page: true,
			title: "Transaction failure rate 50.0% for escrow",
			steps: map[string]stepWant{"rollback-program": escrowRollback, "disable-feature": disableFlag}},
		"payments transactions failing/" + watchtest.PaymentsID: {runbook: "solana-tx-failure-rate", severity: notify.SeverityCritical, page: true,
			title: "Transaction failure rate 100.0% for payments",
			steps: map[string]stepWant{"rollback-program": {err: noBuffer("solana.tx.failure_rate")}, "disable-feature": disableFlag}},
		"fee payer below its minimum/" + watchtest.FeePayerAddr: {runbook: "solana-balance-low", severity: notify.SeverityWarning,
			title: "Wallet fee-payer balance low", contains: []string{"Balance 500000 lamports, minimum 1000000", "solana transaction-history " + watchtest.FeePayerAddr + " --limit 20"},
			steps: map[string]stepWant{"top-up": topUp}},
		"fee payer topped up/" + watchtest.FeePayerAddr: {runbook: "solana-balance-low", severity: notify.SeverityWarning,
			steps: map[string]stepWant{"top-up": topUp}},
		"primary endpoint behind/" + watchtest.Primary: {runbook: "solana-rpc-unhealthy", severity: notify.SeverityCritical, page: true,
			title:    "Solana RPC primary unhealthy",
			contains: []string{"Healthiest backup: " + watchtest.Backup, "solana cluster-version --url http://127.0.0.1:"},
			steps: map[string]stepWant{"switch-rpc": switchToBackup,
				"notify-rpc-provider": {plan: "manual: Notify the RPC provider: primary is failing (getHealth: node unhealthy (-32005): Node is behind by 187 slots"}}},
		"primary endpoint healthy again/" + watchtest.Primary: {runbook: "solana-rpc-unhealthy", severity: notify.SeverityCritical, page: true,
			steps: map[string]stepWant{"switch-rpc": switchToBackup, "notify-rpc-provider": {plan: "manual: Notify the RPC provider: primary is failing"}}},
		"backup endpoint unhealthy/" + watchtest.Backup: {runbook: "solana-rpc-backup-unhealthy", severity: notify.SeverityWarning,
			title: "Solana RPC backup backup-1 unhealthy", contains: []string{"Endpoint backup-1: getHealth: node unhealthy", "Another endpoint still serves"},
			steps: map[string]stepWant{"notify-rpc-provider": {plan: "manual: Notify the RPC provider: backup endpoint backup-1 is failing (getHealth: node unhealthy"}}},
		"primary endpoint down too: all endpoints down/" + watchtest.Primary: {runbook: "solana-rpc-unhealthy", severity: notify.SeverityCritical, page: true,
			steps: map[string]stepWant{
				"switch-rpc":          {err: "solana.switch_rpc: no healthy backup RPC endpoint to switch to: the RPC view lists no healthy backup endpoint (2 endpoints); pick an endpoint by hand"},
				"notify-rpc-provider": {plan: "manual: Notify the RPC provider: primary is failing"}}},
		"all endpoints healthy again/" + watchtest.Primary: {runbook: "solana-rpc-unhealthy", severity: notify.SeverityCritical, page: true,
			steps: map[string]stepWant{"switch-rpc": switchToBackup, "notify-rpc-provider": {plan: "manual: Notify the RPC provider: primary is failing"}}},
		"all endpoints healthy again/" + watchtest.Backup: {runbook: "solana-rpc-backup-unhealthy", severity: notify.SeverityWarning,
			steps: map[string]stepWant{"notify-rpc-provider": {plan: "manual: Notify the RPC provider: backup endpoint backup-1"}}},
	}
	seen := map[string]bool{}
	for _, c := range caps {
		key := c.Scenario + "/" + c.Event.Subject
		want, ok := table[key]
		if !ok {
			t.Errorf("%s: %s event not in the table", key, c.Event.Type)
			continue
		}
		seen[key] = true
		t.Run(key, func(t *testing.T) { checkDecision(t, s, c.Signal, c.RPC(), want) })
	}
	for key := range table {
		if !seen[key] {
			t.Errorf("%s: the watchers published no such event", key)
		}
	}

	// Without the live view, the RPC runbook proposes the backup the
	// watcher saw healthy when the primary failed.
	for _, c := range caps {
		if c.Scenario == "primary endpoint behind" {
			checkDecision(t, s, c.Signal, nil, decision{runbook: "solana-rpc-unhealthy", severity: notify.SeverityCritical, page: true,
				steps: map[string]stepWant{"switch-rpc": {plan: `(healthiest backup "` + watchtest.Backup + `" as reported when the alert fired; live view unavailable: no RPC view`},
					"notify-rpc-provider": {plan: "manual: Notify the RPC provider: primary"}}})
		}
	}
}

// exprLabels are the labels each course alert's expression keeps, as
// Prometheus evaluates it: sum() keeps none; a plain selector keeps the
// series' labels, target labels included; sum by (program) keeps program.
// solana_rpc_up, solana_tx_* and the incidentbot_* series are incidentbot's
// own metrics, scraped from its pod.
var exprLabels = map[string]map[string]string{
	"HighErrorRate": {},
	"HighLatency":   {"service": "api", "namespace": "solana-dapps", "job": "api", "instance": "10.0.3.17:8000", "pod": "api-7d9f8b6c5d-x2x9q"},
	"PodCrashLooping": {"namespace": "solana-dapps", "pod": "api-7d9f8b6c5d-x2x9q", "container": "api",
		"job": "kube-state-metrics", "instance": "10.0.2.5:8080"},
	"HighTransactionFailureRate":                 {"program": watchtest.Escrow},
	"RPCEndpointDown":                            {"endpoint": "primary", "job": "incidentbot", "instance": "10.0.4.9:8080", "namespace": "incidentbot", "pod": "incidentbot-0"},
	"DatabaseConnectionPoolExhausted":            {"job": "api", "instance": "10.0.3.17:8000", "namespace": "solana-dapps", "pod": "api-7d9f8b6c5d-x2x9q"},
	"IncidentbotWebhookFailures":                 {"result": "unavailable"},
	"IncidentbotEventsPoisoned":                  {"source": "solana"},
	"IncidentbotNotificationsFailing":            {"sink": "slack"},
	"IncidentbotSolanaStreamMissingTransactions": {"program": "escrow"},
	"IncidentbotDown":                            {"job": "incidentbot", "instance": "10.0.4.9:8080"},
}

type promRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// courseAlerts reads the alerts of the shipped PrometheusRule as
// Alertmanager delivers them: rule labels, alertname and the expression's
// labels.
func courseAlerts(t *testing.T) map[string]signal.Signal {
	t.Helper()
	b, err := os.ReadFile("../deploy/prometheus/solana-dapps-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Spec struct {
			Groups []struct {
				Rules []promRule `yaml:"rules"`
			} `yaml:"groups"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]signal.Signal{}
	for _, g := range doc.Spec.Groups {
		for _, r := range g.Rules {
			kept, ok := exprLabels[r.Alert]
			if !ok {
				t.Fatalf("alert %s: say in exprLabels which labels its expression keeps", r.Alert)
			}
			labels := maps.Clone(kept)
			maps.Copy(labels, r.Labels)
			labels["alertname"] = r.Alert
			out[r.Alert] = signal.Signal{Source: "alertmanager", Type: "alertmanager.alert", GroupKey: "{}:{alertname=\"" + r.Alert + "\"}",
				Fingerprint: r.Alert, Status: signal.Firing, Labels: labels, Annotations: maps.Clone(r.Annotations),
				GeneratorURL: "http://prometheus.monitoring.svc:9090/graph?g0.expr=" + url.QueryEscape(strings.TrimSpace(r.Expr)) + "&g0.tab=1"}
		}
	}
	if len(out) != len(exprLabels) {
		t.Fatalf("%d alerts in the rule, %d in exprLabels", len(out), len(exprLabels))
	}
	return out
}

func checkCourseAlerts(t *testing.T, s *Set, view rpcview.Reader) {
	addToRule := "solana.program_rollback: needs label program_id and annotation rollback_buffer on the alert: add them to the PrometheusRule"
	switchRPC := stepWant{plan: `deployment solana-dapps/api: set SOLANA_RPC_URL → http://127.0.0.1:`}
	notifyProvider := stepWant{plan: "manual: Notify the RPC provider: "}
	restart := stepWant{plan: "deployment solana-dapps/api: rollout restart"}
	scale := stepWant{plan: "deployment solana-dapps/api: scale to 5 replicas (max 10)"}
	disable := stepWant{plan: "redis: SET feature:enable_escrow false"}
	fallback := decision{runbook: "fallback", severity: notify.SeverityCritical, page: true, steps: map[string]stepWant{}}
	table := map[string]decision{
		"HighErrorRate": {runbook: "high-error-rate", severity: notify.SeverityCritical, page: true, title: "High error rate on api",
			steps: map[string]stepWant{"switch-rpc": switchRPC, "notify-rpc-provider": notifyProvider, "restart-api": restart, "scale-api": scale,
				"rollback-program": {err: addToRule}, "disable-feature": disable}},
		"HighLatency": {runbook: "high-latency", severity: notify.SeverityWarning, title: "High latency on api",
			steps: map[string]stepWant{"switch-rpc": switchRPC, "notify-rpc-provider": notifyProvider, "restart-api": restart, "scale-api": scale}},
		"PodCrashLooping": {runbook: "pod-crash-looping", severity: notify.SeverityWarning, title: "Pod api-7d9f8b6c5d-x2x9q is crash looping",
			contains: []string{"kubectl logs -n solana-dapps api-7d9f8b6c5d-x2x9q --previous"},
			steps:    map[string]stepWant{"rollback-api": {plan: "deployment solana-dapps/api: roll back to the previous revision"}, "restart-api": restart}},
		"HighTransactionFailureRate": {runbook: "high-transaction-failure-rate", severity: notify.SeverityCritical, page: true,
			steps: map[string]stepWant{"switch-rpc": switchRPC, "notify-rpc-provider": notifyProvider,
				"rollback-program": {err: addToRule}, "disable-feature": disable}},
		"RPCEndpointDown": {runbook: "rpc-endpoint-down", severity: notify.SeverityCritical, page: true, title: "Solana RPC endpoint primary is unreachable",
			steps: map[string]stepWant{"switch-rpc": switchRPC, "notify-rpc-provider": {plan: "manual: Notify the RPC provider: primary is failing (Cannot connect to Solana RPC endpoint)"}}},
		"DatabaseConnectionPoolExhausted": {runbook: "database-connection-pool-exhausted", severity: notify.SeverityWarning,
			steps: map[string]stepWant{"restart-api": restart, "scale-api": scale}},
		"IncidentbotWebhookFailures":                 fallback,
		"IncidentbotEventsPoisoned":                  {runbook: "fallback", severity: notify.SeverityWarning, steps: map[string]stepWant{}},
		"IncidentbotNotificationsFailing":            fallback,
		"IncidentbotSolanaStreamMissingTransactions": {runbook: "fallback", severity: notify.SeverityWarning, steps: map[string]stepWant{}},
		"IncidentbotDown":                            fallback,
	}
	alerts := courseAlerts(t)
	for name, sig := range alerts {
		want, ok := table[name]
		if !ok {
			t.Errorf("alert %s not in the table", name)
			continue
		}
		t.Run(name, func(t *testing.T) { checkDecision(t, s, sig, view, want) })
	}

	// Once the team adds what the card asked for, the rollback renders.
	sig := alerts["HighTransactionFailureRate"]
	sig.Labels["program_id"] = watchtest.EscrowID
	sig.Annotations["rollback_buffer"] = watchtest.EscrowBuffer
	checkDecision(t, s, sig, view, decision{runbook: "high-transaction-failure-rate", severity: notify.SeverityCritical, page: true,
		steps: map[string]stepWant{"switch-rpc": switchRPC, "notify-rpc-provider": notifyProvider,
			"rollback-program": {plan: "program " + watchtest.EscrowID + " on mainnet-beta: upgrade from staged buffer " + watchtest.EscrowBuffer}, "disable-feature": disable}})
}
