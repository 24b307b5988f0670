// Package podrefresh brings a rotated token to the running pods that mount its Secret within
// seconds. The kubelet rewrites a pod's Secret volumes whenever it syncs the pod: periodically
// (its syncFrequency, one minute by default, plus up to half of it in jitter) and at once when
// the pod object changes. So when a token Secret's token changes, the refresher patches an
// annotation (tokenkeeper.io/synced-token: secret=fingerprint) onto each running pod that mounts
// the Secret as a volume, directly or projected; the kubelet syncs the pod and writes the new
// token from its watch of the Secret.
//
// The patches are bounded: at most MaxPodsPerRotation pods per Secret and rotation (the others
// wait for the kubelet's periodic sync, counted in tokenkeeper_pod_refreshes_bounded_total),
// QPS patches a second manager-wide, and patchesPerPass per namespace before the namespace goes
// back to the end of the queue, so that a namespace with many pods delays no other by more than
// a few patches. A pod that carries a token's fingerprint is never patched for it again: a
// second pass, a manager restart or another replica patches nothing.
package podrefresh

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
)

// The manager caches running pods, reduced by stripPod to the Secrets they mount, and patches
// one annotation on them.
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;patch

const (
	// DefaultMaxPodsPerRotation is the default bound of pods patched per Secret and rotation.
	DefaultMaxPodsPerRotation = 100
	// DefaultQPS is the default bound of pod patches per second, manager-wide.
	DefaultQPS = 20
	// patchesPerPass is how many pods one pass over a namespace patches before the namespace
	// goes back to the end of the queue, behind the other namespaces waiting.
	patchesPerPass = 10
	// window is how long after a rotation pods are still patched for it: by then the kubelet's
	// periodic sync (1 minute plus up to 50% jitter by default) has brought them the token.
	window = 2 * time.Minute
)

// Options bound the refresher's writes.
type Options struct {
	// MaxPodsPerRotation bounds the pods patched per Secret and rotation; 0 turns the refresher
	// off (no pod is cached or patched).
	MaxPodsPerRotation int
	// QPS bounds the pod patches per second, manager-wide; 0 means DefaultQPS.
	QPS float64
}

// Reconciler refreshes the pods of one namespace (requests carry only a namespace) for the
// rotations of its token Secrets this manager saw.
type Reconciler struct {
	client.Client
	Clock   clock.PassiveClock
	Options Options

	limiter   *rate.Limiter
	rotations *rotations
	window    time.Duration
}

// Reconcile patches, for each rotation of the namespace still in its window, the pods that have
// yet to see it, at most patchesPerPass in all; it comes back for the rest.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	left, more := patchesPerPass, false
	for _, s := range r.rotations.active(req.Namespace, r.Clock.Now(), r.window) {
		n, rest, err := r.refresh(ctx, req.Namespace, s.name, s.rot, left)
		if err != nil {
			return ctrl.Result{}, err
		}
		left -= n
		more = more || rest
	}
	if more {
		// Behind every namespace already waiting: one tenant's pods never hold up another's.
		return ctrl.Result{RequeueAfter: time.Millisecond}, nil
	}
	return ctrl.Result{}, nil
}

// refresh patches up to left pods for one rotation of Secret name. It returns how many patches
// it sent and whether pods remain to patch.
func (r *Reconciler) refresh(ctx context.Context, namespace, name string, rot *rotation, left int) (sent int, more bool, err error) {
	log := logf.FromContext(ctx).WithValues("secret", name, "fingerprint", rot.fp)
	sec := &corev1.Secret{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, sec); err != nil {
		if apierrors.IsNotFound(err) {
			r.rotations.forget(namespace, name)
			return 0, false, nil
		}
		return 0, false, err
	}
	if fingerprint(sec) != rot.fp {
		return 0, false, nil // a newer rotation: its event records it and brings the namespace back
	}
	var pods corev1.PodList
	if err := r.List(ctx, &pods, client.InNamespace(namespace), client.MatchingFields{indexMountedSecret: name}); err != nil {
		return 0, false, err
	}
	p := planRotation(pods.Items, name, rot, r.Options.MaxPodsPerRotation)
	if !rot.counted {
		rot.counted = true
		if p.bounded > 0 {
			metrics.PodRefreshesBounded.WithLabelValues(namespace).Add(float64(p.bounded))
			log.Info("more pods mount the Secret than --pod-refresh-max-pods: the others get the new token at the kubelet's periodic sync",
				"pods", p.done+len(p.patch)+p.bounded, "bound", r.Options.MaxPodsPerRotation, "left", p.bounded)
		}
	}
	for _, pod := range p.patch {
		if sent == left {
			return sent, true, nil
		}
		if err := r.limiter.Wait(ctx); err != nil {
			return sent, false, err
		}
		sent++
		err := r.patch(ctx, pod, name, rot.fp)
		switch {
		case err == nil:
			rot.patched[pod.UID] = struct{}{}
			metrics.PodRefreshes.WithLabelValues(namespace).Inc()
		case apierrors.IsNotFound(err):
		case apierrors.IsConflict(err):
			more = true // the cache is behind; the next pass sees the pod's latest version
		case apierrors.IsForbidden(err) || apierrors.IsInvalid(err):
			// Refused (a policy webhook, say): counted against the bound, never retried.
			rot.patched[pod.UID] = struct{}{}
			log.Info("the API server refused the refresh annotation: the pod gets the token at the kubelet's periodic sync",
				"pod", pod.Name, "reason", apierrors.ReasonForError(err))
		default:
			return sent, more, fmt.Errorf("patching pod %s: %w", pod.Name, err)
		}
	}
	if sent > 0 {
		log.V(1).Info("asked the kubelet to refresh pods", "pods", sent)
	}
	return sent, more, nil
}

// patch sets the pod's synced-token annotation for secret, with the pod's resourceVersion: two
// Secrets' patches of one pod never drop each other's entry.
func (r *Reconciler) patch(ctx context.Context, pod *corev1.Pod, secret, fp string) error {
	orig := pod.DeepCopy()
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[v1alpha1.AnnotationSyncedToken] = SyncedAnnotation(orig.Annotations[v1alpha1.AnnotationSyncedToken], secret, fp, mountedSecrets(orig))
	return r.Patch(ctx, pod, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
}

// fingerprint is the fingerprint of a token Secret's token, as in the Credential's
// status.tokenFingerprint; "" when it holds none.
func fingerprint(sec *corev1.Secret) string {
	tok, ok := sec.Data[v1alpha1.SecretKeyToken]
	if !ok {
		return ""
	}
	return issuer.Fingerprint(string(tok))
}

// rotations are the token changes this manager saw and still refreshes pods for, by namespace
// and Secret name. Only the map is shared with the event handlers: a rotation's fields are read
// and written by its namespace's reconcile alone (the workqueue never runs one key twice at once),
// and a new rotation of a Secret replaces the entry rather than changing it.
type rotations struct {
	mu   sync.Mutex
	byNS map[string]map[string]*rotation
}

func newRotations() *rotations { return &rotations{byNS: map[string]map[string]*rotation{}} }

// record notes that Secret namespace/name now holds the token of fingerprint fp.
func (t *rotations) record(namespace, name, fp string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byNS[namespace] == nil {
		t.byNS[namespace] = map[string]*rotation{}
	}
	t.byNS[namespace][name] = &rotation{fp: fp, at: at, patched: map[types.UID]struct{}{}}
}

// forget drops the rotation of a Secret that is gone.
func (t *rotations) forget(namespace, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.byNS[namespace], name)
	if len(t.byNS[namespace]) == 0 {
		delete(t.byNS, namespace)
	}
}

// has reports whether Secret namespace/name rotated within the window.
func (t *rotations) has(namespace, name string, now time.Time, window time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	rot, ok := t.byNS[namespace][name]
	return ok && now.Sub(rot.at) < window
}

type namedRotation struct {
	name string
	rot  *rotation
}

// active returns the namespace's rotations within the window, sorted by Secret name, and drops
// the older ones.
func (t *rotations) active(namespace string, now time.Time, window time.Duration) []namedRotation {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []namedRotation
	for name, rot := range t.byNS[namespace] {
		if now.Sub(rot.at) >= window {
			delete(t.byNS[namespace], name)
			continue
		}
		out = append(out, namedRotation{name: name, rot: rot})
	}
	if len(t.byNS[namespace]) == 0 {
		delete(t.byNS, namespace)
	}
	slices.SortFunc(out, func(a, b namedRotation) int { return strings.Compare(a.name, b.name) })
	return out
}
