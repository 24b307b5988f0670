package clustercredential

import (
	"context"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
)

// SetupWithManager registers the controller. Every watch is of what the manager caches already:
// ClusterCredentials, their child Credentials, Namespaces (label changes), TokenPolicies and
// issuers (spec changes), and Secrets, of which the cache holds only tokenkeeper's own (the
// child's token Secret and the copies, labelled app.kubernetes.io/managed-by=tokenkeeper): no
// Secret of the cluster is listed.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.resolver = &resolve.Resolver{Client: mgr.GetClient(), APIReader: r.APIReader}
	deleting := predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool { return !e.ObjectNew.GetDeletionTimestamp().IsZero() }}
	all := handler.EnqueueRequestsFromMapFunc(r.all)
	return ctrl.NewControllerManagedBy(mgr).
		Named("clustercredential").
		For(&v1alpha1.ClusterCredential{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, predicate.LabelChangedPredicate{}, deleting))).
		Watches(&v1alpha1.Credential{}, handler.EnqueueRequestsFromMapFunc(r.forChild)).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.forSecret)).
		// Both the old and the new labels are mapped: a namespace that leaves a selector is
		// cleaned up by the ClusterCredential it left.
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.forNamespace),
			builder.WithPredicates(predicate.LabelChangedPredicate{})).
		Watches(&v1alpha1.TokenPolicy{}, all, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.ClusterIssuer{}, all, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.Issuer{}, all, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(r)
}

func request(name string) []reconcile.Request {
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: name}}}
}

// forChild maps a child Credential (its status changes: a new token, a failure) to its owner.
func (r *Reconciler) forChild(_ context.Context, o client.Object) []reconcile.Request {
	if name := o.GetLabels()[v1alpha1.LabelClusterCredential]; name != "" && o.GetNamespace() == r.Namespace {
		return request(name)
	}
	return nil
}

// forSecret maps a copy to its ClusterCredential (drift is repaired, a deleted copy recreated)
// and a child's token Secret to its ClusterCredential (a new token is copied).
func (r *Reconciler) forSecret(ctx context.Context, o client.Object) []reconcile.Request {
	if name := o.GetLabels()[v1alpha1.LabelClusterCredential]; name != "" {
		return request(name)
	}
	owner := metav1.GetControllerOf(o)
	if o.GetNamespace() != r.Namespace || owner == nil || owner.Kind != "Credential" ||
		!strings.HasPrefix(owner.Name, v1alpha1.ClusterCredentialPrefix) {
		return nil
	}
	child := &v1alpha1.Credential{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: owner.Name}, child); err != nil {
		return nil
	}
	return r.forChild(ctx, child)
}

// forNamespace maps a namespace to the ClusterCredentials whose selector picks it.
func (r *Reconciler) forNamespace(ctx context.Context, ns client.Object) []reconcile.Request {
	var list v1alpha1.ClusterCredentialList
	if err := r.List(ctx, &list); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, cc := range list.Items {
		sel, err := metav1.LabelSelectorAsSelector(&cc.Spec.NamespaceSelector)
		if err != nil || sel.Matches(labels.Set(ns.GetLabels())) {
			reqs = append(reqs, request(cc.Name)...)
		}
	}
	return reqs
}

// all maps a policy or issuer change to every ClusterCredential: there are few.
func (r *Reconciler) all(ctx context.Context, _ client.Object) []reconcile.Request {
	var list v1alpha1.ClusterCredentialList
	if err := r.List(ctx, &list); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, cc := range list.Items {
		reqs = append(reqs, request(cc.Name)...)
	}
	return reqs
}
