package podrefresh

import (
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// mountedSecrets are the names of the Secrets a pod mounts as volumes, directly or through a
// projected volume: its index keys. Secrets read through env or envFrom are not among them (a
// running container never sees those change; that is rolloutRestart's job).
func mountedSecrets(o any) []string {
	pod, ok := o.(*corev1.Pod)
	if !ok {
		return nil
	}
	var names []string
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName != "" {
			names = append(names, v.Secret.SecretName)
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.Secret != nil && s.Secret.Name != "" {
					names = append(names, s.Secret.Name)
				}
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// stripPod is the cache transform of pods: it keeps what the refresher reads (name, UID, creation
// and deletion times, phase, the names of the mounted Secrets, the synced-token annotation) and
// drops the rest (containers, env, images, status), so that caching every running pod of a
// cluster costs a few hundred bytes each.
func stripPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{TypeMeta: pod.TypeMeta, ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID,
		ResourceVersion: pod.ResourceVersion, CreationTimestamp: pod.CreationTimestamp, DeletionTimestamp: pod.DeletionTimestamp},
		Status: corev1.PodStatus{Phase: pod.Status.Phase}}
	if v, ok := pod.Annotations[v1alpha1.AnnotationSyncedToken]; ok {
		out.Annotations = map[string]string{v1alpha1.AnnotationSyncedToken: v}
	}
	for _, name := range mountedSecrets(pod) {
		out.Spec.Volumes = append(out.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: name}}})
	}
	return out, nil
}

// parseSynced reads a synced-token annotation: secret=fingerprint pairs, comma separated.
// Malformed entries are dropped.
func parseSynced(value string) map[string]string {
	out := map[string]string{}
	for _, entry := range strings.Split(value, ",") {
		secret, fp, ok := strings.Cut(strings.TrimSpace(entry), "=")
		if ok && secret != "" && fp != "" {
			out[secret] = fp
		}
	}
	return out
}

// SyncedAnnotation is the synced-token annotation a pod should carry once it was asked to write
// fingerprint fp of Secret secret: current (the pod's value, possibly empty) with secret's entry
// set, and entries of Secrets the pod no longer mounts (mounted, when not nil) dropped, so that
// the value never grows past the pod's volumes. Entries are sorted by Secret name.
func SyncedAnnotation(current, secret, fp string, mounted []string) string {
	entries := parseSynced(current)
	entries[secret] = fp
	keys := make([]string, 0, len(entries))
	for k := range entries {
		if mounted == nil || k == secret || slices.Contains(mounted, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + entries[k]
	}
	return strings.Join(parts, ",")
}

// synced reports whether a pod's annotation says it was asked to write fingerprint fp of secret.
func synced(pod *corev1.Pod, secret, fp string) bool {
	return parseSynced(pod.Annotations[v1alpha1.AnnotationSyncedToken])[secret] == fp
}

// rotation is one change of a token Secret's token that this manager saw.
type rotation struct {
	fp string    // the new token's fingerprint
	at time.Time // when the manager saw the change
	// patched are the pods asked to refresh for this rotation: they count against the bound even
	// before the cache shows their annotation.
	patched map[types.UID]struct{}
	// counted: the pods left over by the bound were added to the metric.
	counted bool
}

// plan is what to do for one rotation of one Secret, from the pods that mount it.
type plan struct {
	patch   []*corev1.Pod // pods to patch, in order
	bounded int           // pods that need a refresh but are beyond the bound
	done    int           // pods that already carry the fingerprint (or were patched for it)
}

// planRotation chooses, among the running pods mounting secret, those to ask for a refresh: not
// being deleted, started before the rotation (a pod created after it mounted the new token), not
// yet carrying the fingerprint, and at most bound per rotation counting those that already do.
// The choice is by name, so that passes that see a pod's patch late choose the same pods again.
func planRotation(pods []corev1.Pod, secret string, rot *rotation, bound int) plan {
	var p plan
	var need []*corev1.Pod
	for i := range pods {
		pod := &pods[i]
		_, patched := rot.patched[pod.UID]
		switch {
		case synced(pod, secret, rot.fp) || patched:
			p.done++
		case pod.DeletionTimestamp != nil, pod.Status.Phase != corev1.PodRunning, !pod.CreationTimestamp.Time.Before(rot.at):
		default:
			need = append(need, pod)
		}
	}
	slices.SortFunc(need, func(a, b *corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	n := min(len(need), max(0, bound-p.done))
	p.patch, p.bounded = need[:n], len(need)-n
	return p
}
