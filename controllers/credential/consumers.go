package credential

import (
	"context"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// The manager caches Deployments, StatefulSets and DaemonSets to know which of them read a
// Credential's Secret (status.consumers, rolloutRestart auto) and whether a restart has finished
// rolling out (the restart budget): list and watch, reduced by stripWorkload to what that needs.
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;list;watch;patch

// indexWorkloadSecrets indexes workloads by the names of the Secrets their pod templates read
// (the cache keys it by namespace/name).
const indexWorkloadSecrets = "workload.secret"

// maxConsumers bounds status.consumers.
const maxConsumers = 32

// workloadKinds are the kinds of workloads whose consumers are known and that can be restarted.
var workloadKinds = []v1alpha1.WorkloadKind{"Deployment", "StatefulSet", "DaemonSet"}

// newWorkload returns an empty object of kind.
func newWorkload(kind v1alpha1.WorkloadKind) client.Object {
	switch kind {
	case "StatefulSet":
		return &appsv1.StatefulSet{}
	case "DaemonSet":
		return &appsv1.DaemonSet{}
	}
	return &appsv1.Deployment{}
}

// newWorkloadList returns an empty list of kind.
func newWorkloadList(kind v1alpha1.WorkloadKind) client.ObjectList {
	switch kind {
	case "StatefulSet":
		return &appsv1.StatefulSetList{}
	case "DaemonSet":
		return &appsv1.DaemonSetList{}
	}
	return &appsv1.DeploymentList{}
}

// workloadItems returns the items of a list newWorkloadList made.
func workloadItems(l client.ObjectList) []client.Object {
	var out []client.Object
	switch l := l.(type) {
	case *appsv1.DeploymentList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *appsv1.StatefulSetList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *appsv1.DaemonSetList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	}
	return out
}

// kindOfWorkload is the kind of a workload object.
func kindOfWorkload(o client.Object) v1alpha1.WorkloadKind {
	switch o.(type) {
	case *appsv1.StatefulSet:
		return "StatefulSet"
	case *appsv1.DaemonSet:
		return "DaemonSet"
	}
	return "Deployment"
}

// podTemplate is the pod template of a workload, nil for anything else.
func podTemplate(o client.Object) *corev1.PodTemplateSpec {
	switch w := o.(type) {
	case *appsv1.Deployment:
		return &w.Spec.Template
	case *appsv1.StatefulSet:
		return &w.Spec.Template
	case *appsv1.DaemonSet:
		return &w.Spec.Template
	}
	return nil
}

// secretUses says, for each Secret a pod spec reads, how it reads it (each way once, in the
// order volume, projected, env, envFrom).
func secretUses(spec *corev1.PodSpec) map[string][]v1alpha1.SecretUse {
	uses := map[string][]v1alpha1.SecretUse{}
	add := func(name string, u v1alpha1.SecretUse) {
		if name != "" && !slices.Contains(uses[name], u) {
			uses[name] = append(uses[name], u)
		}
	}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			add(v.Secret.SecretName, v1alpha1.SecretUseVolume)
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.Secret != nil {
					add(s.Secret.Name, v1alpha1.SecretUseProjected)
				}
			}
		}
	}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range cs {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					add(e.ValueFrom.SecretKeyRef.Name, v1alpha1.SecretUseEnv)
				}
			}
			for _, e := range c.EnvFrom {
				if e.SecretRef != nil {
					add(e.SecretRef.Name, v1alpha1.SecretUseEnvFrom)
				}
			}
		}
	}
	order := []v1alpha1.SecretUse{v1alpha1.SecretUseVolume, v1alpha1.SecretUseProjected, v1alpha1.SecretUseEnv, v1alpha1.SecretUseEnvFrom}
	for _, u := range uses {
		slices.SortFunc(u, func(a, b v1alpha1.SecretUse) int { return slices.Index(order, a) - slices.Index(order, b) })
	}
	return uses
}

// workloadSecrets are the names of the Secrets a workload's pod template reads: its index keys.
func workloadSecrets(o client.Object) []string {
	t := podTemplate(o)
	if t == nil {
		return nil
	}
	uses := secretUses(&t.Spec)
	names := make([]string, 0, len(uses))
	for n := range uses {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// stripWorkload is the cache transform of workloads: it keeps what consumers and restarts read
// (name, labels, the Secret references of the pod template, tokenkeeper's restart annotation,
// the rollout's progress) and drops the rest (images, commands, resources, probes, most env),
// so that caching every workload of a cluster costs a few hundred bytes each.
func stripWorkload(obj any) (any, error) {
	o, ok := obj.(client.Object)
	if !ok {
		return obj, nil
	}
	meta := metav1.ObjectMeta{Name: o.GetName(), Namespace: o.GetNamespace(), UID: o.GetUID(), ResourceVersion: o.GetResourceVersion(),
		Generation: o.GetGeneration(), Labels: o.GetLabels(), DeletionTimestamp: o.GetDeletionTimestamp()}
	switch w := o.(type) {
	case *appsv1.Deployment:
		return &appsv1.Deployment{TypeMeta: w.TypeMeta, ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Replicas: w.Spec.Replicas,
			Template: stripTemplate(&w.Spec.Template)}, Status: appsv1.DeploymentStatus{ObservedGeneration: w.Status.ObservedGeneration,
			Replicas: w.Status.Replicas, UpdatedReplicas: w.Status.UpdatedReplicas, AvailableReplicas: w.Status.AvailableReplicas}}, nil
	case *appsv1.StatefulSet:
		return &appsv1.StatefulSet{TypeMeta: w.TypeMeta, ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Replicas: w.Spec.Replicas,
			Template: stripTemplate(&w.Spec.Template), UpdateStrategy: w.Spec.UpdateStrategy}, Status: appsv1.StatefulSetStatus{
			ObservedGeneration: w.Status.ObservedGeneration, Replicas: w.Status.Replicas, UpdatedReplicas: w.Status.UpdatedReplicas,
			ReadyReplicas: w.Status.ReadyReplicas}}, nil
	case *appsv1.DaemonSet:
		return &appsv1.DaemonSet{TypeMeta: w.TypeMeta, ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Template: stripTemplate(&w.Spec.Template),
			UpdateStrategy: w.Spec.UpdateStrategy}, Status: appsv1.DaemonSetStatus{ObservedGeneration: w.Status.ObservedGeneration,
			DesiredNumberScheduled: w.Status.DesiredNumberScheduled, UpdatedNumberScheduled: w.Status.UpdatedNumberScheduled,
			NumberAvailable: w.Status.NumberAvailable}}, nil
	}
	return obj, nil
}

// stripTemplate keeps of a pod template the restart annotation and the Secret references.
func stripTemplate(t *corev1.PodTemplateSpec) corev1.PodTemplateSpec {
	var out corev1.PodTemplateSpec
	if v, ok := t.Annotations[v1alpha1.AnnotationRestartedFor]; ok {
		out.Annotations = map[string]string{v1alpha1.AnnotationRestartedFor: v}
	}
	for _, v := range t.Spec.Volumes {
		switch {
		case v.Secret != nil:
			out.Spec.Volumes = append(out.Spec.Volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{
				Secret: &corev1.SecretVolumeSource{SecretName: v.Secret.SecretName}}})
		case v.Projected != nil:
			p := &corev1.ProjectedVolumeSource{}
			for _, s := range v.Projected.Sources {
				if s.Secret != nil {
					p.Sources = append(p.Sources, corev1.VolumeProjection{Secret: &corev1.SecretProjection{LocalObjectReference: s.Secret.LocalObjectReference}})
				}
			}
			if len(p.Sources) > 0 {
				out.Spec.Volumes = append(out.Spec.Volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{Projected: p}})
			}
		}
	}
	strip := func(cs []corev1.Container) []corev1.Container {
		var kept []corev1.Container
		for _, c := range cs {
			k := corev1.Container{Name: c.Name}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					k.Env = append(k.Env, corev1.EnvVar{Name: e.Name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
						LocalObjectReference: e.ValueFrom.SecretKeyRef.LocalObjectReference}}})
				}
			}
			for _, e := range c.EnvFrom {
				if e.SecretRef != nil {
					k.EnvFrom = append(k.EnvFrom, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: e.SecretRef.LocalObjectReference}})
				}
			}
			if len(k.Env) > 0 || len(k.EnvFrom) > 0 {
				kept = append(kept, k)
			}
		}
		return kept
	}
	out.Spec.InitContainers, out.Spec.Containers = strip(t.Spec.InitContainers), strip(t.Spec.Containers)
	return out
}

// consumersOf lists, from the cache's index, every workload of namespace whose pod template
// reads Secret name, sorted by kind and name.
func consumersOf(ctx context.Context, c client.Reader, namespace, name string) ([]v1alpha1.SecretConsumer, error) {
	var out []v1alpha1.SecretConsumer
	for _, kind := range workloadKinds {
		l := newWorkloadList(kind)
		if err := c.List(ctx, l, client.InNamespace(namespace), client.MatchingFields{indexWorkloadSecrets: name}); err != nil {
			return nil, err
		}
		for _, o := range workloadItems(l) {
			if o.GetDeletionTimestamp() != nil {
				continue
			}
			out = append(out, v1alpha1.SecretConsumer{Kind: kind, Name: o.GetName(), Via: secretUses(&podTemplate(o).Spec)[name]})
		}
	}
	slices.SortFunc(out, func(a, b v1alpha1.SecretConsumer) int {
		return strings.Compare(string(a.Kind)+"/"+a.Name, string(b.Kind)+"/"+b.Name)
	})
	return out, nil
}

// readsAtStart reports whether a consumer reads the Secret only when its containers start.
func readsAtStart(c v1alpha1.SecretConsumer) bool {
	return slices.Contains(c.Via, v1alpha1.SecretUseEnv) || slices.Contains(c.Via, v1alpha1.SecretUseEnvFrom)
}

// forWorkload maps a workload to the Credentials whose target Secret it reads (old and new
// versions both come here on an update: one that stops reading a Secret is dropped from it).
func (r *Reconciler) forWorkload(ctx context.Context, o client.Object) []reconcile.Request {
	var reqs []reconcile.Request
	for _, s := range workloadSecrets(o) {
		reqs = append(reqs, r.list(ctx, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexTargetSecret: s})...)
	}
	return reqs
}

// selectWorkloads lists the workloads of namespace of kind (all kinds when empty) whose labels
// sel matches.
func selectWorkloads(ctx context.Context, c client.Reader, namespace string, kind v1alpha1.WorkloadKind, sel labels.Selector) ([]client.Object, error) {
	var out []client.Object
	for _, k := range workloadKinds {
		if kind != "" && k != kind {
			continue
		}
		l := newWorkloadList(k)
		if err := c.List(ctx, l, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
			return nil, err
		}
		out = append(out, workloadItems(l)...)
	}
	return out, nil
}

// rolledOut reports whether a workload's latest pod template runs everywhere it should: its
// controller saw the latest generation and every replica is updated and available.
func rolledOut(o client.Object) bool {
	switch w := o.(type) {
	case *appsv1.Deployment:
		want := int32(1)
		if w.Spec.Replicas != nil {
			want = *w.Spec.Replicas
		}
		s := w.Status
		return s.ObservedGeneration >= w.Generation && s.UpdatedReplicas >= want && s.Replicas == s.UpdatedReplicas && s.AvailableReplicas >= want
	case *appsv1.StatefulSet:
		want := int32(1)
		if w.Spec.Replicas != nil {
			want = *w.Spec.Replicas
		}
		s := w.Status
		if w.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
			return true // nothing rolls: pods take the new template when someone deletes them
		}
		return s.ObservedGeneration >= w.Generation && s.UpdatedReplicas >= want && s.ReadyReplicas >= want
	case *appsv1.DaemonSet:
		s := w.Status
		if w.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType {
			return true
		}
		return s.ObservedGeneration >= w.Generation && s.UpdatedNumberScheduled >= s.DesiredNumberScheduled && s.NumberAvailable >= s.DesiredNumberScheduled
	}
	return true
}
