// Package deploy_test loads every example under deploy/ (STYLE point 17):
// the Alertmanager configurations through the real amtool, the example
// configuration through config.Load, the Prometheus rules against the
// course's alerts, the NATS values, and the Helm chart rendered with a small
// Helm-compatible template engine, its Role checked against the actions'
// own RBAC needs.
package deploy_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/config"
)

const chartDir = "helm/incidentbot"

// TestYAMLParses parses every YAML file under deploy/ except the Helm
// templates, which are Go templates (TestHelmChart renders them).
func TestYAMLParses(t *testing.T) {
	var n int
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path == filepath.Join(chartDir, "templates") {
				return filepath.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		n++
		t.Run(path, func(t *testing.T) {
			docs := readYAMLDocs(t, path)
			if len(docs) == 0 {
				t.Fatalf("%s: no YAML document", path)
			}
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"incidentbot.example.yaml", "nats/values.yaml", chartDir + "/Chart.yaml", chartDir + "/values.yaml"} {
		if _, err := os.Stat(want); err != nil {
			t.Errorf("expected example missing: %v", err)
		}
	}
	if n < 8 {
		t.Errorf("found %d YAML files under deploy/, want at least 8", n)
	}
}

// TestAlertmanagerConfigs runs the real `amtool check-config` on every
// deploy/alertmanager/*.yml and checks the incidentbot receiver. amtool
// (0.25) does not open credentials_file or password_file when checking, so
// the in-cluster paths need not exist here.
func TestAlertmanagerConfigs(t *testing.T) {
	amtool, err := exec.LookPath("amtool")
	if err != nil {
		t.Fatalf("amtool not found (%v): install the Debian package prometheus-alertmanager (apt-get install prometheus-alertmanager), which provides /usr/bin/amtool", err)
	}
	files, err := filepath.Glob("alertmanager/*.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("alertmanager/*.yml: %d files, want the bearer and basic-auth variants", len(files))
	}
	out, err := exec.Command(amtool, append([]string{"check-config"}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("amtool check-config %s: %v\n%s", strings.Join(files, " "), err, out)
	}
	if got := strings.Count(string(out), "SUCCESS"); got != len(files) {
		t.Fatalf("amtool check-config: %d SUCCESS for %d files\n%s", got, len(files), out)
	}

	type webhook struct {
		URL          string `yaml:"url"`
		SendResolved *bool  `yaml:"send_resolved"`
		MaxAlerts    int    `yaml:"max_alerts"`
		HTTPConfig   struct {
			Authorization *struct {
				Type            string `yaml:"type"`
				CredentialsFile string `yaml:"credentials_file"`
			} `yaml:"authorization"`
			BasicAuth *struct {
				Username     string `yaml:"username"`
				PasswordFile string `yaml:"password_file"`
			} `yaml:"basic_auth"`
		} `yaml:"http_config"`
	}
	type amConfig struct {
		Route struct {
			Receiver       string   `yaml:"receiver"`
			GroupBy        []string `yaml:"group_by"`
			GroupWait      string   `yaml:"group_wait"`
			GroupInterval  string   `yaml:"group_interval"`
			RepeatInterval string   `yaml:"repeat_interval"`
		} `yaml:"route"`
		Receivers []struct {
			Name           string    `yaml:"name"`
			WebhookConfigs []webhook `yaml:"webhook_configs"`
		} `yaml:"receivers"`
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			var c amConfig
			decodeFile(t, f, &c)
			r := c.Route
			if r.Receiver != "incidentbot" || !slices.Equal(r.GroupBy, []string{"alertname", "severity"}) ||
				r.GroupWait != "30s" || r.GroupInterval != "5m" || r.RepeatInterval != "4h" {
				t.Errorf("route = %+v, want the course's grouping (alertname, severity; 30s/5m/4h) to receiver incidentbot", r)
			}
			// The timers decide when a firing or a resolve reaches the bot:
			// the file says so, with the values recommended for it.
			if b, _ := os.ReadFile(f); !strings.Contains(string(b), "group_interval: 5m      # recommended for incidentbot: 1m") {
				t.Error("route: want group_wait/group_interval explained with incidentbot's recommended values")
			}
			var hooks []webhook
			for _, rc := range c.Receivers {
				if rc.Name == "incidentbot" {
					hooks = rc.WebhookConfigs
				}
			}
			if len(hooks) != 1 {
				t.Fatalf("receiver incidentbot: %d webhook_configs, want 1", len(hooks))
			}
			h := hooks[0]
			if !strings.HasSuffix(h.URL, "/webhook/alertmanager") {
				t.Errorf("url %q: want the path /webhook/alertmanager", h.URL)
			}
			if h.SendResolved == nil || !*h.SendResolved {
				t.Error("send_resolved: want true (resolved notifications close incidents)")
			}
			if h.MaxAlerts <= 0 {
				t.Errorf("max_alerts %d: want a bound", h.MaxAlerts)
			}
			a, b := h.HTTPConfig.Authorization, h.HTTPConfig.BasicAuth
			switch {
			case a != nil && b == nil:
				if a.Type != "Bearer" || a.CredentialsFile == "" {
					t.Errorf("authorization = %+v, want type Bearer with credentials_file", *a)
				}
			case b != nil && a == nil:
				if b.Username == "" || b.PasswordFile == "" {
					t.Errorf("basic_auth = %+v, want username and password_file", *b)
				}
			default:
				t.Error("http_config: want exactly one of authorization and basic_auth")
			}
		})
	}
}

// TestExampleConfigLoads loads deploy/incidentbot.example.yaml as
// `incidentbot serve --config` does. Its secret files are in-cluster paths;
// the environment points them at testdata, the way the chart does.
func TestExampleConfigLoads(t *testing.T) {
	const path = "incidentbot.example.yaml"
	secrets, err := filepath.Abs("testdata/secrets")
	if err != nil {
		t.Fatal(err)
	}
	env := []string{
		"INCIDENTBOT_ALERTMANAGER_BEARER_TOKEN_FILE=" + filepath.Join(secrets, "alertmanager-bearer-token"),
		"INCIDENTBOT_SLACK_TOKEN_FILE=" + filepath.Join(secrets, "slack-token"),
		"INCIDENTBOT_PAGERDUTY_ROUTING_KEY_FILE=" + filepath.Join(secrets, "pagerduty-routing-key"),
		"INCIDENTBOT_RUNBOOKS_DIR=" + t.TempDir(),
	}
	c, err := config.Load(path, env)
	if err != nil {
		t.Fatalf("config.Load(%s): %v", path, err)
	}
	if c.Bus.URL == "" || c.Bus.Replicas != 3 {
		t.Errorf("bus = url %q replicas %d, want an external cluster with 3 replicas", c.Bus.URL, c.Bus.Replicas)
	}
	if !c.Alertmanager.BearerToken.IsSet() || !c.Slack.Token.IsSet() || !c.PagerDuty.RoutingKey.IsSet() {
		t.Error("secrets from *_file not read")
	}
	if c.Alertmanager.BearerToken.Reveal() != "test-alertmanager-token" {
		t.Error("alertmanager bearer token: trailing newline not trimmed or wrong file")
	}
	if !c.Solana.Enabled() || len(c.Solana.Programs) == 0 || len(c.Solana.Wallets) == 0 {
		t.Error("solana: want endpoints, programs and wallets in the example")
	}
	if c.ListenIsLoopback() {
		t.Errorf("listen %q: the deployed example must accept Alertmanager from other pods", c.Listen)
	}

	// Without the overrides, only the files on the bot's host are missing,
	// reported apart from malformed configuration.
	_, err = config.Load(path, nil)
	if err == nil || !strings.Contains(err.Error(), "token_file") {
		t.Errorf("config.Load without secret files: %v, want errors about the *_file keys", err)
	}
	for _, p := range config.Problems(err) {
		if !p.Missing {
			t.Errorf("%v: want only files missing on this host", p)
		}
	}

	// Every section of the configuration is shown.
	var top map[string]any
	decodeFile(t, path, &top)
	ct := reflect.TypeFor[config.Config]()
	for i := range ct.NumField() {
		key, _, _ := strings.Cut(ct.Field(i).Tag.Get("yaml"), ",")
		if _, ok := top[key]; !ok {
			t.Errorf("%s: section or key %q missing", path, key)
		}
	}
}

// TestExampleConfigPassesItsCheck runs the check the example's header
// recommends, through the built binary: its shape is valid here, where its
// secret files and runbooks directory do not exist.
func TestExampleConfigPassesItsCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	const path = "incidentbot.example.yaml"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const recommended = "incidentbot check --config incidentbot.example.yaml --skip-secrets"
	if !strings.Contains(string(b), recommended) {
		t.Fatalf("%s does not recommend %q", path, recommended)
	}
	bin := filepath.Join(t.TempDir(), "incidentbot")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/incidentbot").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, strings.Fields(recommended)[1:]...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration valid (shape only") {
		t.Fatalf("%s: %v\n%s", recommended, err, out)
	}
	// Without the flag the same check names every missing file, apart.
	out, err = exec.Command(bin, "check", "--config", path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "missing on this host") || !strings.Contains(string(out), "slack.token_file") {
		t.Fatalf("check without --skip-secrets: %v\n%s", err, out)
	}
}

// courseAlerts are the six alerts of the course's PrometheusRule, in order.
var courseAlerts = []string{"HighErrorRate", "HighLatency", "PodCrashLooping", "HighTransactionFailureRate", "RPCEndpointDown", "DatabaseConnectionPoolExhausted"}

type ruleGroup struct {
	Name  string `yaml:"name"`
	Rules []struct {
		Alert       string            `yaml:"alert"`
		Expr        string            `yaml:"expr"`
		For         string            `yaml:"for"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"rules"`
}

// TestPrometheusRules checks the PrometheusRule keeps the course's six
// alerts, incidentbot's own alerts are beside them, and rules.yml says the
// same as the PrometheusRule.
func TestPrometheusRules(t *testing.T) {
	var pr struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name   string            `yaml:"name"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec struct {
			Groups []ruleGroup `yaml:"groups"`
		} `yaml:"spec"`
	}
	decodeFile(t, "prometheus/solana-dapps-alerts.yaml", &pr)
	if pr.Metadata.Labels["release"] == "" {
		t.Error("PrometheusRule: no release label; kube-prometheus-stack's default ruleSelector would never load it")
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" || pr.Metadata.Name != "solana-dapps-alerts" {
		t.Errorf("got %s %s %s, want monitoring.coreos.com/v1 PrometheusRule solana-dapps-alerts", pr.APIVersion, pr.Kind, pr.Metadata.Name)
	}
	groups := map[string]ruleGroup{}
	for _, g := range pr.Spec.Groups {
		groups[g.Name] = g
	}

	course := groups["solana-dapps.rules"]
	var names []string
	var exprs strings.Builder
	for _, r := range course.Rules {
		names = append(names, r.Alert)
		exprs.WriteString(r.Expr + "\n")
	}
	if !slices.Equal(names, courseAlerts) {
		t.Errorf("group solana-dapps.rules alerts = %v, want the course's %v", names, courseAlerts)
	}
	for _, metric := range []string{"solana_tx_failed_total", "solana_tx_total", "solana_rpc_up"} {
		if !strings.Contains(exprs.String(), metric) {
			t.Errorf("course alerts do not reference %s", metric)
		}
	}

	own := map[string]string{
		"IncidentbotWebhookFailures":                 `incidentbot_webhooks_total{result=~"unavailable|unauthorized|malformed`,
		"IncidentbotEventsPoisoned":                  `incidentbot_events_processed_total{result="poison"}`,
		"IncidentbotNotificationsFailing":            `incidentbot_notifications_total{result="error"}`,
		"IncidentbotDown":                            `up{job="incidentbot"} == 0 or absent(up{job="incidentbot"})`,
		"IncidentbotSolanaStreamMissingTransactions": `incidentbot_solana_tx_recovered_total{via="poll"}`,
	}
	got := map[string]string{}
	for _, r := range groups["incidentbot.rules"].Rules {
		got[r.Alert] = r.Expr
	}
	if len(got) != len(own) {
		t.Errorf("group incidentbot.rules has %d alerts, want %d", len(got), len(own))
	}
	for name, want := range own {
		if !strings.Contains(got[name], want) {
			t.Errorf("%s expr %q: want it to contain %s", name, got[name], want)
		}
	}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning (Alertmanager routes and incidentbot pages by it)", r.Alert, s)
			}
		}
	}

	var plain struct {
		Groups []ruleGroup `yaml:"groups"`
	}
	decodeFile(t, "prometheus/rules.yml", &plain)
	if !reflect.DeepEqual(plain.Groups, pr.Spec.Groups) {
		t.Error("prometheus/rules.yml and the PrometheusRule's spec.groups differ")
	}
}

// TestNATSValues checks the NATS chart values make a 3-node JetStream
// cluster on files that takes incidentbot's largest message.
func TestNATSValues(t *testing.T) {
	var v struct {
		Config struct {
			Cluster struct {
				Enabled  bool `yaml:"enabled"`
				Replicas int  `yaml:"replicas"`
			} `yaml:"cluster"`
			JetStream struct {
				Enabled   bool `yaml:"enabled"`
				FileStore struct {
					Enabled bool `yaml:"enabled"`
				} `yaml:"fileStore"`
			} `yaml:"jetstream"`
			Merge struct {
				MaxPayload int64 `yaml:"max_payload"`
			} `yaml:"merge"`
		} `yaml:"config"`
	}
	decodeFile(t, "nats/values.yaml", &v)
	c := v.Config
	if !c.Cluster.Enabled || c.Cluster.Replicas != 3 || !c.JetStream.Enabled || !c.JetStream.FileStore.Enabled {
		t.Errorf("config = %+v, want a 3-node cluster with JetStream file storage", c)
	}
	if limit := config.Default().Alertmanager.MaxBodyBytes; c.Merge.MaxPayload < 2*limit {
		t.Errorf("max_payload %d: want at least 2 MiB (webhook bodies up to %d bytes plus headers)", c.Merge.MaxPayload, limit)
	}
}

// TestHelmChart renders the chart with its defaults and with overrides and
// checks the manifests.
func TestHelmChart(t *testing.T) {
	chart := loadChart(t)
	registry := actions.Default()
	allActions := map[string]any{}
	for _, a := range registry.All() {
		if len(a.Describe().RBAC) > 0 {
			allActions[a.Describe().Name] = map[string]any{"enabled": true}
		}
	}
	noActions := map[string]any{}
	for name := range allActions {
		noActions[name] = map[string]any{"enabled": false}
	}

	tests := []struct {
		name      string
		values    map[string]any
		wantErr   string
		wantKinds []string
		check     func(t *testing.T, m manifests, values map[string]any)
	}{
		{
			name:      "defaults: embedded bus, one replica, PVC",
			wantKinds: []string{"ConfigMap", "Deployment", "PersistentVolumeClaim", "Role", "RoleBinding", "Service", "ServiceAccount"},
			check: func(t *testing.T, m manifests, _ map[string]any) {
				d := m.one(t, "Deployment")
				if got := str(d, "spec", "strategy", "type"); got != "Recreate" {
					t.Errorf("strategy %q, want Recreate with the embedded bus", got)
				}
				c := container(t, d)
				if !slices.Contains(strs(c, "args"), "--data-dir=/var/lib/incidentbot") {
					t.Errorf("args %v: want --data-dir on the data volume", strs(c, "args"))
				}
				if got := str(volume(t, d, "data"), "persistentVolumeClaim", "claimName"); got != "incidentbot" {
					t.Errorf("data volume claim %q, want incidentbot", got)
				}
			},
		},
		{
			name: "production: external NATS, 3 replicas, every option",
			values: map[string]any{
				"replicaCount":   3,
				"config":         map[string]any{"bus": map[string]any{"url": "nats://nats.nats.svc.cluster.local:4222", "replicas": 3}},
				"secrets":        map[string]any{"natsCredsKey": "nats.creds"},
				"runbooks":       map[string]any{"configMap": "incidentbot-runbooks"},
				"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "kube-prometheus-stack"}},
				"prometheusRule": map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}},
				"networkPolicy":  map[string]any{"enabled": true},
				"rbac":           map[string]any{"actions": allActions, "namespaces": []any{"solana-dapps", "solana-dapps-canary"}},
			},
			wantKinds: []string{"ConfigMap", "Deployment", "NetworkPolicy", "PrometheusRule", "Role", "Role", "RoleBinding", "RoleBinding", "Service", "ServiceAccount", "ServiceMonitor"},
			check: func(t *testing.T, m manifests, _ map[string]any) {
				d := m.one(t, "Deployment")
				if str(d, "spec", "strategy", "type") != "" {
					t.Error("strategy: want the default rolling update with an external bus")
				}
				c := container(t, d)
				for _, a := range strs(c, "args") {
					if strings.HasPrefix(a, "--data-dir") {
						t.Errorf("args: %s with an external bus", a)
					}
				}
				if !slices.Contains(envNames(c), "INCIDENTBOT_BUS_CREDS_FILE") || !slices.Contains(envNames(c), "INCIDENTBOT_RUNBOOKS_DIR") {
					t.Errorf("env %v: want INCIDENTBOT_BUS_CREDS_FILE and INCIDENTBOT_RUNBOOKS_DIR", envNames(c))
				}
				sm := m.one(t, "ServiceMonitor")
				if str(sm, "spec", "jobLabel") != "app.kubernetes.io/name" || str(sm, "metadata", "labels", "release") != "kube-prometheus-stack" {
					t.Errorf("ServiceMonitor: want jobLabel app.kubernetes.io/name (job=\"incidentbot\") and the extra labels")
				}
				if s := m.one(t, "Service"); str(s, "metadata", "labels", "app.kubernetes.io/name") != "incidentbot" {
					t.Error("Service: app.kubernetes.io/name must be incidentbot, the job label IncidentbotDown queries")
				}
				pr := m.one(t, "PrometheusRule")
				if str(pr, "metadata", "labels", "release") != "prom" {
					t.Errorf("PrometheusRule labels %v: want the configured release: prom", get(pr, "metadata", "labels"))
				}
				checkChartRules(t, pr)
			},
		},
		{
			name:      "PrometheusRule with the default labels",
			values:    map[string]any{"prometheusRule": map[string]any{"enabled": true}},
			wantKinds: []string{"ConfigMap", "Deployment", "PersistentVolumeClaim", "PrometheusRule", "Role", "RoleBinding", "Service", "ServiceAccount"},
			check: func(t *testing.T, m manifests, _ map[string]any) {
				pr := m.one(t, "PrometheusRule")
				if str(pr, "metadata", "labels", "release") != "kube-prometheus-stack" {
					t.Errorf("PrometheusRule labels %v: want release: kube-prometheus-stack, what kube-prometheus-stack's default ruleSelector selects", get(pr, "metadata", "labels"))
				}
				checkChartRules(t, pr)
			},
		},
		{
			name:      "no remediation action enabled: no Role",
			values:    map[string]any{"rbac": map[string]any{"actions": noActions}},
			wantKinds: []string{"ConfigMap", "Deployment", "PersistentVolumeClaim", "Service", "ServiceAccount"},
		},
		{
			name:      "embedded bus without persistence",
			values:    map[string]any{"persistence": map[string]any{"enabled": false}},
			wantKinds: []string{"ConfigMap", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"},
		},
		{
			name:    "several replicas need an external bus",
			values:  map[string]any{"replicaCount": 2},
			wantErr: "external NATS",
		},
		{
			name:    "webhook credentials are required",
			values:  map[string]any{"secrets": map[string]any{"alertmanagerBearerTokenKey": ""}},
			wantErr: "unauthenticated",
		},
		{
			name: "configuration in a Secret (RPC URLs with API keys)",
			values: map[string]any{
				"configAsSecret": true,
				"config": map[string]any{"solana": map[string]any{
					"endpoints": []any{map[string]any{"name": "helius", "url": "https://mainnet.helius-rpc.com/?api-key=k", "ws_url": "wss://mainnet.helius-rpc.com/?api-key=k", "role": "primary"}},
				}},
			},
			wantKinds: []string{"Deployment", "PersistentVolumeClaim", "Role", "RoleBinding", "Secret", "Service", "ServiceAccount"},
		},
		{
			name:    "basic auth needs a username",
			values:  map[string]any{"secrets": map[string]any{"alertmanagerBearerTokenKey": "", "alertmanagerPasswordKey": "am-password"}},
			wantErr: "config.alertmanager.username",
		},
		{
			name:    "unauthenticated webhooks cannot be allowed on the pod's address",
			values:  map[string]any{"config": map[string]any{"alertmanager": map[string]any{"allow_unauthenticated": true}}},
			wantErr: "allow_unauthenticated",
		},
		{
			name:    "remediation rights are never bound to the default ServiceAccount",
			values:  map[string]any{"serviceAccount": map[string]any{"create": false}},
			wantErr: "default ServiceAccount",
		},
		{
			name: "every secret from existing Secrets, routing keys and webhook headers mounted whole",
			values: map[string]any{
				"config": map[string]any{
					"alertmanager": map[string]any{"url": "http://alertmanager.monitoring.svc:9093", "api_username": "incidentbot"},
					"actions":      map[string]any{"webhook": map[string]any{"allow": []any{"https://hooks.example.com/deploy/"}}},
				},
				"secrets": map[string]any{
					"slackSigningSecretKey": "slack-signing-secret", "slackAppTokenKey": "slack-app-token",
					"pagerdutyWebhookSecretKey": "pd-webhook-secret", "pagerdutyWebhookSecretPreviousKey": "pd-webhook-secret-previous",
					"redisURLKey": "redis-url", "alertmanagerAPIPasswordKey": "am-api-password",
				},
				"pagerdutyRoutingKeys": map[string]any{"existingSecret": "incidentbot-pagerduty-keys"},
				"webhookSecrets":       map[string]any{"existingSecret": "incidentbot-webhook-headers"},
			},
			wantKinds: []string{"ConfigMap", "Deployment", "PersistentVolumeClaim", "Role", "RoleBinding", "Service", "ServiceAccount"},
			check: func(t *testing.T, m manifests, _ map[string]any) {
				d := m.one(t, "Deployment")
				c := container(t, d)
				env := map[string]string{}
				for _, e := range get(c, "env").([]any) {
					env[str(e, "name")] = str(e, "value")
				}
				for name, want := range map[string]string{
					"INCIDENTBOT_SLACK_SIGNING_SECRET_FILE":              "/etc/incidentbot/secrets/slack-signing-secret",
					"INCIDENTBOT_SLACK_APP_TOKEN_FILE":                   "/etc/incidentbot/secrets/slack-app-token",
					"INCIDENTBOT_PAGERDUTY_WEBHOOK_SECRET_FILE":          "/etc/incidentbot/secrets/pd-webhook-secret",
					"INCIDENTBOT_PAGERDUTY_WEBHOOK_SECRET_PREVIOUS_FILE": "/etc/incidentbot/secrets/pd-webhook-secret-previous",
					"INCIDENTBOT_REDIS_URL_FILE":                         "/etc/incidentbot/secrets/redis-url",
					"INCIDENTBOT_ALERTMANAGER_API_PASSWORD_FILE":         "/etc/incidentbot/secrets/am-api-password",
					"INCIDENTBOT_PAGERDUTY_ROUTING_KEYS_DIR":             "/etc/incidentbot/pagerduty-routing-keys",
					"INCIDENTBOT_ACTIONS_WEBHOOK_SECRETS_DIR":            "/etc/incidentbot/webhook-headers",
				} {
					if env[name] != want {
						t.Errorf("env %s = %q, want %q", name, env[name], want)
					}
				}
				var items []string
				for _, it := range get(volume(t, d, "secrets"), "secret", "items").([]any) {
					items = append(items, str(it, "key"))
				}
				for _, k := range []string{"slack-signing-secret", "slack-app-token", "pd-webhook-secret", "pd-webhook-secret-previous", "redis-url", "am-api-password"} {
					if !slices.Contains(items, k) {
						t.Errorf("secrets volume items %v: want %s", items, k)
					}
				}
				// The directories are whole Secrets: every key a name.
				for vol, secret := range map[string]string{"pagerduty-routing-keys": "incidentbot-pagerduty-keys", "webhook-secrets": "incidentbot-webhook-headers"} {
					v := volume(t, d, vol)
					if str(v, "secret", "secretName") != secret || get(v, "secret", "items") != nil {
						t.Errorf("volume %s: %v, want all of Secret %s", vol, v, secret)
					}
				}
				mounts := map[string]string{}
				for _, vm := range get(c, "volumeMounts").([]any) {
					mounts[str(vm, "name")] = str(vm, "mountPath")
				}
				if mounts["pagerduty-routing-keys"] != env["INCIDENTBOT_PAGERDUTY_ROUTING_KEYS_DIR"] || mounts["webhook-secrets"] != env["INCIDENTBOT_ACTIONS_WEBHOOK_SECRETS_DIR"] {
					t.Errorf("mounts %v do not match the directories in the environment", mounts)
				}
			},
		},
		{
			name: "secrets created by the chart",
			values: map[string]any{
				"secrets": map[string]any{
					"existingSecret": "", "create": true, "slackSigningSecretKey": "slack-signing-secret",
					"values": map[string]any{"alertmanager-bearer-token": "t0ken", "slack-token": "xoxb-1", "pagerduty-routing-key": "0123456789abcdef0123456789abcdef", "slack-signing-secret": "s1gn"},
				},
				"pagerdutyRoutingKeys": map[string]any{"create": true, "keys": map[string]any{"payments": "fedcba9876543210fedcba9876543210"}},
				"webhookSecrets":       map[string]any{"create": true, "values": map[string]any{"deploy-token": "Bearer abc"}},
			},
			wantKinds: []string{"ConfigMap", "Deployment", "PersistentVolumeClaim", "Role", "RoleBinding", "Secret", "Secret", "Secret", "Service", "ServiceAccount"},
			check: func(t *testing.T, m manifests, _ map[string]any) {
				d := m.one(t, "Deployment")
				byName := map[string]map[string]any{}
				for _, sec := range m.all("Secret") {
					byName[str(sec, "metadata", "name")] = sec
				}
				for vol, want := range map[string]string{"secrets": "incidentbot-secrets", "pagerduty-routing-keys": "incidentbot-pagerduty-routing-keys", "webhook-secrets": "incidentbot-webhook-secrets"} {
					name := str(volume(t, d, vol), "secret", "secretName")
					if name != want || byName[name] == nil {
						t.Errorf("volume %s mounts Secret %q, want the chart's %s", vol, name, want)
					}
				}
				if str(byName["incidentbot-secrets"], "stringData", "slack-signing-secret") != "s1gn" ||
					str(byName["incidentbot-pagerduty-routing-keys"], "stringData", "payments") != "fedcba9876543210fedcba9876543210" ||
					str(byName["incidentbot-webhook-secrets"], "stringData", "deploy-token") != "Bearer abc" {
					t.Error("the created Secrets do not hold the values given")
				}
				if str(d, "spec", "template", "metadata", "annotations", "checksum/secrets") == "" {
					t.Error("no checksum/secrets annotation: a changed secret would not roll the pods")
				}
				for _, e := range get(container(t, d), "env").([]any) {
					for _, v := range []string{"t0ken", "xoxb-1", "s1gn", "Bearer abc"} {
						if strings.Contains(str(e, "value"), v) {
							t.Errorf("env %s holds a secret value", str(e, "name"))
						}
					}
				}
			},
		},
		{
			name:    "a created Secret must hold every key named",
			values:  map[string]any{"secrets": map[string]any{"create": true, "values": map[string]any{"alertmanager-bearer-token": "t"}}},
			wantErr: `secrets.values has no "slack-token"`,
		},
		{
			name:    "API basic auth needs a username",
			values:  map[string]any{"secrets": map[string]any{"alertmanagerAPIPasswordKey": "am-api-password"}},
			wantErr: "config.alertmanager.api_username",
		},
		{
			name: "HTTP limits from values",
			values: map[string]any{"config": map[string]any{"http": map[string]any{
				"read_header_timeout": "5s", "read_timeout": "20s", "idle_timeout": "30s", "max_header_bytes": 32768, "max_connections": 256,
			}}},
			wantKinds: []string{"ConfigMap", "Deployment", "PersistentVolumeClaim", "Role", "RoleBinding", "Service", "ServiceAccount"},
			check: func(t *testing.T, m manifests, _ map[string]any) {
				cfg, err := config.Parse("config.yaml", []byte(str(m.one(t, "ConfigMap"), "data", "config.yaml")))
				if err != nil {
					t.Fatal(err)
				}
				want := config.HTTPConfig{ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 20 * time.Second, IdleTimeout: 30 * time.Second, MaxHeaderBytes: 32768, MaxConnections: 256}
				if cfg.HTTP != want {
					t.Errorf("http = %+v, want %+v", cfg.HTTP, want)
				}
			},
		},
		{
			name: "basic auth and secret keys that read as numbers",
			values: map[string]any{
				"config":  map[string]any{"alertmanager": map[string]any{"username": "alertmanager"}},
				"secrets": map[string]any{"alertmanagerBearerTokenKey": "", "alertmanagerPasswordKey": "true", "slackTokenKey": "2024"},
			},
			wantKinds: []string{"ConfigMap", "Deployment", "PersistentVolumeClaim", "Role", "RoleBinding", "Service", "ServiceAccount"},
			check: func(t *testing.T, m manifests, _ map[string]any) {
				var keys []any
				for _, v := range get(m.one(t, "Deployment"), "spec", "template", "spec", "volumes").([]any) {
					if get(v, "name") == "secrets" {
						for _, it := range get(v, "secret", "items").([]any) {
							keys = append(keys, get(it, "key"), get(it, "path"))
						}
					}
				}
				for _, want := range []string{"true", "2024"} {
					if !slices.Contains(keys, any(want)) {
						t.Errorf("secret items %#v: want the key %q as a string", keys, want)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			values := mergeValues(chart.values, tt.values)
			m, err := chart.render(values)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("render: %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			var kinds []string
			for _, doc := range m {
				kinds = append(kinds, str(doc, "kind"))
			}
			slices.Sort(kinds)
			if !slices.Equal(kinds, tt.wantKinds) {
				t.Errorf("kinds = %v, want %v", kinds, tt.wantKinds)
			}
			checkCommon(t, m, values)
			checkRole(t, m, values, registry)
			if tt.check != nil {
				tt.check(t, m, values)
			}
		})
	}
}

// checkChartRules compares the chart's PrometheusRule with the
// incidentbot.rules group of prometheus/rules.yml.
func checkChartRules(t *testing.T, pr map[string]any) {
	t.Helper()
	var plain struct {
		Groups []ruleGroup `yaml:"groups"`
	}
	decodeFile(t, "prometheus/rules.yml", &plain)
	var want ruleGroup
	for _, g := range plain.Groups {
		if g.Name == "incidentbot.rules" {
			want = g
		}
	}
	b, err := yaml.Marshal(get(pr, "spec"))
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Groups []ruleGroup `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	if len(spec.Groups) != 1 || !reflect.DeepEqual(spec.Groups[0], want) {
		t.Errorf("chart PrometheusRule groups:\n%+v\nwant the incidentbot.rules group of prometheus/rules.yml:\n%+v", spec.Groups, want)
	}
}

// TestHelmRBACMatchesActions keeps the chart's per-action rules equal to
// what each action declares it needs (`incidentbot actions`).
func TestHelmRBACMatchesActions(t *testing.T) {
	chart := loadChart(t)
	inChart := get(chart.values, "rbac", "actions").(map[string]any)
	for _, a := range actions.Default().All() {
		d := a.Describe()
		entry, ok := inChart[d.Name].(map[string]any)
		if len(d.RBAC) == 0 {
			if ok {
				t.Errorf("rbac.actions.%s: the action needs no Kubernetes access", d.Name)
			}
			continue
		}
		if !ok {
			t.Errorf("rbac.actions.%s: missing; the action needs %v", d.Name, d.RBAC)
			continue
		}
		want := permissionTriples(d.RBAC)
		got := ruleTriples(t, entry["rules"])
		if !slices.Equal(got, want) {
			t.Errorf("rbac.actions.%s.rules grant %v, the action needs %v", d.Name, got, want)
		}
		delete(inChart, d.Name)
	}
	for name := range inChart {
		t.Errorf("rbac.actions.%s: no such action with Kubernetes needs", name)
	}
}

func checkCommon(t *testing.T, m manifests, values map[string]any) {
	t.Helper()
	d := m.one(t, "Deployment")
	pod := get(d, "spec", "template", "spec")
	if get(pod, "securityContext", "runAsNonRoot") != true {
		t.Error("pod securityContext.runAsNonRoot: want true")
	}
	c := container(t, d)
	if get(c, "securityContext", "readOnlyRootFilesystem") != true || get(c, "securityContext", "allowPrivilegeEscalation") != false {
		t.Error("container securityContext: want readOnlyRootFilesystem and no privilege escalation")
	}
	if p := str(c, "livenessProbe", "httpGet", "path"); p != "/healthz" {
		t.Errorf("livenessProbe path %q, want /healthz", p)
	}
	if p := str(c, "startupProbe", "httpGet", "path"); p != "/healthz" {
		t.Errorf("startupProbe path %q, want /healthz (liveness must wait for the bus to recover)", p)
	}
	if p := str(c, "readinessProbe", "httpGet", "path"); p != "/readyz" {
		t.Errorf("readinessProbe path %q, want /readyz", p)
	}
	if !slices.Contains(strs(c, "args"), "--listen=0.0.0.0:8080") {
		t.Errorf("args %v: want --listen=0.0.0.0:8080", strs(c, "args"))
	}
	webhookAuth := "INCIDENTBOT_ALERTMANAGER_BEARER_TOKEN_FILE"
	if get(values, "secrets", "alertmanagerBearerTokenKey") == "" {
		webhookAuth = "INCIDENTBOT_ALERTMANAGER_PASSWORD_FILE"
	}
	for _, name := range []string{webhookAuth, "INCIDENTBOT_SLACK_TOKEN_FILE", "INCIDENTBOT_PAGERDUTY_ROUTING_KEY_FILE"} {
		if !slices.Contains(envNames(c), name) {
			t.Errorf("env %v: want %s", envNames(c), name)
		}
	}
	for _, e := range get(c, "env").([]any) {
		if v := str(e, "value"); strings.Contains(v, "secret") && !strings.HasPrefix(v, "/etc/incidentbot/secrets/") {
			t.Errorf("env %s: a secret value in the environment", str(e, "name"))
		}
	}

	// The configuration file, from the ConfigMap or (configAsSecret) the
	// Secret the config volume mounts.
	kind, field, ref := "ConfigMap", "data", []string{"configMap", "name"}
	if get(values, "configAsSecret") == true {
		kind, field, ref = "Secret", "stringData", []string{"secret", "secretName"}
	}
	cm := m.one(t, kind)
	for _, v := range get(pod, "volumes").([]any) {
		if get(v, "name") == "config" && str(v, ref...) != str(cm, "metadata", "name") {
			t.Errorf("config volume %v does not mount the %s %s", v, kind, str(cm, "metadata", "name"))
		}
	}
	data := str(cm, field, "config.yaml")
	if _, err := config.Parse("configmap config.yaml", []byte(data)); err != nil {
		t.Fatalf("config.yaml from the ConfigMap: %v", err)
	}
	// Validated as the pod's serve validates it: the container's
	// environment and --listen on top, its secret files not read here.
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgFile, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, e := range get(c, "env").([]any) {
		if v, ok := get(e, "value").(string); ok {
			env = append(env, str(e, "name")+"="+v)
		}
	}
	cfg, err := config.Options{SkipSecrets: true, Overrides: []func(*config.Config){func(c *config.Config) { c.Listen = "0.0.0.0:8080" }}}.Load(cfgFile, env)
	if err != nil {
		t.Errorf("config.yaml from the ConfigMap, with the pod's environment: %v", err)
	}
	if cfg.Bus.URL != str(values, "config", "bus", "url") {
		t.Errorf("bus.url %q, want the value's %q", cfg.Bus.URL, str(values, "config", "bus", "url"))
	}
}

// checkRole compares the Roles' rules with what the enabled actions need.
func checkRole(t *testing.T, m manifests, values map[string]any, reg *actions.Registry) {
	t.Helper()
	var want []string
	for _, a := range reg.All() {
		d := a.Describe()
		if get(values, "rbac", "actions", d.Name, "enabled") == true {
			want = append(want, permissionTriples(d.RBAC)...)
		}
	}
	want = sortedUnique(want)
	namespaces := get(values, "rbac", "namespaces").([]any)
	roles := m.all("Role")
	if len(want) == 0 {
		if len(roles) != 0 {
			t.Errorf("%d Roles with no action enabled", len(roles))
		}
		return
	}
	if len(roles) != len(namespaces) {
		t.Fatalf("%d Roles, want one per namespace %v", len(roles), namespaces)
	}
	for i, r := range roles {
		if ns := str(r, "metadata", "namespace"); ns != namespaces[i] {
			t.Errorf("Role %d in namespace %q, want %q", i, ns, namespaces[i])
		}
		if got := sortedUnique(ruleTriples(t, get(r, "rules"))); !slices.Equal(got, want) {
			t.Errorf("Role in %s grants %v, the enabled actions need exactly %v", str(r, "metadata", "namespace"), got, want)
		}
	}
	for _, b := range m.all("RoleBinding") {
		if str(b, "roleRef", "name") != "incidentbot" || str(b, "subjects", "0", "name") != "incidentbot" ||
			str(b, "subjects", "0", "namespace") != "incidentbot" {
			t.Errorf("RoleBinding %v: want Role incidentbot bound to ServiceAccount incidentbot/incidentbot", b)
		}
	}
}

// permissionTriples flattens permissions to sorted "group resource verb".
func permissionTriples(ps []actions.Permission) []string {
	var out []string
	for _, p := range ps {
		for _, r := range p.Resources {
			for _, v := range p.Verbs {
				out = append(out, p.APIGroup+" "+r+" "+v)
			}
		}
	}
	return sortedUnique(out)
}

// ruleTriples flattens Kubernetes PolicyRules to sorted "group resource verb".
func ruleTriples(t *testing.T, rules any) []string {
	t.Helper()
	list, ok := rules.([]any)
	if !ok {
		t.Fatalf("rules: %T, want a list", rules)
	}
	var out []string
	for _, r := range list {
		for _, g := range strs(r, "apiGroups") {
			for _, res := range strs(r, "resources") {
				for _, v := range strs(r, "verbs") {
					out = append(out, g+" "+res+" "+v)
				}
			}
		}
	}
	return sortedUnique(out)
}

func sortedUnique(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// chart is the Helm chart under deploy/helm/incidentbot.
type chart struct {
	meta   map[string]any
	values map[string]any
	tpl    *template.Template
	files  []string
}

// manifests are the rendered Kubernetes objects.
type manifests []map[string]any

func (m manifests) all(kind string) []map[string]any {
	var out []map[string]any
	for _, d := range m {
		if d["kind"] == kind {
			out = append(out, d)
		}
	}
	return out
}

func (m manifests) one(t *testing.T, kind string) map[string]any {
	t.Helper()
	all := m.all(kind)
	if len(all) != 1 {
		t.Fatalf("%d %s objects, want 1", len(all), kind)
	}
	return all[0]
}

// loadChart reads Chart.yaml, values.yaml and the templates. Helm is not
// needed: the templates use only the Helm/Sprig functions in helmFuncs,
// which behave as Helm's do for the arguments the chart passes.
func loadChart(t *testing.T) *chart {
	t.Helper()
	c := &chart{}
	decodeFile(t, filepath.Join(chartDir, "Chart.yaml"), &c.meta)
	decodeFile(t, filepath.Join(chartDir, "values.yaml"), &c.values)
	for _, k := range []string{"apiVersion", "name", "version", "appVersion"} {
		if c.meta[k] == nil {
			t.Fatalf("Chart.yaml: %s missing", k)
		}
	}
	if c.meta["apiVersion"] != "v2" {
		t.Errorf("Chart.yaml apiVersion %v, want v2", c.meta["apiVersion"])
	}
	c.tpl = template.New("chart").Option("missingkey=zero")
	c.tpl.Funcs(helmFuncs(c.tpl))
	paths, err := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		name := "incidentbot/templates/" + filepath.Base(p)
		if _, err := c.tpl.New(name).Parse(string(b)); err != nil {
			t.Fatalf("parse %s: %v", p, err)
		}
		c.files = append(c.files, name)
	}
	if len(c.files) < 8 {
		t.Fatalf("%d templates, want at least 8", len(c.files))
	}
	return c
}

// render executes every template but the helpers as `helm template` would
// for a release named incidentbot in namespace incidentbot.
func (c *chart) render(values map[string]any) (manifests, error) {
	data := map[string]any{
		"Values":   values,
		"Chart":    map[string]any{"Name": c.meta["name"], "Version": c.meta["version"], "AppVersion": c.meta["appVersion"]},
		"Release":  map[string]any{"Name": "incidentbot", "Namespace": "incidentbot", "Service": "Helm"},
		"Template": map[string]any{"BasePath": "incidentbot/templates"},
	}
	var out manifests
	for _, name := range c.files {
		if strings.HasPrefix(filepath.Base(name), "_") {
			continue
		}
		var b bytes.Buffer
		if err := c.tpl.ExecuteTemplate(&b, name, data); err != nil {
			return nil, err
		}
		text := strings.ReplaceAll(b.String(), "<no value>", "")
		if strings.HasSuffix(name, ".txt") {
			continue
		}
		dec := yaml.NewDecoder(strings.NewReader(text))
		for {
			var doc map[string]any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s renders invalid YAML: %w\n%s", name, err, text)
			}
			if doc == nil {
				continue
			}
			for _, k := range []string{"apiVersion", "kind"} {
				if doc[k] == nil {
					return nil, fmt.Errorf("%s: a document without %s:\n%s", name, k, text)
				}
			}
			if get(doc, "metadata", "name") == nil {
				return nil, fmt.Errorf("%s: %v without metadata.name", name, doc["kind"])
			}
			out = append(out, doc)
		}
	}
	return out, nil
}

// helmFuncs are the Helm and Sprig functions the chart uses.
func helmFuncs(root *template.Template) template.FuncMap {
	return template.FuncMap{
		"include": func(name string, data any) (string, error) {
			var b strings.Builder
			err := root.ExecuteTemplate(&b, name, data)
			return b.String(), err
		},
		"toYaml": func(v any) (string, error) {
			var b bytes.Buffer
			enc := yaml.NewEncoder(&b)
			enc.SetIndent(2)
			if err := enc.Encode(v); err != nil {
				return "", err
			}
			return strings.TrimSuffix(b.String(), "\n"), nil
		},
		"indent":  indent,
		"nindent": func(n int, s string) string { return "\n" + indent(n, s) },
		"quote":   func(v any) string { return strconv.Quote(fmt.Sprint(v)) },
		"default": func(d any, given ...any) any {
			if len(given) == 0 || empty(given[0]) {
				return d
			}
			return given[0]
		},
		"trunc": func(n int, s string) string {
			if len(s) > n {
				return s[:n]
			}
			return s
		},
		"trimSuffix": func(suffix, s string) string { return strings.TrimSuffix(s, suffix) },
		"contains":   func(sub, s string) bool { return strings.Contains(s, sub) },
		"replace":    func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		"sha256sum": func(s string) string {
			h := sha256.Sum256([]byte(s))
			return hex.EncodeToString(h[:])
		},
		"fail": func(msg string) (string, error) { return "", errors.New(msg) },
		"list": func(v ...any) []any { return v },
		"int": func(v any) (int, error) {
			switch n := v.(type) {
			case int:
				return n, nil
			case int64:
				return int(n), nil
			case float64:
				return int(n), nil
			case string:
				return strconv.Atoi(n)
			case nil:
				return 0, nil
			}
			return 0, fmt.Errorf("int: %T", v)
		},
	}
}

func indent(n int, s string) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}

func empty(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String, reflect.Map, reflect.Slice, reflect.Array:
		return rv.Len() == 0
	case reflect.Bool:
		return !rv.Bool()
	case reflect.Int, reflect.Int64:
		return rv.Int() == 0
	case reflect.Float64:
		return rv.Float() == 0
	}
	return false
}

// mergeValues deep-merges override into a copy of base, as `helm -f` does.
func mergeValues(base, override map[string]any) map[string]any {
	out := make(map[string]any, len(base))
	for k, v := range base {
		if m, ok := v.(map[string]any); ok {
			v = mergeValues(m, nil)
		}
		out[k] = v
	}
	for k, v := range override {
		bm, ok1 := out[k].(map[string]any)
		om, ok2 := v.(map[string]any)
		if ok1 && ok2 {
			out[k] = mergeValues(bm, om)
			continue
		}
		out[k] = v
	}
	return out
}

// get walks maps by key and lists by index; nil when absent.
func get(v any, path ...string) any {
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func str(v any, path ...string) string {
	s, _ := get(v, path...).(string)
	return s
}

func strs(v any, path ...string) []string {
	var out []string
	list, _ := get(v, path...).([]any)
	for _, x := range list {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

func container(t *testing.T, deployment map[string]any) any {
	t.Helper()
	cs, _ := get(deployment, "spec", "template", "spec", "containers").([]any)
	if len(cs) != 1 {
		t.Fatalf("%d containers, want 1", len(cs))
	}
	return cs[0]
}

func volume(t *testing.T, deployment map[string]any, name string) any {
	t.Helper()
	list, _ := get(deployment, "spec", "template", "spec", "volumes").([]any)
	for _, v := range list {
		if str(v, "name") == name {
			return v
		}
	}
	t.Fatalf("no volume %q", name)
	return nil
}

func envNames(c any) []string {
	var out []string
	list, _ := get(c, "env").([]any)
	for _, e := range list {
		out = append(out, str(e, "name"))
	}
	return out
}

func readYAMLDocs(t *testing.T, path string) []any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []any
	for {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// decodeFile decodes one YAML file into v; struct targets name only the
// keys a test checks.
func decodeFile(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestDockerfileMatchesChart: the image runs as the user the chart's
// securityContext names, listens on the chart's containerPort, keeps its
// data where the chart mounts it, and builds a static binary (distroless
// static has no libc).
func TestDockerfileMatchesChart(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	var values struct {
		ContainerPort      int `yaml:"containerPort"`
		PodSecurityContext struct {
			RunAsUser  int `yaml:"runAsUser"`
			RunAsGroup int `yaml:"runAsGroup"`
		} `yaml:"podSecurityContext"`
	}
	decodeFile(t, chartDir+"/values.yaml", &values)
	deployment, err := os.ReadFile(chartDir + "/templates/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf("USER %d:%d", values.PodSecurityContext.RunAsUser, values.PodSecurityContext.RunAsGroup),
		fmt.Sprintf("EXPOSE %d", values.ContainerPort),
		fmt.Sprintf("--listen=0.0.0.0:%d", values.ContainerPort),
		"CGO_ENABLED=0 go build",
		"./cmd/incidentbot",
		"-X main.version=${VERSION}",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile does not contain %q", want)
		}
	}
	const dataDir = "/var/lib/incidentbot"
	if !strings.Contains(df, "--data-dir="+dataDir) || !strings.Contains(string(deployment), "--data-dir="+dataDir) {
		t.Errorf("the image and the chart disagree on the data dir (want %s in both)", dataDir)
	}
}
