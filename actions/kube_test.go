package actions

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/incidentbot/incidentbot/internal/testenv"
	"github.com/incidentbot/incidentbot/redact"
	"github.com/incidentbot/incidentbot/rpcview"
)

// The Kubernetes actions against a real kube-apiserver with RBAC on. Each
// runs as the chart's ServiceAccount with only the rules the chart grants
// for that action, and verifies and reverts; each rule is shown needed by
// taking it away; verbs no action needs are refused.

const (
	primaryURL = "https://primary.example/?api-key=old-secret"
	backupURL  = "https://backup.example/rpc?api-key=backup-secret"
)

// kubeCase is one action's run against a fresh namespace.
type kubeCase struct {
	action, params string
	data           PlanData
	env            func(e *Env)
	// check looks at the cluster after Run (ran=true) and after Revert.
	check func(t *testing.T, admin kubernetes.Interface, ns string, ran bool)
}

func kubeCases() []kubeCase {
	rpcView := fakeView{v: rpcview.View{Endpoints: []rpcview.Endpoint{
		{Name: "primary", URL: redact.URL(primaryURL), Role: rpcview.RolePrimary},
		{Name: "backup-1", URL: redact.URL(backupURL), Role: rpcview.RoleBackup, Healthy: true, SlotLag: 1},
	}}}
	return []kubeCase{
		{action: "kubernetes.set_env", params: "namespace: NS\ndeployment: api\nname: MAINTENANCE_MODE\nvalue: \"true\"\n",
			check: func(t *testing.T, admin kubernetes.Interface, ns string, ran bool) {
				d := getDeployment(t, admin, ns)
				for _, c := range d.Spec.Template.Spec.Containers {
					v := envOf(&c, "MAINTENANCE_MODE")
					switch {
					case ran && (!v.Present || v.Value != "true"):
						t.Errorf("after run, container %s: MAINTENANCE_MODE %+v", c.Name, v)
					case !ran && c.Name == "api" && (!v.Present || v.Value != "false"):
						t.Errorf("after revert, container api: MAINTENANCE_MODE %+v, want false", v)
					case !ran && c.Name == "sidecar" && v.Present:
						t.Errorf("after revert, container sidecar: MAINTENANCE_MODE %+v, want absent", v)
					}
				}
			}},
		{action: "solana.switch_rpc", params: "namespace: NS\ndeployment: api\ncontainer: api\nurl: healthiest_backup\n",
			data: PlanData{RPC: rpcView},
			env: func(e *Env) {
				e.RPCURL = func(name string) (string, bool) {
					return map[string]string{"primary": primaryURL, "backup-1": backupURL}[name], name == "primary" || name == "backup-1"
				}
			},
			check: func(t *testing.T, admin kubernetes.Interface, ns string, ran bool) {
				want := primaryURL
				if ran {
					want = backupURL
				}
				c := getDeployment(t, admin, ns).Spec.Template.Spec.Containers[0]
				if v := envOf(&c, "SOLANA_RPC_URL"); v.Value != want {
					t.Errorf("SOLANA_RPC_URL = %q, want %q", v.Value, want)
				}
			}},
		{action: "kubernetes.rollout_restart", params: "namespace: NS\ndeployment: api\n",
			check: func(t *testing.T, admin kubernetes.Interface, ns string, ran bool) {
				if a := getDeployment(t, admin, ns).Spec.Template.Annotations[RestartedAtAnnotation]; a == "" {
					t.Errorf("no %s annotation", RestartedAtAnnotation)
				}
			}},
		{action: "kubernetes.scale", params: "namespace: NS\ndeployment: api\nreplicas: 5\nmax_replicas: 6\n",
			check: func(t *testing.T, admin kubernetes.Interface, ns string, ran bool) {
				want := int32(2)
				if ran {
					want = 5
				}
				if got := *getDeployment(t, admin, ns).Spec.Replicas; got != want {
					t.Errorf("replicas = %d, want %d", got, want)
				}
			}},
		{action: "kubernetes.rollback", params: "namespace: NS\ndeployment: api\n",
			check: func(t *testing.T, admin kubernetes.Interface, ns string, ran bool) {
				d := getDeployment(t, admin, ns)
				want := "api:v2"
				if ran {
					want = "api:v1"
				}
				if got := d.Spec.Template.Spec.Containers[0].Image; got != want {
					t.Errorf("image = %s, want %s", got, want)
				}
				if _, ok := d.Spec.Template.Labels[podTemplateHashLabel]; ok {
					t.Errorf("template labels %v carry %s", d.Spec.Template.Labels, podTemplateHashLabel)
				}
				if ran && d.Annotations["kubernetes.io/change-cause"] != "deploy v1" {
					t.Errorf("annotations %v: want revision 1's change-cause", d.Annotations)
				}
			}},
		{action: "kubernetes.bluegreen_switch", params: "namespace: NS\nservice: api\nfrom: blue\nto: green\n",
			check: func(t *testing.T, admin kubernetes.Interface, ns string, ran bool) {
				svc, err := admin.CoreV1().Services(ns).Get(t.Context(), "api", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]string{"app": "api", "version": "blue"}
				if ran {
					want["version"] = "green"
				}
				if fmt.Sprint(svc.Spec.Selector) != fmt.Sprint(want) {
					t.Errorf("selector = %v, want %v", svc.Spec.Selector, want)
				}
			}},
	}
}

func TestKubeActionsAgainstAPIServer(t *testing.T) {
	k := testenv.StartKube(t)
	admin := kubernetes.NewForConfigOrDie(k.Admin)
	bot := kubernetes.NewForConfigOrDie(k.Bot)
	chartRules := chartRBAC(t)
	ctx := t.Context()
	var n int
	newNS := func(t *testing.T) string {
		n++
		ns := fmt.Sprintf("app-%d", n)
		if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		seed(t, admin, ns)
		return ns
	}

	// prepare gives the action of c a namespace of its own with exactly
	// the chart's rules for it, and its plan resolved as the bot.
	prepare := func(t *testing.T, c kubeCase) (string, Runner, Env, Plan) {
		t.Helper()
		ns := newNS(t)
		grant(t, admin, ns, chartRules[c.action])
		b := loadKube(t, c.action, ns, c.params)
		env := Env{Kube: bot}
		if c.env != nil {
			c.env(&env)
		}
		p, err := b.Resolve(ctx, env, c.data)
		if err != nil {
			t.Fatal(err)
		}
		return ns, b, env, p
	}

	// Each action with exactly the chart's rules for it: run, verify,
	// revert, as the bot.
	for _, c := range kubeCases() {
		t.Run(c.action, func(t *testing.T) {
			ns, b, env, p := prepare(t, c)
			again, err := b.Resolve(ctx, env, c.data)
			if err != nil || again.Hash != p.Hash {
				t.Fatalf("a second Resolve gives hash %s (%v), the first %s", again.Hash, err, p.Hash)
			}
			o, err := b.Run(ctx, env, p)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("plan %q; outcome %q", p.Text, o.Detail)
			if err := b.Verify(ctx, env, p, o); err != nil {
				t.Fatal(err)
			}
			c.check(t, admin, ns, true)
			// (A rollback's Before and After are pod templates, env
			// included, as the deployment holds them.)
			shown := p.Text + o.Detail + string(p.Params)
			if c.action != "kubernetes.rollback" {
				shown += string(o.After)
			}
			if strings.Contains(shown, "-secret") {
				t.Errorf("a secret in the plan or outcome:\n%s\n%s\n%s\n%s", p.Text, o.Detail, p.Params, o.After)
			}
			r, ok := b.(Reverter)
			if c.action == "kubernetes.rollout_restart" {
				if ok {
					t.Error("a restart cannot be undone, yet it is a Reverter")
				}
				return
			}
			if !ok {
				t.Fatal("not a Reverter")
			}
			if err := r.Revert(ctx, env, p, o); err != nil {
				t.Fatal(err)
			}
			c.check(t, admin, ns, false)
			if err := b.Verify(ctx, env, p, o); err == nil {
				t.Error("Verify passes after Revert")
			}
		})
	}

	// Each rule the chart grants an action is needed: without it, the
	// action's resolve, run, verify and revert fail as forbidden.
	for _, c := range kubeCases() {
		rules := chartRules[c.action]
		for i, r := range rules {
			for _, verb := range r.Verbs {
				t.Run(fmt.Sprintf("%s without %s %s", c.action, verb, r.Resources[0]), func(t *testing.T) {
					ns := newNS(t)
					less := slices.Clone(rules)
					less[i].Verbs = slices.DeleteFunc(slices.Clone(r.Verbs), func(v string) bool { return v == verb })
					if len(less[i].Verbs) == 0 {
						less = slices.Delete(less, i, i+1)
					}
					grant(t, admin, ns, less)
					b := loadKube(t, c.action, ns, c.params)
					env := Env{Kube: bot}
					if c.env != nil {
						c.env(&env)
					}
					err := cycle(ctx, b, env, c.data)
					if !apierrors.IsForbidden(err) {
						t.Fatalf("without %s on %s: %v, want forbidden", verb, r.Resources, err)
					}
					if errors.Is(err, ErrOutcomeUnknown) {
						t.Fatalf("a refusal reported as outcome unknown: %v", err)
					}
				})
			}
		}
	}

	// The write reaches the API server and is applied, and its answer is
	// lost (the connection drops): the run's outcome is unknown, not
	// failed, and the change is there for the person who checks.
	lossy := kubernetes.NewForConfigOrDie(answerLosingProxy(t, k.Bot))
	for _, c := range kubeCases() {
		t.Run(c.action+" answer lost", func(t *testing.T) {
			ns, b, env, p := prepare(t, c)
			env.Kube = lossy
			_, err := b.Run(ctx, env, p)
			if !errors.Is(err, ErrOutcomeUnknown) {
				t.Fatalf("Run with its write's answer lost: %v; want outcome unknown", err)
			}
			c.check(t, admin, ns, true)
		})
	}

	t.Run("refused: what no action needs", func(t *testing.T) {
		ns := newNS(t)
		var all []rbacv1.PolicyRule
		for _, c := range kubeCases() {
			all = append(all, chartRules[c.action]...)
		}
		grant(t, admin, ns, all)
		if err := bot.AppsV1().Deployments(ns).Delete(ctx, "api", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("delete deployment: %v, want forbidden", err)
		}
		if _, err := bot.CoreV1().Secrets(ns).Get(ctx, "db", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("get secret: %v, want forbidden", err)
		}
		if _, err := bot.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("list secrets: %v, want forbidden", err)
		}
		if _, err := bot.AppsV1().Deployments(ns).Update(ctx, getDeployment(t, admin, ns), metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("update deployment: %v, want forbidden", err)
		}
		if _, err := bot.AppsV1().Deployments("default").Get(ctx, "api", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("get deployment in another namespace: %v, want forbidden", err)
		}
	})

	t.Run("rollback edge cases", func(t *testing.T) {
		ns := newNS(t)
		grant(t, admin, ns, chartRules["kubernetes.rollback"])
		env := Env{Kube: bot}
		b := loadKube(t, "kubernetes.rollback", ns, "namespace: NS\ndeployment: api\n")
		p, err := b.Resolve(ctx, env, PlanData{})
		if err != nil {
			t.Fatal(err)
		}
		// The ReplicaSet at revision 5 matches the selector but another
		// deployment controls it: the previous revision is 1.
		if !strings.Contains(p.Text, "revision 1, the previous one (now at 2)") {
			t.Errorf("plan %q", p.Text)
		}
		// A retry of the same plan after it ran: the template already
		// matches revision 1, nothing is patched.
		o, err := b.Run(ctx, env, p)
		if err != nil {
			t.Fatal(err)
		}
		o2, err := b.Run(ctx, env, p)
		if err != nil || !strings.Contains(o2.Detail, "skipped") || len(o2.Before) != 0 {
			t.Errorf("second run: %+v %v, want skipped", o2, err)
		}
		if err := b.(Reverter).Revert(ctx, env, p, o); err != nil {
			t.Fatal(err)
		}
		// The revert's `test` op holds it to the rolled-back template: a
		// second revert changes nothing and says so.
		if err := b.(Reverter).Revert(ctx, env, p, o); err == nil || !strings.Contains(err.Error(), "changed since") {
			t.Errorf("second revert: %v, want a failed precondition", err)
		}
		// Paused: refused.
		d := getDeployment(t, admin, ns)
		d.Spec.Paused = true
		if _, err := admin.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Run(ctx, env, p); err == nil || !strings.Contains(err.Error(), "paused") {
			t.Errorf("paused: %v, want a refusal", err)
		}
		// An explicit revision that does not exist.
		b3 := loadKube(t, "kubernetes.rollback", ns, "namespace: NS\ndeployment: api\nrevision: 3\n")
		if _, err := b3.Resolve(ctx, env, PlanData{}); err == nil || !strings.Contains(err.Error(), "revision 3") {
			t.Errorf("revision 3: %v", err)
		}
	})

	t.Run("bluegreen precondition", func(t *testing.T) {
		ns := newNS(t)
		grant(t, admin, ns, chartRules["kubernetes.bluegreen_switch"])
		env := Env{Kube: bot}
		b := loadKube(t, "kubernetes.bluegreen_switch", ns, "namespace: NS\nservice: api\nto: green\n")
		p, err := b.Resolve(ctx, env, PlanData{})
		if err != nil || !strings.Contains(p.Text, "version blue → green") {
			t.Fatalf("plan %q %v: want the live value as from", p.Text, err)
		}
		// Someone switches to canary between the plan and the run.
		patch := []byte(`{"spec":{"selector":{"version":"canary"}}}`)
		if _, err := admin.CoreV1().Services(ns).Patch(ctx, "api", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Run(ctx, env, p); err == nil || !strings.Contains(err.Error(), `"canary", not "blue"`) {
			t.Errorf("run over a changed selector: %v, want a refusal", err)
		}
	})

	t.Run("scale revert refuses over a later change", func(t *testing.T) {
		ns := newNS(t)
		grant(t, admin, ns, chartRules["kubernetes.scale"])
		env := Env{Kube: bot}
		b := loadKube(t, "kubernetes.scale", ns, "namespace: NS\ndeployment: api\nreplicas: 4\nmax_replicas: 4\n")
		p, err := b.Resolve(ctx, env, PlanData{})
		if err != nil {
			t.Fatal(err)
		}
		o, err := b.Run(ctx, env, p)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := admin.AppsV1().Deployments(ns).GetScale(ctx, "api", metav1.GetOptions{})
		s.Spec.Replicas = 3
		if _, err := admin.AppsV1().Deployments(ns).UpdateScale(ctx, "api", s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := b.(Reverter).Revert(ctx, env, p, o); err == nil || !strings.Contains(err.Error(), "changed since") {
			t.Errorf("revert: %v, want a refusal", err)
		}
		// A plan whose parameters were altered after approval is refused.
		p.Params = []byte(strings.Replace(string(p.Params), `"replicas":4`, `"replicas":40`, 1))
		if _, err := b.Run(ctx, env, p); err == nil || !strings.Contains(err.Error(), "hash") {
			t.Errorf("altered plan: %v, want refused", err)
		}
	})
}

// cycle resolves, runs, verifies and reverts, stopping at the first error.
func cycle(ctx context.Context, b Runner, env Env, data PlanData) error {
	p, err := b.Resolve(ctx, env, data)
	if err != nil {
		return err
	}
	o, err := b.Run(ctx, env, p)
	if err != nil {
		return err
	}
	if err := b.Verify(ctx, env, p, o); err != nil {
		return err
	}
	if r, ok := b.(Reverter); ok {
		return r.Revert(ctx, env, p, o)
	}
	return nil
}

func TestKubeActionsDryRun(t *testing.T) {
	for _, c := range kubeCases() {
		b := loadKube(t, c.action, "solana-dapps", c.params)
		env := Env{}
		if c.env != nil {
			c.env(&env)
		}
		p, err := b.Resolve(t.Context(), env, c.data)
		if err != nil {
			t.Fatalf("%s: %v", c.action, err)
		}
		if _, err := b.Run(t.Context(), env, p); !errors.Is(err, ErrDryRun) {
			t.Errorf("%s: Run without a cluster: %v, want ErrDryRun", c.action, err)
		}
	}
}

func TestSwitchRPCNeverSendsARedactedOrUnknownURL(t *testing.T) {
	view := fakeView{v: rpcview.View{Endpoints: []rpcview.Endpoint{
		{Name: "backup-1", URL: redact.URL(backupURL), Role: rpcview.RoleBackup, Healthy: true}}}}
	b := loadKube(t, "solana.switch_rpc", "solana-dapps", "namespace: NS\ndeployment: api\nurl: healthiest_backup\n")
	p, err := b.Resolve(t.Context(), Env{}, PlanData{RPC: view})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(p.Text+string(p.Params), "backup-secret") || !strings.Contains(string(p.Params), `"endpoint":"backup-1"`) {
		t.Errorf("plan %q params %s", p.Text, p.Params)
	}
	var q rpcQ
	_ = json.Unmarshal(p.Params, &q)
	for name, lookup := range map[string]func(string) (string, bool){
		"no configuration": nil,
		"unknown endpoint": func(string) (string, bool) { return "", false },
		"redacted URL":     func(string) (string, bool) { return redact.URL(backupURL), true },
	} {
		if _, err := rpcURL(Env{RPCURL: lookup}, q); err == nil {
			t.Errorf("%s: a URL to send", name)
		}
	}
	if u, err := rpcURL(Env{RPCURL: func(string) (string, bool) { return backupURL, true }}, q); err != nil || u != backupURL {
		t.Errorf("configured: %q %v", u, err)
	}
	if _, err := loadKube(t, "solana.switch_rpc", "x", "namespace: NS\ndeployment: api\nurl: "+backupURL+"\n").
		Resolve(t.Context(), Env{}, PlanData{}); err == nil || !strings.Contains(err.Error(), "credentials") {
		t.Errorf("explicit URL with a key: %v, want refused", err)
	}
}

func loadKube(t *testing.T, action, ns, params string) Runner {
	t.Helper()
	b, err := load(t, action, strings.ReplaceAll(params, "NS", ns))
	if err != nil {
		t.Fatal(err)
	}
	r, ok := b.(Runner)
	if !ok {
		t.Fatalf("%s is not a Runner", action)
	}
	return r
}

// chartRBAC reads the Helm chart's rules per action (values.yaml
// rbac.actions; deploy's tests keep them equal to the registry's).
func chartRBAC(t *testing.T) map[string][]rbacv1.PolicyRule {
	t.Helper()
	b, err := os.ReadFile("../deploy/helm/incidentbot/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		RBAC struct {
			Actions map[string]struct {
				Rules []struct {
					APIGroups []string `yaml:"apiGroups"`
					Resources []string `yaml:"resources"`
					Verbs     []string `yaml:"verbs"`
				} `yaml:"rules"`
			} `yaml:"actions"`
		} `yaml:"rbac"`
	}
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out := map[string][]rbacv1.PolicyRule{}
	for name, a := range v.RBAC.Actions {
		for _, r := range a.Rules {
			out[name] = append(out[name], rbacv1.PolicyRule{APIGroups: r.APIGroups, Resources: r.Resources, Verbs: r.Verbs})
		}
	}
	for _, c := range kubeCases() {
		if len(out[c.action]) == 0 {
			t.Fatalf("the chart grants %s nothing", c.action)
		}
	}
	return out
}

// grant binds a Role with rules to the bot's ServiceAccount in ns, as the
// chart does, and waits until the authorizer has it.
func grant(t *testing.T, admin kubernetes.Interface, ns string, rules []rbacv1.PolicyRule) {
	t.Helper()
	ctx := t.Context()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "incidentbot", Namespace: ns}, Rules: rules}
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "incidentbot", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "incidentbot"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: testenv.KubeBotSAName, Namespace: testenv.KubeBotSANS}},
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The authorizer reads Roles from an informer: wait for the first
	// granted verb to be allowed.
	var probe *authzv1.ResourceAttributes
	for _, r := range rules {
		if len(r.Verbs) > 0 {
			res, sub, _ := strings.Cut(r.Resources[0], "/")
			probe = &authzv1.ResourceAttributes{Namespace: ns, Group: r.APIGroups[0], Resource: res, Subresource: sub, Verb: r.Verbs[0]}
			break
		}
	}
	if probe == nil {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		sar, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: testenv.KubeBotUser, Groups: []string{"system:serviceaccounts", "system:authenticated"}, ResourceAttributes: probe,
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Role is not in effect after 10s: %+v", sar.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getDeployment(t *testing.T, admin kubernetes.Interface, ns string) *appsv1.Deployment {
	t.Helper()
	d, err := admin.AppsV1().Deployments(ns).Get(t.Context(), "api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// seed creates the app as the course runs it: deployment api (revision 2,
// image api:v2; two containers), the ReplicaSets of its revisions 1 and 2
// as the deployment controller would have left them (no controller
// manager runs), a ReplicaSet at revision 5 that matches the selector but
// belongs to another deployment, the service api (version blue) and a
// Secret the bot must not read.
func seed(t *testing.T, admin kubernetes.Interface, ns string) {
	t.Helper()
	ctx := t.Context()
	tmpl := func(image string) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "api"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: "api", Image: image, Env: []corev1.EnvVar{
					{Name: "SOLANA_RPC_URL", Value: primaryURL}, {Name: "MAINTENANCE_MODE", Value: "false"}}},
				{Name: "sidecar", Image: "proxy:1"},
			}},
		}
	}
	replicas := int32(2)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: ns, Annotations: map[string]string{
			revisionAnnotation: "2", "kubernetes.io/change-cause": "deploy v2"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			Template: tmpl("api:v2"),
		},
	}
	d, err := admin.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := admin.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "api-canary", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api", "track": "canary"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "api", "track": "canary"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "api:canary"}}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs := func(owner *appsv1.Deployment, rev, hash, image, cause string, extra map[string]string) {
		tp := tmpl(image)
		tp.Labels = map[string]string{"app": "api", podTemplateHashLabel: hash}
		for k, v := range extra {
			tp.Labels[k] = v
		}
		one := int32(0)
		r := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{
				Name: owner.Name + "-" + hash, Namespace: ns,
				Labels:          tp.Labels,
				Annotations:     map[string]string{revisionAnnotation: rev, "kubernetes.io/change-cause": cause},
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(owner, appsv1.SchemeGroupVersion.WithKind("Deployment"))},
			},
			Spec: appsv1.ReplicaSetSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: tp.Labels}, Template: tp},
		}
		if _, err := admin.AppsV1().ReplicaSets(ns).Create(ctx, r, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rs(d, "1", "v1hash", "api:v1", "deploy v1", nil)
	rs(d, "2", "v2hash", "api:v2", "deploy v2", nil)
	rs(other, "5", "c5hash", "api:canary", "canary", map[string]string{"track": "canary"})

	if _, err := admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "api", "version": "blue"},
			Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns}, StringData: map[string]string{"password": "p"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// answerLosingProxy is an HTTPS front for the API server of cfg that
// passes reads through and, for a write, passes it on and then drops the
// connection instead of answering: the change is applied and its client
// never hears of it. It returns the client config that goes through it.
func answerLosingProxy(t *testing.T, cfg *rest.Config) *rest.Config {
	t.Helper()
	upstream, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(upstream)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // the test API server's own certificate
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			rp.ServeHTTP(w, r)
			return
		}
		rp.ServeHTTP(httptest.NewRecorder(), r) // applied; the answer goes nowhere
		panic(http.ErrAbortHandler)             // and the connection drops
	}))
	t.Cleanup(srv.Close)
	c := rest.CopyConfig(cfg)
	c.Host = srv.URL
	return c
}
