package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// deployQ names a deployment in a resolved plan.
type deployQ struct {
	Namespace  string `json:"namespace"`
	Deployment string `json:"deployment"`
}

func (q deployQ) target() string { return target("deployment", q.Namespace, q.Deployment) }

// --- kubernetes.rollout_restart

// RestartedAtAnnotation is the pod template annotation `kubectl rollout
// restart` sets; changing it rolls the pods.
const RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

func resolveRestart(_ context.Context, _ Env, p *RolloutRestartParams, data PlanData) (deployQ, string, string, error) {
	ns, d, err := renderDeployment(p.Namespace, p.Deployment, data)
	if err != nil {
		return deployQ{}, "", "", err
	}
	q := deployQ{ns, d}
	return q, q.target(), fmt.Sprintf("%s: rollout restart (pods are replaced one by one per the rollout strategy)", q.target()), nil
}

type restartState struct {
	RestartedAt string `json:"restartedAt,omitempty"`
}

func runRestart(ctx context.Context, _ Env, kube kubernetes.Interface, q deployQ) (Outcome, error) {
	d, err := kube.AppsV1().Deployments(q.Namespace).Get(ctx, q.Deployment, metav1.GetOptions{})
	if err != nil {
		return Outcome{}, err
	}
	if d.Spec.Paused {
		return Outcome{}, errors.New("the deployment is paused: a restart would not roll until it is resumed (kubectl rollout resume)")
	}
	now := time.Now().UTC().Format(time.RFC3339)
	patch := mustJSON(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{RestartedAtAnnotation: now}}}}})
	if _, err := kube.AppsV1().Deployments(q.Namespace).Patch(ctx, q.Deployment, types.StrategicMergePatchType, patch,
		metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
		return Outcome{}, Unanswered(err)
	}
	return Outcome{
		Before: mustJSON(restartState{d.Spec.Template.Annotations[RestartedAtAnnotation]}),
		After:  mustJSON(restartState{now}),
		Detail: fmt.Sprintf("%s: restart requested (%s=%s)", q.target(), RestartedAtAnnotation, now),
	}, nil
}

func verifyRestart(ctx context.Context, _ Env, kube kubernetes.Interface, q deployQ, o Outcome) error {
	var after restartState
	if err := json.Unmarshal(o.After, &after); err != nil || after.RestartedAt == "" {
		return fmt.Errorf("no recorded restart time (%v)", err)
	}
	d, err := kube.AppsV1().Deployments(q.Namespace).Get(ctx, q.Deployment, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if got := d.Spec.Template.Annotations[RestartedAtAnnotation]; got != after.RestartedAt {
		return fmt.Errorf("%s is %q, want %q", RestartedAtAnnotation, got, after.RestartedAt)
	}
	return nil
}

// --- kubernetes.scale

type scaleQ struct {
	deployQ
	Replicas    int32 `json:"replicas"`
	MaxReplicas int32 `json:"max_replicas"`
}

type scaleState struct {
	Replicas int32 `json:"replicas"`
}

func resolveScale(_ context.Context, _ Env, p *ScaleParams, data PlanData) (scaleQ, string, string, error) {
	ns, d, err := renderDeployment(p.Namespace, p.Deployment, data)
	if err != nil {
		return scaleQ{}, "", "", err
	}
	q := scaleQ{deployQ{ns, d}, int32(*p.Replicas), int32(*p.MaxReplicas)}
	return q, q.target(), fmt.Sprintf("%s: scale to %d replicas (max %d)", q.target(), q.Replicas, q.MaxReplicas), nil
}

func runScale(ctx context.Context, _ Env, kube kubernetes.Interface, q scaleQ) (Outcome, error) {
	if q.Replicas > q.MaxReplicas || q.Replicas < 0 {
		return Outcome{}, fmt.Errorf("%d replicas is outside 0..%d", q.Replicas, q.MaxReplicas)
	}
	var before int32
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := kube.AppsV1().Deployments(q.Namespace).GetScale(ctx, q.Deployment, metav1.GetOptions{})
		if err != nil {
			return err
		}
		before = s.Spec.Replicas
		if before == q.Replicas {
			return nil
		}
		s.Spec.Replicas = q.Replicas // s carries the resourceVersion it was read at
		_, err = kube.AppsV1().Deployments(q.Namespace).UpdateScale(ctx, q.Deployment, s, metav1.UpdateOptions{FieldManager: FieldManager})
		return Unanswered(err)
	})
	if err != nil {
		return Outcome{}, err
	}
	o := Outcome{Before: mustJSON(scaleState{before}), After: mustJSON(scaleState{q.Replicas}),
		Detail: fmt.Sprintf("%s: scaled from %d to %d replicas", q.target(), before, q.Replicas)}
	if before == q.Replicas {
		o.Detail = fmt.Sprintf("%s: already at %d replicas; nothing changed", q.target(), before)
	}
	return o, nil
}

func verifyScale(ctx context.Context, _ Env, kube kubernetes.Interface, q scaleQ, _ Outcome) error {
	s, err := kube.AppsV1().Deployments(q.Namespace).GetScale(ctx, q.Deployment, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if s.Spec.Replicas != q.Replicas {
		return fmt.Errorf("spec.replicas is %d, want %d", s.Spec.Replicas, q.Replicas)
	}
	return nil
}

func revertScale(ctx context.Context, _ Env, kube kubernetes.Interface, q scaleQ, o Outcome) error {
	var before scaleState
	if err := json.Unmarshal(o.Before, &before); err != nil {
		return fmt.Errorf("no recorded replica count to restore: %w", err)
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := kube.AppsV1().Deployments(q.Namespace).GetScale(ctx, q.Deployment, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if s.Spec.Replicas != q.Replicas {
			return fmt.Errorf("replicas are %d, not the %d the run set (changed since): not reverting", s.Spec.Replicas, q.Replicas)
		}
		s.Spec.Replicas = before.Replicas
		_, err = kube.AppsV1().Deployments(q.Namespace).UpdateScale(ctx, q.Deployment, s, metav1.UpdateOptions{FieldManager: FieldManager})
		return Unanswered(err)
	})
}

// --- kubernetes.rollback: kubectl's algorithm (k8s.io/kubectl
// pkg/polymorphichelpers/rollback.go) without its dependencies.

const (
	revisionAnnotation = "deployment.kubernetes.io/revision"
	// podTemplateHashLabel is appsv1.DefaultDeploymentUniqueLabelKey.
	podTemplateHashLabel = "pod-template-hash"
)

// rollbackSkipAnnotations are the deployment's own annotations a rollback
// keeps instead of taking the ReplicaSet's (kubectl's annotationsToSkip).
var rollbackSkipAnnotations = map[string]bool{
	corev1.LastAppliedConfigAnnotation:          true,
	revisionAnnotation:                          true,
	"deployment.kubernetes.io/revision-history": true,
	"deployment.kubernetes.io/desired-replicas": true,
	"deployment.kubernetes.io/max-replicas":     true,
	"deprecated.deployment.rollback.to":         true,
}

type rollbackQ struct {
	deployQ
	// Revision is the revision to return to, found when the plan was
	// made; 0 (no cluster then) means the previous one, found at run.
	Revision int64 `json:"revision"`
}

// rollbackState is the deployment's template and annotations: Before for
// Revert, After for Verify.
type rollbackState struct {
	Revision    int64                  `json:"revision,omitempty"`
	Template    corev1.PodTemplateSpec `json:"template"`
	Annotations map[string]string      `json:"annotations"`
}

func resolveRollback(ctx context.Context, env Env, p *RollbackParams, data PlanData) (rollbackQ, string, string, error) {
	ns, name, err := renderDeployment(p.Namespace, p.Deployment, data)
	if err != nil {
		return rollbackQ{}, "", "", err
	}
	q := rollbackQ{deployQ{ns, name}, int64(p.Revision)}
	to := "the previous revision"
	if q.Revision > 0 {
		to = fmt.Sprintf("revision %d", q.Revision)
	}
	if env.Kube != nil {
		d, err := env.Kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return rollbackQ{}, "", "", err
		}
		rs, rev, err := rollbackTarget(ctx, env.Kube, d, q.Revision)
		if err != nil {
			return rollbackQ{}, "", "", err
		}
		cur := d.Annotations[revisionAnnotation]
		if cur == "" {
			cur = "?"
		}
		if q.Revision == 0 {
			to = fmt.Sprintf("revision %d, the previous one (now at %s)", rev, cur)
		}
		if equalIgnoreHash(&rs.Spec.Template, &d.Spec.Template) {
			to += "; the template already matches it: nothing to do"
		}
		q.Revision = rev
	}
	return q, q.target(), fmt.Sprintf("%s: roll back to %s", q.target(), to), nil
}

// rollbackTarget finds the ReplicaSet of revision toRevision, or of the
// previous revision when toRevision is 0, among the ReplicaSets the
// deployment controls.
func rollbackTarget(ctx context.Context, kube kubernetes.Interface, d *appsv1.Deployment, toRevision int64) (*appsv1.ReplicaSet, int64, error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, 0, fmt.Errorf("deployment selector: %w", err)
	}
	if sel.Empty() || sel.String() == labels.Nothing().String() {
		return nil, 0, errors.New("the deployment's selector selects nothing")
	}
	list, err := kube.AppsV1().ReplicaSets(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, 0, err
	}
	var latest, previous *appsv1.ReplicaSet
	latestRev, previousRev := int64(-1), int64(-1)
	for i := range list.Items {
		rs := &list.Items[i]
		if !metav1.IsControlledBy(rs, d) {
			continue
		}
		v, err := strconv.ParseInt(rs.Annotations[revisionAnnotation], 10, 64)
		if err != nil {
			continue
		}
		switch {
		case toRevision > 0:
			if v == toRevision {
				return rs, v, nil
			}
		case v > latestRev:
			previous, previousRev = latest, latestRev
			latest, latestRev = rs, v
		case v > previousRev:
			previous, previousRev = rs, v
		}
	}
	if toRevision > 0 {
		return nil, 0, fmt.Errorf("unable to find the specified revision %d in the history of deployment %s/%s", toRevision, d.Namespace, d.Name)
	}
	if previous == nil {
		return nil, 0, fmt.Errorf("no rollout history found for deployment %s/%s: no previous revision", d.Namespace, d.Name)
	}
	return previous, previousRev, nil
}

// equalIgnoreHash compares two pod templates, ignoring the
// pod-template-hash label the controller adds to ReplicaSets.
func equalIgnoreHash(a, b *corev1.PodTemplateSpec) bool {
	a, b = a.DeepCopy(), b.DeepCopy()
	delete(a.Labels, podTemplateHashLabel)
	delete(b.Labels, podTemplateHashLabel)
	return equality.Semantic.DeepEqual(a, b)
}

func runRollback(ctx context.Context, _ Env, kube kubernetes.Interface, q rollbackQ) (Outcome, error) {
	d, err := kube.AppsV1().Deployments(q.Namespace).Get(ctx, q.Deployment, metav1.GetOptions{})
	if err != nil {
		return Outcome{}, err
	}
	if d.Spec.Paused {
		return Outcome{}, errors.New("you cannot roll back a paused deployment; resume it first (kubectl rollout resume) and try again")
	}
	rs, rev, err := rollbackTarget(ctx, kube, d, q.Revision)
	if err != nil {
		return Outcome{}, err
	}
	tmpl := rs.Spec.Template.DeepCopy()
	delete(tmpl.Labels, podTemplateHashLabel)
	after := rollbackState{Revision: rev, Template: *tmpl, Annotations: map[string]string{}}
	for k, v := range d.Annotations {
		if rollbackSkipAnnotations[k] {
			after.Annotations[k] = v
		}
	}
	for k, v := range rs.Annotations {
		if !rollbackSkipAnnotations[k] {
			after.Annotations[k] = v
		}
	}
	if equalIgnoreHash(&rs.Spec.Template, &d.Spec.Template) {
		return Outcome{After: mustJSON(after),
			Detail: fmt.Sprintf("%s: skipped rollback (current template already matches revision %d)", q.target(), rev)}, nil
	}
	before := rollbackState{Template: d.Spec.Template, Annotations: d.Annotations}
	if before.Annotations == nil {
		before.Annotations = map[string]string{}
	}
	if err := patchTemplate(ctx, kube, q.deployQ, &d.Spec.Template, after); err != nil {
		return Outcome{}, errChanged("the deployment's template", err)
	}
	from := d.Annotations[revisionAnnotation]
	if from == "" {
		from = "?"
	}
	return Outcome{Before: mustJSON(before), After: mustJSON(after),
		Detail: fmt.Sprintf("%s: rolled back from revision %s to revision %d", q.target(), from, rev)}, nil
}

// patchTemplate replaces the deployment's template and annotations with
// to's, by a JSON patch whose `test` op makes it apply only over cur: a
// retry, or a change by someone else in between, fails instead of
// overwriting.
func patchTemplate(ctx context.Context, kube kubernetes.Interface, q deployQ, cur *corev1.PodTemplateSpec, to rollbackState) error {
	patch := mustJSON([]map[string]any{
		{"op": "test", "path": "/spec/template", "value": cur},
		{"op": "replace", "path": "/spec/template", "value": to.Template},
		{"op": "add", "path": "/metadata/annotations", "value": to.Annotations},
	})
	_, err := kube.AppsV1().Deployments(q.Namespace).Patch(ctx, q.Deployment, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	return Unanswered(err)
}

func verifyRollback(ctx context.Context, _ Env, kube kubernetes.Interface, q rollbackQ, o Outcome) error {
	var after rollbackState
	if err := json.Unmarshal(o.After, &after); err != nil {
		return fmt.Errorf("no recorded template: %w", err)
	}
	d, err := kube.AppsV1().Deployments(q.Namespace).Get(ctx, q.Deployment, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if !equalIgnoreHash(&d.Spec.Template, &after.Template) {
		return fmt.Errorf("the template is not revision %d's", after.Revision)
	}
	return nil
}

func revertRollback(ctx context.Context, _ Env, kube kubernetes.Interface, q rollbackQ, o Outcome) error {
	if len(o.Before) == 0 {
		return nil // the run changed nothing
	}
	var before, after rollbackState
	if err := json.Unmarshal(o.Before, &before); err != nil {
		return fmt.Errorf("no recorded template to restore: %w", err)
	}
	if err := json.Unmarshal(o.After, &after); err != nil {
		return fmt.Errorf("no recorded template: %w", err)
	}
	if err := patchTemplate(ctx, kube, q.deployQ, &after.Template, before); err != nil {
		return errChanged("the deployment's template (since the rollback)", err)
	}
	return nil
}

// --- kubernetes.bluegreen_switch

type blueGreenQ struct {
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	Key       string `json:"key"`
	// From is the value the selector must hold for the switch: the
	// runbook's, or the live one when the plan was made.
	From string `json:"from,omitempty"`
	To   string `json:"to"`
}

func (q blueGreenQ) target() string { return target("service", q.Namespace, q.Service) }

type selectorState struct {
	Selector map[string]string `json:"selector"`
}

func resolveBlueGreen(ctx context.Context, env Env, p *BlueGreenParams, data PlanData) (blueGreenQ, string, string, error) {
	var q blueGreenQ
	var err error
	if q.Namespace, err = render("namespace", p.Namespace, data, checkNamespace); err != nil {
		return q, "", "", err
	}
	if q.Service, err = render("service", p.Service, data, checkName); err != nil {
		return q, "", "", err
	}
	if q.Key, err = render("key", p.Key, data, checkLabelKey); err != nil {
		return q, "", "", err
	}
	if q.To, err = render("to", p.To, data, checkLabelValue); err != nil {
		return q, "", "", err
	}
	if !p.From.IsZero() {
		if q.From, err = render("from", p.From, data, checkLabelValue); err != nil {
			return q, "", "", err
		}
	} else if env.Kube != nil {
		svc, err := env.Kube.CoreV1().Services(q.Namespace).Get(ctx, q.Service, metav1.GetOptions{})
		if err != nil {
			return q, "", "", err
		}
		cur, ok := svc.Spec.Selector[q.Key]
		if !ok {
			return q, "", "", fmt.Errorf("%s: the selector has no %s label to switch", q.target(), q.Key)
		}
		q.From = cur
	}
	from := q.From
	if from == "" {
		from = "(current)"
	}
	return q, q.target(), fmt.Sprintf("%s: selector %s %s → %s", q.target(), q.Key, from, q.To), nil
}

func runBlueGreen(ctx context.Context, _ Env, kube kubernetes.Interface, q blueGreenQ) (Outcome, error) {
	svc, err := kube.CoreV1().Services(q.Namespace).Get(ctx, q.Service, metav1.GetOptions{})
	if err != nil {
		return Outcome{}, err
	}
	old := svc.Spec.Selector
	cur, ok := old[q.Key]
	switch {
	case !ok:
		return Outcome{}, fmt.Errorf("the selector has no %s label to switch", q.Key)
	case cur == q.To:
		return Outcome{After: mustJSON(selectorState{old}),
			Detail: fmt.Sprintf("%s: selector %s is already %s; nothing changed", q.target(), q.Key, q.To)}, nil
	case q.From != "" && cur != q.From:
		return Outcome{}, fmt.Errorf("selector %s is %q, not %q as planned: not switching", q.Key, cur, q.From)
	}
	sel := maps.Clone(old)
	sel[q.Key] = q.To
	if err := patchSelector(ctx, kube, q, old, sel); err != nil {
		return Outcome{}, errChanged("the service's selector", err)
	}
	return Outcome{Before: mustJSON(selectorState{old}), After: mustJSON(selectorState{sel}),
		Detail: fmt.Sprintf("%s: selector %s switched from %s to %s", q.target(), q.Key, cur, q.To)}, nil
}

// patchSelector replaces the selector with to, only over from (a JSON
// patch `test` op): a merge patch could only add keys.
func patchSelector(ctx context.Context, kube kubernetes.Interface, q blueGreenQ, from, to map[string]string) error {
	patch := mustJSON([]map[string]any{
		{"op": "test", "path": "/spec/selector", "value": from},
		{"op": "replace", "path": "/spec/selector", "value": to},
	})
	_, err := kube.CoreV1().Services(q.Namespace).Patch(ctx, q.Service, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	return Unanswered(err)
}

func verifyBlueGreen(ctx context.Context, _ Env, kube kubernetes.Interface, q blueGreenQ, o Outcome) error {
	var after selectorState
	if err := json.Unmarshal(o.After, &after); err != nil {
		return fmt.Errorf("no recorded selector: %w", err)
	}
	svc, err := kube.CoreV1().Services(q.Namespace).Get(ctx, q.Service, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if !maps.Equal(svc.Spec.Selector, after.Selector) || svc.Spec.Selector[q.Key] != q.To {
		return fmt.Errorf("the selector is %v, want %v", svc.Spec.Selector, after.Selector)
	}
	return nil
}

func revertBlueGreen(ctx context.Context, _ Env, kube kubernetes.Interface, q blueGreenQ, o Outcome) error {
	if len(o.Before) == 0 {
		return nil // the run changed nothing
	}
	var before, after selectorState
	if err := json.Unmarshal(o.Before, &before); err != nil {
		return fmt.Errorf("no recorded selector to restore: %w", err)
	}
	if err := json.Unmarshal(o.After, &after); err != nil {
		return fmt.Errorf("no recorded selector: %w", err)
	}
	if err := patchSelector(ctx, kube, q, after.Selector, before.Selector); err != nil {
		return errChanged("the service's selector (since the switch)", err)
	}
	return nil
}
