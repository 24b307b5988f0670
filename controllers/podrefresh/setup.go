package podrefresh

import (
	"context"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// indexMountedSecret indexes running pods by the names of the Secrets they mount as volumes.
const indexMountedSecret = "pod.mountedSecret"

// CacheByObject restricts the manager's cache of pods to running ones, each reduced to the
// Secrets it mounts (stripPod). Nothing caches pods unless the refresher is on.
func CacheByObject() map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&corev1.Pod{}: {Field: fields.OneTermEqualSelector("status.phase", string(corev1.PodRunning)), Transform: stripPod},
	}
}

// SetupWithManager indexes pods by the Secrets they mount and registers the controller: token
// Secrets' changes record rotations, pods that start running during one are refreshed too.
func (r *Reconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.Options.QPS <= 0 {
		r.Options.QPS = DefaultQPS
	}
	r.limiter = rate.NewLimiter(rate.Limit(r.Options.QPS), max(1, int(r.Options.QPS)))
	r.rotations = newRotations()
	if r.window == 0 {
		r.window = window
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &corev1.Pod{}, indexMountedSecret, func(o client.Object) []string {
		return mountedSecrets(o)
	}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).Named("pod-refresh").
		WatchesRawSource(source.Kind(mgr.GetCache(), &corev1.Secret{}, handler.TypedFuncs[*corev1.Secret, reconcile.Request]{
			UpdateFunc: r.secretUpdated,
			DeleteFunc: func(_ context.Context, e event.TypedDeleteEvent[*corev1.Secret], _ workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.rotations.forget(e.Object.Namespace, e.Object.Name)
			},
		})).
		WatchesRawSource(source.Kind(mgr.GetCache(), &corev1.Pod{}, handler.TypedFuncs[*corev1.Pod, reconcile.Request]{
			CreateFunc: r.podRunning,
		})).
		Complete(r)
}

// secretUpdated records a rotation when the token of a token Secret (a Credential's, or a
// ClusterCredential's copy) changed and queues its namespace. A Secret seen for the first time
// (the manager starting, a new Credential) is no rotation: pods that mount it read it when they
// started.
func (r *Reconciler) secretUpdated(_ context.Context, e event.TypedUpdateEvent[*corev1.Secret], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	s := e.ObjectNew
	if role := s.Labels[v1alpha1.LabelRole]; s.Labels[v1alpha1.LabelManagedBy] != v1alpha1.ManagedByValue || role != "token" && role != v1alpha1.RoleCopy {
		return
	}
	fp := fingerprint(s)
	if fp == "" || fp == fingerprint(e.ObjectOld) {
		return
	}
	r.rotations.record(s.Namespace, s.Name, fp, r.Clock.Now())
	q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: s.Namespace}})
}

// podRunning queues the namespace of a pod that started running (entered the cache) while a
// Secret it mounts is within a rotation's window: it may have mounted the Secret before the
// rotation.
func (r *Reconciler) podRunning(_ context.Context, e event.TypedCreateEvent[*corev1.Pod], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	now := r.Clock.Now()
	for _, name := range mountedSecrets(e.Object) {
		if r.rotations.has(e.Object.Namespace, name, now, r.window) {
			q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: e.Object.Namespace}})
			return
		}
	}
}
