package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/incidentbot/incidentbot/redact"
)

// One environment variable of a deployment's containers, set by a
// strategic merge patch that merges containers and env by name. The patch
// carries the resourceVersion the old values were read at, so the values
// recorded as Before are exactly the ones replaced.

// envQ is the resolved plan of kubernetes.set_env.
type envQ struct {
	Namespace  string `json:"namespace"`
	Deployment string `json:"deployment"`
	Container  string `json:"container,omitempty"`
	Name       string `json:"name"`
	Value      string `json:"value"`
}

// rpcQ is the resolved plan of solana.switch_rpc. The real URL is never
// in it: Run looks the endpoint up by name (Env.RPCURL). URL holds an
// explicit URL from the runbook only when it carries no credentials.
type rpcQ struct {
	Namespace  string `json:"namespace"`
	Deployment string `json:"deployment"`
	Container  string `json:"container,omitempty"`
	Name       string `json:"name"`
	Endpoint   string `json:"endpoint,omitempty"`
	URL        string `json:"url,omitempty"`
}

// envValue is a variable's state in one container.
type envValue struct {
	Present   bool                 `json:"present"`
	Value     string               `json:"value,omitempty"`
	ValueFrom *corev1.EnvVarSource `json:"valueFrom,omitempty"`
}

// envBefore is Outcome.Before of both env actions: each container's
// variable as it was. For solana.switch_rpc it is the previous RPC URL as
// the deployment held it (needed to revert); it is never shown.
type envBefore struct {
	Containers map[string]envValue `json:"containers"`
}

func (t envTarget) q(value string) envQ {
	return envQ{Namespace: t.namespace, Deployment: t.deployment, Container: t.container, Name: t.name, Value: value}
}

func resolveSetEnv(_ context.Context, _ Env, p *SetEnvParams, data PlanData) (envQ, string, string, error) {
	t, err := renderEnvTarget(p.Namespace, p.Deployment, p.Container, "name", p.Name, data)
	if err != nil {
		return envQ{}, "", "", err
	}
	val, err := render("value", p.Value, data, nil)
	if err != nil {
		return envQ{}, "", "", err
	}
	return t.q(val), target("deployment", t.namespace, t.deployment), t.plan(val), nil
}

func runSetEnv(ctx context.Context, _ Env, kube kubernetes.Interface, q envQ) (Outcome, error) {
	before, err := setEnv(ctx, kube, q, q.Value)
	if err != nil {
		return Outcome{}, err
	}
	return envOutcome(q, before, q.Value, q.Value), nil
}

func verifySetEnv(ctx context.Context, _ Env, kube kubernetes.Interface, q envQ, _ Outcome) error {
	return checkEnv(ctx, kube, q, q.Value, q.Value)
}

func revertSetEnv(ctx context.Context, _ Env, kube kubernetes.Interface, q envQ, o Outcome) error {
	return revertEnv(ctx, kube, q, q.Value, q.Value, o)
}

func resolveSwitchRPC(ctx context.Context, env Env, p *SwitchRPCParams, data PlanData) (rpcQ, string, string, error) {
	t, err := renderEnvTarget(p.Namespace, p.Deployment, p.Container, "env", p.Env, data)
	if err != nil {
		return rpcQ{}, "", "", err
	}
	u, err := render("url", p.URL, data, checkRPCURL)
	if err != nil {
		return rpcQ{}, "", "", err
	}
	q := rpcQ{Namespace: t.namespace, Deployment: t.deployment, Container: t.container, Name: t.name}
	tgt := target("deployment", t.namespace, t.deployment)
	if u != HealthiestBackup {
		if redact.URL(u) != u {
			return rpcQ{}, "", "", errors.New("url carries credentials: name a configured endpoint instead (url: healthiest_backup) so the key stays in the configuration")
		}
		q.URL = u
		return q, tgt, t.plan(u), nil
	}
	b, how, err := healthiestBackup(ctx, data)
	if err != nil {
		return rpcQ{}, "", "", err
	}
	if b.Name == "" {
		return rpcQ{}, "", "", fmt.Errorf("the healthiest backup (%s) has no endpoint name to look its URL up by", redact.URL(b.URL))
	}
	q.Endpoint = b.Name
	if env.RPCURL != nil {
		if _, ok := env.RPCURL(b.Name); !ok {
			return rpcQ{}, "", "", fmt.Errorf("endpoint %q is not in the configuration", b.Name)
		}
	}
	return q, tgt, t.plan(redact.URL(b.URL) + " (" + how + ")"), nil
}

// rpcURL is the URL to set: the configured URL of the endpoint, looked up
// now, never the redacted one of the live view.
func rpcURL(env Env, q rpcQ) (string, error) {
	if q.Endpoint == "" {
		return q.URL, nil
	}
	if env.RPCURL == nil {
		return "", fmt.Errorf("no RPC endpoint configuration to look endpoint %q up in", q.Endpoint)
	}
	u, ok := env.RPCURL(q.Endpoint)
	if !ok {
		return "", fmt.Errorf("endpoint %q is not in the configuration", q.Endpoint)
	}
	if err := checkURL(u); err != nil || redacted(u) {
		return "", fmt.Errorf("endpoint %q: the configured URL is not a usable URL (redacted?): refusing to send it", q.Endpoint)
	}
	return u, nil
}

// redacted reports whether u went through redaction (as the live view's
// URLs do): such a URL must never reach a deployment.
func redacted(u string) bool {
	if strings.Contains(u, redact.Mask) || strings.Contains(u, "<secret>") {
		return true
	}
	d, err := url.PathUnescape(u)
	return err == nil && strings.Contains(d, redact.Mask)
}

func (q rpcQ) env() envQ {
	return envQ{Namespace: q.Namespace, Deployment: q.Deployment, Container: q.Container, Name: q.Name}
}

func (q rpcQ) shown() string {
	if q.Endpoint != "" {
		return "endpoint " + q.Endpoint
	}
	return q.URL
}

func runSwitchRPC(ctx context.Context, env Env, kube kubernetes.Interface, q rpcQ) (Outcome, error) {
	u, err := rpcURL(env, q)
	if err != nil {
		return Outcome{}, err
	}
	before, err := setEnv(ctx, kube, q.env(), u)
	if err != nil {
		return Outcome{}, err
	}
	return envOutcome(q.env(), before, u, q.shown()), nil
}

func verifySwitchRPC(ctx context.Context, env Env, kube kubernetes.Interface, q rpcQ, _ Outcome) error {
	u, err := rpcURL(env, q)
	if err != nil {
		return err
	}
	return checkEnv(ctx, kube, q.env(), u, q.shown())
}

func revertSwitchRPC(ctx context.Context, env Env, kube kubernetes.Interface, q rpcQ, o Outcome) error {
	u, err := rpcURL(env, q)
	if err != nil {
		return err
	}
	return revertEnv(ctx, kube, q.env(), u, q.shown(), o)
}

// envOutcome reports a set. After and Detail name the value as shown:
// set_env's value, switch_rpc's endpoint name or credential-free URL.
func envOutcome(q envQ, before envBefore, value, shown string) Outcome {
	var changed []string
	for _, c := range slices.Sorted(maps.Keys(before.Containers)) {
		if v := before.Containers[c]; !v.Present || v.ValueFrom != nil || v.Value != value {
			changed = append(changed, c)
		}
	}
	detail := fmt.Sprintf("%s: %s set to %s in %s", target("deployment", q.Namespace, q.Deployment), q.Name, shown, strings.Join(changed, ", "))
	if len(changed) == 0 {
		detail = fmt.Sprintf("%s: %s was already %s; nothing changed", target("deployment", q.Namespace, q.Deployment), q.Name, shown)
	}
	return Outcome{Before: mustJSON(before), After: mustJSON(map[string]string{"value": shown}), Detail: detail}
}

// containersOf picks the containers the variable is set in: the named one
// (which must exist) or every container of the pod template.
func containersOf(d *appsv1.Deployment, name string) ([]*corev1.Container, error) {
	var out []*corev1.Container
	for i := range d.Spec.Template.Spec.Containers {
		c := &d.Spec.Template.Spec.Containers[i]
		if name == "" || c.Name == name {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("deployment %s/%s has no container %q", d.Namespace, d.Name, name)
	}
	return out, nil
}

func envOf(c *corev1.Container, name string) envValue {
	for _, e := range c.Env {
		if e.Name == name {
			return envValue{Present: true, Value: e.Value, ValueFrom: e.ValueFrom}
		}
	}
	return envValue{}
}

// envPatch is the strategic merge patch setting (or, for an absent
// value, removing) the variable per container, at resourceVersion rv.
func envPatch(rv string, name string, values map[string]envValue) []byte {
	var containers []any
	for _, c := range slices.Sorted(maps.Keys(values)) {
		v := values[c]
		e := map[string]any{"name": name}
		switch {
		case !v.Present:
			e["$patch"] = "delete"
		case v.ValueFrom != nil:
			e["value"], e["valueFrom"] = nil, v.ValueFrom
		default:
			e["value"], e["valueFrom"] = v.Value, nil
		}
		containers = append(containers, map[string]any{"name": c, "env": []any{e}})
	}
	return mustJSON(map[string]any{
		"metadata": map[string]any{"resourceVersion": rv},
		"spec":     map[string]any{"template": map[string]any{"spec": map[string]any{"containers": containers}}},
	})
}

func setEnv(ctx context.Context, kube kubernetes.Interface, q envQ, value string) (envBefore, error) {
	var before envBefore
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := kube.AppsV1().Deployments(q.Namespace).Get(ctx, q.Deployment, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cs, err := containersOf(d, q.Container)
		if err != nil {
			return err
		}
		before = envBefore{Containers: map[string]envValue{}}
		set := map[string]envValue{}
		for _, c := range cs {
			before.Containers[c.Name] = envOf(c, q.Name)
			set[c.Name] = envValue{Present: true, Value: value}
		}
		_, err = kube.AppsV1().Deployments(q.Namespace).Patch(ctx, q.Deployment, types.StrategicMergePatchType,
			envPatch(d.ResourceVersion, q.Name, set), metav1.PatchOptions{FieldManager: FieldManager})
		return Unanswered(err)
	})
	return before, err
}

// checkEnv checks that every target container has the variable at value;
// shown is how the value may be named in an error.
func checkEnv(ctx context.Context, kube kubernetes.Interface, q envQ, value, shown string) error {
	d, err := kube.AppsV1().Deployments(q.Namespace).Get(ctx, q.Deployment, metav1.GetOptions{})
	if err != nil {
		return err
	}
	cs, err := containersOf(d, q.Container)
	if err != nil {
		return err
	}
	for _, c := range cs {
		if v := envOf(c, q.Name); !v.Present || v.ValueFrom != nil || v.Value != value {
			return fmt.Errorf("container %s: %s is not %s", c.Name, q.Name, shown)
		}
	}
	return nil
}

// revertEnv restores each container's variable from o.Before, only where
// it still holds the value the run set: a later change by someone else is
// not overwritten.
func revertEnv(ctx context.Context, kube kubernetes.Interface, q envQ, value, shown string, o Outcome) error {
	var before envBefore
	if err := json.Unmarshal(o.Before, &before); err != nil || before.Containers == nil {
		return fmt.Errorf("no recorded state to restore (%v)", err)
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := kube.AppsV1().Deployments(q.Namespace).Get(ctx, q.Deployment, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cs, err := containersOf(d, q.Container)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if _, ok := before.Containers[c.Name]; !ok {
				return fmt.Errorf("container %s was not there when the run changed %s: not reverting", c.Name, q.Name)
			}
			if v := envOf(c, q.Name); !v.Present || v.ValueFrom != nil || v.Value != value {
				return fmt.Errorf("container %s: %s is no longer %s (changed since the run): not reverting", c.Name, q.Name, shown)
			}
		}
		_, err = kube.AppsV1().Deployments(q.Namespace).Patch(ctx, q.Deployment, types.StrategicMergePatchType,
			envPatch(d.ResourceVersion, q.Name, before.Containers), metav1.PatchOptions{FieldManager: FieldManager})
		return Unanswered(err)
	})
}

// FieldManager is the field manager incidentbot's changes are recorded
// under in managedFields.
const FieldManager = "incidentbot"
