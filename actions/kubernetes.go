package actions

import (
	"context"
	"fmt"
)

var (
	rbacDeploymentPatch = Permission{APIGroup: "apps", Resources: []string{"deployments"}, Verbs: []string{"get", "patch"}}
	rbacScale           = Permission{APIGroup: "apps", Resources: []string{"deployments/scale"}, Verbs: []string{"get", "update"}}
	rbacReplicaSets     = Permission{APIGroup: "apps", Resources: []string{"replicasets"}, Verbs: []string{"list"}}
	rbacServicePatch    = Permission{APIGroup: "", Resources: []string{"services"}, Verbs: []string{"get", "patch"}}
)

var (
	paramNamespace  = Param{Name: "namespace", Type: "template", Required: true, Description: "Kubernetes namespace"}
	paramDeployment = Param{Name: "deployment", Type: "template", Required: true, Description: "deployment name"}
	paramContainer  = Param{Name: "container", Type: "template", Description: "container to change; empty means every container of the pod template"}
)

// deploymentRef names a deployment; embedded in typed params by value.
func checkDeployment(v *validator, ns, name Template) {
	if v.required("namespace", ns) {
		v.check("namespace", ns, checkNamespace)
	}
	if v.required("deployment", name) {
		v.check("deployment", name, checkName)
	}
}

func renderDeployment(ns, name Template, data PlanData) (string, string, error) {
	n, err := render("namespace", ns, data, checkNamespace)
	if err != nil {
		return "", "", err
	}
	d, err := render("deployment", name, data, checkName)
	if err != nil {
		return "", "", err
	}
	return n, d, nil
}

// SetEnvParams are kubernetes.set_env's parameters.
type SetEnvParams struct {
	Namespace  Template `yaml:"namespace"`
	Deployment Template `yaml:"deployment"`
	Container  Template `yaml:"container"`
	Name       Template `yaml:"name"`
	Value      Template `yaml:"value"`
}

// SetEnv sets one environment variable on a deployment's containers
// (`kubectl set env deployment/api NAME=value`).
var SetEnv Action = kubeSpec[SetEnvParams, envQ]{spec: spec[SetEnvParams]{
	desc: Description{
		Name:        "kubernetes.set_env",
		Description: "Set one environment variable on a deployment's pod template, which rolls the pods.",
		Params: []Param{paramNamespace, paramDeployment, paramContainer,
			{Name: "name", Type: "template", Required: true, Description: "environment variable name"},
			{Name: "value", Type: "template", Required: true, Description: "new value"},
		},
		Example: `id: enable-maintenance
title: Put the API in maintenance mode
action: kubernetes.set_env
params:
  namespace: solana-dapps
  deployment: api
  name: MAINTENANCE_MODE
  value: "true"
`,
		RBAC: []Permission{rbacDeploymentPatch},
	},
	check: func(p *SetEnvParams, v *validator) {
		checkDeployment(v, p.Namespace, p.Deployment)
		v.check("container", p.Container, checkContainer)
		if v.required("name", p.Name) {
			v.check("name", p.Name, checkEnvName)
		}
		v.required("value", p.Value)
	},
	plan: func(_ context.Context, p *SetEnvParams, data PlanData) (string, error) {
		t, err := renderEnvTarget(p.Namespace, p.Deployment, p.Container, "name", p.Name, data)
		if err != nil {
			return "", err
		}
		val, err := render("value", p.Value, data, nil)
		if err != nil {
			return "", err
		}
		return t.plan(val), nil
	},
},
	resolve: resolveSetEnv,
	run:     runSetEnv,
	verify:  verifySetEnv,
	revert:  revertSetEnv,
}

// envTarget is one environment variable of a deployment's container(s),
// rendered for an incident: what kubernetes.set_env and solana.switch_rpc
// both change.
type envTarget struct {
	namespace, deployment, container, name string
}

// renderEnvTarget renders and checks the target; nameKey is the YAML key
// of the variable's name ("name" or "env") for error messages.
func renderEnvTarget(ns, deployment, container Template, nameKey string, name Template, data PlanData) (envTarget, error) {
	n, d, err := renderDeployment(ns, deployment, data)
	if err != nil {
		return envTarget{}, err
	}
	c, err := render("container", container, data, checkContainer)
	if err != nil {
		return envTarget{}, err
	}
	v, err := render(nameKey, name, data, checkEnvName)
	if err != nil {
		return envTarget{}, err
	}
	return envTarget{namespace: n, deployment: d, container: c, name: v}, nil
}

// plan is the dry-run text for setting the variable to value (already
// redacted if it may carry a secret).
func (t envTarget) plan(value string) string {
	return fmt.Sprintf("%s: set %s → %s%s", target("deployment", t.namespace, t.deployment), t.name, value, inContainer(t.container))
}

func inContainer(c string) string {
	if c == "" {
		return ""
	}
	return fmt.Sprintf(" (container %s)", c)
}

// RolloutRestartParams are kubernetes.rollout_restart's parameters.
type RolloutRestartParams struct {
	Namespace  Template `yaml:"namespace"`
	Deployment Template `yaml:"deployment"`
}

// RolloutRestart restarts a deployment's pods
// (`kubectl rollout restart deployment/api`).
var RolloutRestart Action = kubeSpec[RolloutRestartParams, deployQ]{spec: spec[RolloutRestartParams]{
	desc: Description{
		Name:        "kubernetes.rollout_restart",
		Description: "Restart a deployment's pods by a rolling update (sets the kubectl.kubernetes.io/restartedAt annotation).",
		Params:      []Param{paramNamespace, paramDeployment},
		Example: `id: restart-api
title: Restart API pods
action: kubernetes.rollout_restart
params:
  namespace: solana-dapps
  deployment: api
`,
		RBAC: []Permission{rbacDeploymentPatch},
	},
	check: func(p *RolloutRestartParams, v *validator) {
		checkDeployment(v, p.Namespace, p.Deployment)
	},
	plan: func(_ context.Context, p *RolloutRestartParams, data PlanData) (string, error) {
		ns, d, err := renderDeployment(p.Namespace, p.Deployment, data)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s: rollout restart (pods are replaced one by one per the rollout strategy)", target("deployment", ns, d)), nil
	},
},
	resolve: resolveRestart,
	run:     runRestart,
	verify:  verifyRestart,
}

// ScaleParams are kubernetes.scale's parameters.
type ScaleParams struct {
	Namespace   Template `yaml:"namespace"`
	Deployment  Template `yaml:"deployment"`
	Replicas    *int     `yaml:"replicas" required:"true"`
	MaxReplicas *int     `yaml:"max_replicas" required:"true"`
}

// Scale sets a deployment's replica count, bounded by max_replicas
// (`kubectl scale deployment/api --replicas=5`).
var Scale Action = kubeSpec[ScaleParams, scaleQ]{spec: spec[ScaleParams]{
	desc: Description{
		Name:        "kubernetes.scale",
		Description: "Scale a deployment to a number of replicas, never above max_replicas.",
		Params: []Param{paramNamespace, paramDeployment,
			{Name: "replicas", Type: "integer", Required: true, Description: "replica count to set"},
			{Name: "max_replicas", Type: "integer", Required: true, Description: "upper bound replicas may not exceed"},
		},
		Example: `id: scale-api
title: Scale API up
action: kubernetes.scale
params:
  namespace: solana-dapps
  deployment: api
  replicas: 5
  max_replicas: 10
`,
		RBAC: []Permission{rbacScale},
	},
	check: func(p *ScaleParams, v *validator) {
		checkDeployment(v, p.Namespace, p.Deployment)
		if p.MaxReplicas != nil && *p.MaxReplicas < 1 {
			v.fail("max_replicas", "must be at least 1")
		}
		if p.Replicas != nil && *p.Replicas < 0 {
			v.fail("replicas", "must not be negative")
		}
		if p.Replicas != nil && p.MaxReplicas != nil && *p.Replicas > *p.MaxReplicas {
			v.fail("replicas", "%d exceeds max_replicas %d", *p.Replicas, *p.MaxReplicas)
		}
	},
	plan: func(_ context.Context, p *ScaleParams, data PlanData) (string, error) {
		ns, d, err := renderDeployment(p.Namespace, p.Deployment, data)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s: scale to %d replicas (max %d)", target("deployment", ns, d), *p.Replicas, *p.MaxReplicas), nil
	},
},
	resolve: resolveScale,
	run:     runScale,
	verify:  verifyScale,
	revert:  revertScale,
}

// RollbackParams are kubernetes.rollback's parameters.
type RollbackParams struct {
	Namespace  Template `yaml:"namespace"`
	Deployment Template `yaml:"deployment"`
	// Revision is the deployment revision to return to; 0 means the
	// previous one.
	Revision int `yaml:"revision"`
}

// Rollback returns a deployment to its previous (or a given) revision
// (`kubectl rollout undo deployment/api [--to-revision=N]`).
var Rollback Action = kubeSpec[RollbackParams, rollbackQ]{spec: spec[RollbackParams]{
	desc: Description{
		Name:        "kubernetes.rollback",
		Description: "Roll a deployment back to its previous revision, or to a given revision.",
		Params: []Param{paramNamespace, paramDeployment,
			{Name: "revision", Type: "integer", Default: "0 (previous revision)", Description: "revision to roll back to"},
		},
		Example: `id: rollback-api
title: Roll back the API deployment
action: kubernetes.rollback
params:
  namespace: solana-dapps
  deployment: api
`,
		RBAC: []Permission{rbacDeploymentPatch, rbacReplicaSets},
	},
	check: func(p *RollbackParams, v *validator) {
		checkDeployment(v, p.Namespace, p.Deployment)
		if p.Revision < 0 {
			v.fail("revision", "must not be negative")
		}
	},
	plan: func(_ context.Context, p *RollbackParams, data PlanData) (string, error) {
		ns, d, err := renderDeployment(p.Namespace, p.Deployment, data)
		if err != nil {
			return "", err
		}
		to := "the previous revision"
		if p.Revision > 0 {
			to = fmt.Sprintf("revision %d", p.Revision)
		}
		return fmt.Sprintf("%s: roll back to %s", target("deployment", ns, d), to), nil
	},
},
	resolve: resolveRollback,
	run:     runRollback,
	verify:  verifyRollback,
	revert:  revertRollback,
}

// BlueGreenParams are kubernetes.bluegreen_switch's parameters.
type BlueGreenParams struct {
	Namespace Template `yaml:"namespace"`
	Service   Template `yaml:"service"`
	// Key is the selector label to switch, "version" by default.
	Key  Template `yaml:"key"`
	From Template `yaml:"from"`
	To   Template `yaml:"to"`
}

// BlueGreenSwitch points a service at another set of pods by changing one
// selector label (`kubectl patch svc api -p '{"spec":{"selector":{"version":"green"}}}'`).
var BlueGreenSwitch Action = kubeSpec[BlueGreenParams, blueGreenQ]{spec: spec[BlueGreenParams]{
	desc: Description{
		Name:        "kubernetes.bluegreen_switch",
		Description: "Switch a service's selector label (e.g. version blue → green) to move traffic between deployments.",
		Params: []Param{paramNamespace,
			{Name: "service", Type: "template", Required: true, Description: "service name"},
			{Name: "key", Type: "template", Default: "version", Description: "selector label to change"},
			{Name: "from", Type: "template", Description: "expected current value; the run refuses if it differs"},
			{Name: "to", Type: "template", Required: true, Description: "new value"},
		},
		Example: `id: switch-to-blue
title: Send traffic back to blue
action: kubernetes.bluegreen_switch
params:
  namespace: solana-dapps
  service: api
  key: version
  from: green
  to: blue
`,
		RBAC: []Permission{rbacServicePatch},
	},
	check: func(p *BlueGreenParams, v *validator) {
		if v.required("namespace", p.Namespace) {
			v.check("namespace", p.Namespace, checkNamespace)
		}
		if v.required("service", p.Service) {
			v.check("service", p.Service, checkName)
		}
		if p.Key.IsZero() {
			p.Key = MustTemplate("version")
		}
		v.check("key", p.Key, checkLabelKey)
		v.check("from", p.From, checkLabelValue)
		if v.required("to", p.To) {
			v.check("to", p.To, checkLabelValue)
		}
		if p.From.Static() && p.To.Static() && !p.From.IsZero() && p.From.String() == p.To.String() {
			v.fail("to", "equals from (%q): nothing would change", p.To.String())
		}
	},
	plan: func(_ context.Context, p *BlueGreenParams, data PlanData) (string, error) {
		ns, err := render("namespace", p.Namespace, data, checkNamespace)
		if err != nil {
			return "", err
		}
		svc, err := render("service", p.Service, data, checkName)
		if err != nil {
			return "", err
		}
		key, err := render("key", p.Key, data, checkLabelKey)
		if err != nil {
			return "", err
		}
		to, err := render("to", p.To, data, checkLabelValue)
		if err != nil {
			return "", err
		}
		from := "(current)"
		if !p.From.IsZero() {
			if from, err = render("from", p.From, data, checkLabelValue); err != nil {
				return "", err
			}
		}
		return fmt.Sprintf("%s: selector %s %s → %s", target("service", ns, svc), key, from, to), nil
	},
},
	resolve: resolveBlueGreen,
	run:     runBlueGreen,
	verify:  verifyBlueGreen,
	revert:  revertBlueGreen,
}
