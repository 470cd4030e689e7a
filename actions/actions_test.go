package actions

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/rpcview"
	"github.com/incidentbot/incidentbot/signal"
	"github.com/incidentbot/incidentbot/strictyaml"
)

func TestRegistry(t *testing.T) {
	r, err := NewRegistry(Builtin()...)
	if err != nil {
		t.Fatal(err)
	}
	names := r.Names()
	if !slices.IsSorted(names) || len(names) != len(Builtin()) {
		t.Errorf("names %v", names)
	}
	for _, n := range []string{"solana.switch_rpc", "kubernetes.set_env", "kubernetes.rollout_restart", "kubernetes.scale",
		"kubernetes.rollback", "kubernetes.bluegreen_switch", "featureflag.disable", "featureflag.enable", "featureflag.maintenance", "alertmanager.silence",
		"webhook", "solana.program_rollback", "manual"} {
		if _, ok := r.Lookup(n); !ok {
			t.Errorf("missing %s", n)
		}
	}
	if _, ok := r.Lookup("nope"); ok {
		t.Error("found nope")
	}
	if _, err := NewRegistry(Scale, Manual, Scale); err == nil || !strings.Contains(err.Error(), `"kubernetes.scale": duplicate`) {
		t.Errorf("duplicate: err = %v", err)
	}
}

// TestDescriptions keeps each action's self-description true: every
// parameter struct key is described, every example loads.
func TestDescriptions(t *testing.T) {
	for _, a := range Default().All() {
		d := a.Describe()
		t.Run(d.Name, func(t *testing.T) {
			if d.Description == "" || d.Example == "" {
				t.Error("missing description or example")
			}
			var described []string
			for _, p := range d.Params {
				described = append(described, p.Name)
				if p.Type == "" || p.Description == "" {
					t.Errorf("param %s: missing type or description", p.Name)
				}
			}
			keys := a.(interface{ paramKeys() []string }).paramKeys()
			if !slices.Equal(described, keys) {
				t.Errorf("described params %v, struct keys %v", described, keys)
			}
			var step struct {
				ID     string    `yaml:"id"`
				Title  string    `yaml:"title"`
				Action string    `yaml:"action"`
				Params yaml.Node `yaml:"params"`
			}
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte(d.Example), &doc); err != nil {
				t.Fatal(err)
			}
			if err := strictyaml.Decode(&doc, "", &step); err != nil {
				t.Fatal(err)
			}
			if step.Action != d.Name {
				t.Errorf("example action %q", step.Action)
			}
			if _, err := a.Load(&step.Params, "example"); err != nil {
				t.Errorf("example does not load: %v", err)
			}
		})
	}
}

type fakeView struct {
	v   rpcview.View
	err error
}

func (f fakeView) View(context.Context) (rpcview.View, error) { return f.v, f.err }

var testView = rpcview.View{Endpoints: []rpcview.Endpoint{
	{Name: "primary", URL: "https://primary.example", Role: rpcview.RolePrimary, Healthy: true},
	{Name: "backup-1", URL: "https://backup.example", Role: rpcview.RoleBackup, Healthy: true, SlotLag: 2},
	{Name: "backup-2", URL: "https://b2.example", Role: rpcview.RoleBackup, Healthy: true, SlotLag: 9},
}}

func load(t *testing.T, name, params string) (Bound, error) {
	t.Helper()
	a, ok := Default().Lookup(name)
	if !ok {
		t.Fatalf("no action %s", name)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(params), &doc); err != nil {
		t.Fatal(err)
	}
	n := &doc
	if len(doc.Content) > 0 {
		n = doc.Content[0]
	} else {
		n = &yaml.Node{Kind: yaml.MappingNode, Line: 1}
	}
	return a.Load(n, "remediation[0]")
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		action, params string
		want           []string
	}{
		{"kubernetes.scale", "namespace: solana-dapps\ndeployment: api\nreplicas: 12\nmax_replicas: 10\n",
			[]string{"line 3: remediation[0].params.replicas: 12 exceeds max_replicas 10"}},
		{"kubernetes.scale", "namespace: solana-dapps\ndeployment: api\nreplicas: 5\n",
			[]string{"remediation[0].params.max_replicas: required"}},
		{"kubernetes.scale", "namespace: solana-dapps\ndeployment: api\nreplicas: five\nmax_replicas: 10\n",
			[]string{"line 3: remediation[0].params.replicas: expected an integer, got a string"}},
		{"kubernetes.scale", "namespace: Solana_Dapps\ndeployment: api\nreplica: 5\nmax_replicas: 10\n",
			[]string{`line 3: remediation[0].params.replica: unknown key "replica" (did you mean "replicas"?)`,
				`line 1: remediation[0].params.namespace: "Solana_Dapps" is not a valid namespace name`}},
		{"kubernetes.set_env", "namespace: x\ndeployment: api\nname: 1BAD\nvalue: v\n",
			[]string{`line 3: remediation[0].params.name: "1BAD" is not a valid environment variable name`}},
		{"kubernetes.set_env", "namespace: x\ndeployment: '{{ .Labels.x '\nname: A\nvalue: v\n",
			[]string{"line 2: remediation[0].params.deployment: invalid template"}},
		{"featureflag.disable", "flag: Enable-Escrow\n",
			[]string{`line 1: remediation[0].params.flag: "Enable-Escrow" is not a valid feature flag name`}},
		{"featureflag.disable", "",
			[]string{`remediation[0].params.flag: required`}},
		{"alertmanager.silence", "matchers: ['alertname=~\"(\"']\nduration: 48h\n",
			[]string{"line 1: remediation[0].params.matchers[0]: invalid matcher", "line 2: remediation[0].params.duration: 48h0m0s exceeds the maximum of 24h0m0s"}},
		{"alertmanager.silence", "matchers: []\nduration: soon\n",
			[]string{"remediation[0].params.matchers: at least one matcher", `line 2: remediation[0].params.duration: invalid duration "soon"`}},
		{"webhook", "url: 'https://u:p@hooks.example.com/x'\nheaders: {Host: x}\nsecret_headers: {X-Token: 'not a name'}\n",
			[]string{`line 1: remediation[0].params.url: "https://<redacted>@hooks.example.com/x" carries user information`,
				`line 2: remediation[0].params.headers: header "Host" is set by the bot`,
				`line 3: remediation[0].params.secret_headers: "not a name" is not a secret name`}},
		{"webhook", "body: {a: b}\n", []string{"remediation[0].params.url: required"}},
		{"solana.program_rollback", "program: not-base58!\nbuffer: 9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin\n",
			[]string{`line 1: remediation[0].params.program: "not-base58!" is not a valid program id`}},
		{"solana.switch_rpc", "namespace: solana-dapps\ndeployment: api\nurl: backup\n",
			[]string{`line 3: remediation[0].params.url: "backup" is not an http(s) URL`}},
		{"kubernetes.bluegreen_switch", "namespace: a\nservice: api\nfrom: blue\nto: blue\n",
			[]string{`line 4: remediation[0].params.to: equals from`}},
		{"manual", "text: true\n", []string{"line 1: remediation[0].params.text: expected a string"}},
		{"manual", "- a\n", []string{"line 1: remediation[0].params: expected a mapping, got a list"}},
	}
	for _, tt := range tests {
		t.Run(tt.action+"/"+tt.want[0], func(t *testing.T) {
			_, err := load(t, tt.action, tt.params)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nwant it to contain %q", err, w)
				}
			}
			for _, e := range strictyaml.Flatten(err) {
				if e.Line == 0 || !strings.HasPrefix(e.Path, "remediation[0].params") {
					t.Errorf("unpositioned error %+v", e)
				}
			}
		})
	}
}

func TestPlan(t *testing.T) {
	data := PlanData{
		Source: "alertmanager", Type: "alertmanager.alert",
		Labels: map[string]string{"alertname": "RPCEndpointDown", "namespace": "solana-dapps", "endpoint": "primary", "app": "Bad_Name"},
		Fields: map[string]any{"healthiest_backup": map[string]any{"name": "backup-9", "url": "https://b9.example/?api-key=abc"}},
		RPC:    fakeView{v: testView},
	}
	noView := data
	noView.RPC = fakeView{err: rpcview.ErrNoView}
	noBackup := noView
	noBackup.Fields = nil
	nilView := noBackup
	nilView.RPC = nil
	tests := []struct {
		name, action, params string
		data                 PlanData
		want, wantErr        string
	}{
		{"switch to healthiest", "solana.switch_rpc", "namespace: solana-dapps\ndeployment: api\nurl: healthiest_backup\n", data,
			`deployment solana-dapps/api: set SOLANA_RPC_URL → https://backup.example (healthiest backup "backup-1", lag 2 slots)`, ""},
		{"switch from fields when no view", "solana.switch_rpc", "namespace: solana-dapps\ndeployment: api\nurl: healthiest_backup\n", noView,
			`deployment solana-dapps/api: set SOLANA_RPC_URL → https://b9.example/?api-key=<redacted> (healthiest backup "backup-9" as reported when the alert fired; live view unavailable: no RPC view yet`, ""},
		{"switch without any backup", "solana.switch_rpc", "namespace: solana-dapps\ndeployment: api\nurl: healthiest_backup\n", noBackup,
			"", "no healthy backup RPC endpoint to switch to: no RPC view yet"},
		{"switch with nil view", "solana.switch_rpc", "namespace: solana-dapps\ndeployment: api\nurl: healthiest_backup\n", nilView,
			"", "no RPC view: no Solana RPC watcher is configured"},
		{"switch explicit", "solana.switch_rpc", "namespace: '{{ .Labels.namespace }}'\ndeployment: api\nenv: RPC\nurl: https://user:pw@x.example/\n", data,
			`deployment solana-dapps/api: set RPC → https://<redacted>@x.example/`, ""},
		{"set env templated", "kubernetes.set_env", "namespace: '{{ .Labels.namespace }}'\ndeployment: api\ncontainer: app\nname: LOG_LEVEL\nvalue: debug\n", data,
			"deployment solana-dapps/api: set LOG_LEVEL → debug (container app)", ""},
		{"rendered name invalid", "kubernetes.rollout_restart", "namespace: solana-dapps\ndeployment: '{{ .Labels.app }}'\n", data,
			"", `deployment "{{ .Labels.app }}" rendered to "Bad_Name": "Bad_Name" is not a valid Kubernetes name`},
		{"rendered name missing", "kubernetes.rollout_restart", "namespace: solana-dapps\ndeployment: '{{ .Labels.missing }}'\n", data,
			"", `kubernetes.rollout_restart: needs label missing on the alert: add it to the PrometheusRule`},
		{"a default stands in for a missing label", "featureflag.disable", "flag: '{{ default \"enable_escrow\" .Labels.feature }}'\n", data,
			"redis: SET feature:enable_escrow false", ""},
		{"everything missing named at once", "solana.program_rollback", "program: '{{ .Labels.program_id }}'\nbuffer: '{{ .Annotations.rollback_buffer }}'\n", data,
			"", `solana.program_rollback: needs label program_id and annotation rollback_buffer on the alert: add them to the PrometheusRule`},
		{"a watcher event without the configured buffer", "solana.program_rollback", "program: '{{ .Labels.program_id }}'\nbuffer: '{{ .Annotations.rollback_buffer }}'\n",
			PlanData{Source: "solana", Type: "solana.program.upgraded", Labels: map[string]string{"program_id": "Escrow1111111111111111111111111111111111111"}},
			"", `solana.program_rollback: needs annotation rollback_buffer on the solana.program.upgraded event: set solana.programs[].rollback_buffer in the bot's configuration`},
		{"a watcher event lacks what the runbook reads", "kubernetes.rollout_restart", "namespace: solana-dapps\ndeployment: '{{ .Labels.app }}'\n",
			PlanData{Source: "solana", Type: "solana.balance.low"},
			"", `kubernetes.rollout_restart: needs label app, which solana.balance.low events do not carry: the runbook must not rely on it`},
		{"a present but invalid value is shown", "solana.program_rollback", "program: '{{ .Labels.program }}'\nbuffer: 9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin\n",
			PlanData{Source: "solana", Type: "solana.program.upgraded", Labels: map[string]string{"program": "payments"}},
			"", `program "{{ .Labels.program }}" rendered to "payments": "payments" is not a valid program id`},
		{"template exec error", "manual", "text: '{{ index .Labels 1 }}'\n", data, "", "text: render"},
		{"restart", "kubernetes.rollout_restart", "namespace: solana-dapps\ndeployment: api\n", data,
			"deployment solana-dapps/api: rollout restart", ""},
		{"scale", "kubernetes.scale", "namespace: solana-dapps\ndeployment: api\nreplicas: 5\nmax_replicas: 10\n", data,
			"deployment solana-dapps/api: scale to 5 replicas (max 10)", ""},
		{"rollback previous", "kubernetes.rollback", "namespace: solana-dapps\ndeployment: api\n", data,
			"deployment solana-dapps/api: roll back to the previous revision", ""},
		{"rollback revision", "kubernetes.rollback", "namespace: solana-dapps\ndeployment: api\nrevision: 7\n", data,
			"deployment solana-dapps/api: roll back to revision 7", ""},
		{"bluegreen", "kubernetes.bluegreen_switch", "namespace: solana-dapps\nservice: api\nfrom: blue\nto: green\n", data,
			"service solana-dapps/api: selector version blue → green", ""},
		{"feature flag", "featureflag.disable", "flag: enable_escrow\n", data,
			"redis: SET feature:enable_escrow false", ""},
		{"feature flag templated bad", "featureflag.disable", "flag: '{{ .Labels.app }}'\n", data,
			"", "is not a valid feature flag name"},
		{"silence", "alertmanager.silence", "matchers: ['alertname=\"{{ .Labels.alertname }}\"', '{env=\"prod\"}']\nduration: 2h\n", data,
			`alertmanager: silence {alertname="RPCEndpointDown", env="prod"} for 2h0m0s ("silenced by incidentbot")`, ""},
		{"program rollback", "solana.program_rollback", "program: Escrow1111111111111111111111111111111111111\nbuffer: 9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin\n", data,
			"program Escrow1111111111111111111111111111111111111 on mainnet-beta: upgrade from staged buffer 9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin", ""},
		{"manual", "manual", "text: 'Notify RPC provider about {{ .Labels.endpoint }}'\n", data,
			"manual: Notify RPC provider about primary", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := load(t, tt.action, tt.params)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			got, err := b.Plan(ctx, tt.data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("err %q is not one line", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got, tt.want) {
				t.Errorf("plan %q\nwant prefix %q", got, tt.want)
			}
		})
	}
}

// TestDataFromSignalWholeNumbers: watcher fields decoded from JSON are
// float64; templates must print slots and lamports as integers, and
// percent must still read a rate of exactly 1.
func TestDataFromSignalWholeNumbers(t *testing.T) {
	var sig signal.Signal
	if err := json.Unmarshal([]byte(`{"fields": {"slot": 356102417, "min_lamports": 1000000, "failure_rate": 1,
		"share": 0.25, "backup": {"lag": 2}, "list": [3]}}`), &sig); err != nil {
		t.Fatal(err)
	}
	data := DataFromSignal(sig, nil)
	tmpl := MustTemplate(`{{ .Fields.slot }} {{ default "?" .Fields.min_lamports }} {{ percent .Fields.failure_rate }} {{ percent .Fields.share }} {{ .Fields.backup.lag }} {{ index .Fields.list 0 }}`)
	got, err := tmpl.Render(data)
	if want := "356102417 1000000 100.0% 25.0% 2 3"; err != nil || got != want {
		t.Errorf("rendered %q (%v), want %q", got, err, want)
	}
	if sig.Fields["slot"] != float64(356102417) {
		t.Errorf("the signal's own fields changed: %T", sig.Fields["slot"])
	}
}

func TestTemplateRefs(t *testing.T) {
	tests := []struct {
		src  string
		want []Ref
	}{
		{"static", nil},
		{"{{ .Labels.program_id }}", []Ref{{"label", "program_id"}}},
		{`{{ default "x" .Labels.feature }} {{ .Annotations.rollback_buffer }} {{ .Labels.feature }}`,
			[]Ref{{"label", "feature"}, {"annotation", "rollback_buffer"}}},
		{`{{ if eq .Type "a" }}{{ .Fields.slot }}{{ else }}{{ .Labels.x }}{{ end }}`, []Ref{{"field", "slot"}, {"label", "x"}}},
		{`{{ with .Fields.healthiest_backup }}{{ .name }}{{ else }}{{ .Labels.endpoint }}{{ end }}`,
			[]Ref{{"field", "healthiest_backup"}, {"label", "endpoint"}}},
		{"{{ .Source }} {{ .Labels }}", nil},
	}
	for _, tt := range tests {
		got := MustTemplate(tt.src).Refs()
		if !slices.Equal(got, tt.want) {
			t.Errorf("Refs(%q) = %v, want %v", tt.src, got, tt.want)
		}
	}
}

func TestRunsTellsRunnersFromPlans(t *testing.T) {
	for name, want := range map[string]bool{"featureflag.disable": true, "kubernetes.scale": true, "solana.switch_rpc": true, "alertmanager.silence": true, "webhook": true, "manual": false} {
		a, ok := Default().Lookup(name)
		if !ok {
			t.Fatalf("no action %s", name)
		}
		if got := Runs(a); got != want {
			t.Errorf("Runs(%s) = %v, want %v", name, got, want)
		}
	}
}
