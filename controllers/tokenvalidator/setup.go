package tokenvalidator

import (
	"context"
	"slices"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/api/meta"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/login"
	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
)

// SetupWithManager watches TokenValidators, the issuers they trust, policies and the Secrets
// they read, on every replica (not only the leader): each replica's validation endpoint needs
// the validators. An issuer's change brings back only the validators that trust it.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Elected == nil {
		r.Elected = mgr.Elected()
	}
	r.resolver = &resolve.Resolver{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), ClusterResourceNamespace: r.ClusterResourceNamespace}
	r.validators = &login.Validators{Resolver: r.resolver, Clock: r.Clock, Egress: r.Egress, OnKeyRefresh: func(issuer string, err error) {
		result := "ok"
		if err != nil {
			result = "error"
		}
		metrics.KeySetRefreshes.WithLabelValues(issuer, result).Inc()
	}}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &v1alpha1.TokenValidator{}, indexIntrospection, func(o client.Object) []string {
		if ref := o.(*v1alpha1.TokenValidator).Spec.IntrospectionSecretRef; ref != nil {
			return []string{ref.Name}
		}
		return nil
	}); err != nil {
		return err
	}
	b := ctrl.NewControllerManagedBy(mgr).For(&v1alpha1.TokenValidator{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.Issuer{}, handler.EnqueueRequestsFromMapFunc(r.trusting(v1alpha1.IssuerKindNamespaced)),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.ClusterIssuer{}, handler.EnqueueRequestsFromMapFunc(r.trusting(v1alpha1.IssuerKindCluster)),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.TokenPolicy{}, handler.EnqueueRequestsFromMapFunc(r.matching(func(*v1alpha1.TokenValidator) bool { return true })),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false)})
	if r.Refs != nil {
		b = b.WatchesRawSource(r.Refs.Secrets.Source(r.reading("Secret"))).
			WatchesRawSource(r.Refs.ConfigMaps.Source(r.reading("ConfigMap")))
	}
	return b.Complete(r)
}

// matching maps an event to the TokenValidators that keep.
func (r *Reconciler) matching(keep func(*v1alpha1.TokenValidator) bool) handler.MapFunc {
	return func(ctx context.Context, _ client.Object) []reconcile.Request {
		var list v1alpha1.TokenValidatorList
		if err := r.List(ctx, &list); err != nil {
			return nil
		}
		var reqs []reconcile.Request
		for i := range list.Items {
			if tv := &list.Items[i]; keep(tv) {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: tv.Namespace, Name: tv.Name}})
			}
		}
		return reqs
	}
}

// trusting maps an issuer to the TokenValidators that trust it.
func (r *Reconciler) trusting(kind v1alpha1.IssuerKind) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		return r.matching(func(tv *v1alpha1.TokenValidator) bool {
			for _, ref := range tv.Spec.Issuers {
				if resolve.Kind(ref) == kind && ref.Name == o.GetName() && (kind == v1alpha1.IssuerKindCluster || tv.Namespace == o.GetNamespace()) {
					return true
				}
			}
			return false
		})(ctx, o)
	}
}

// reading maps a Secret or ConfigMap to the TokenValidators that read it: as their
// introspection credentials, or as the HMAC secret or CA bundle of an issuer they trust.
func (r *Reconciler) reading(kind string) func(context.Context, *metav1.PartialObjectMetadata) []reconcile.Request {
	return func(ctx context.Context, o *metav1.PartialObjectMetadata) []reconcile.Request {
		ref := kind + "/" + o.Namespace + "/" + o.Name
		// Nearly every Secret and ConfigMap is nobody's: two index lookups say so, and only one
		// an issuer reads or a validator introspects with costs a scan of the validators (a
		// tenant creating Secrets by the thousand must not make every event walk them all).
		if !r.readByIssuer(ctx, ref) && (kind != "Secret" || !r.introspectsWith(ctx, o.Namespace, o.Name)) {
			return nil
		}
		validatorScans.Add(1)
		return r.matching(func(tv *v1alpha1.TokenValidator) bool {
			if in := tv.Spec.IntrospectionSecretRef; kind == "Secret" && in != nil && tv.Namespace == o.Namespace && in.Name == o.Name {
				return true
			}
			for _, issRef := range tv.Spec.Issuers {
				iss, err := r.resolver.Issuer(ctx, tv.Namespace, issRef)
				if err == nil && slices.Contains(resolve.IssuerReferences(iss, r.ClusterResourceNamespace), ref) {
					return true
				}
			}
			return false
		})(ctx, o)
	}
}

// indexIntrospection indexes TokenValidators by their introspection Secret's name.
const indexIntrospection = "tokenvalidator.introspectionSecret"

// validatorScans counts the scans of every TokenValidator a Secret or ConfigMap event caused.
var validatorScans atomic.Int64

// readByIssuer says whether an Issuer or ClusterIssuer reads ref; true when the index cannot say.
func (r *Reconciler) readByIssuer(ctx context.Context, ref string) bool {
	for _, list := range []client.ObjectList{&v1alpha1.IssuerList{}, &v1alpha1.ClusterIssuerList{}} {
		if err := r.List(ctx, list, client.MatchingFields{resolve.IndexIssuerRefs: ref}); err != nil || meta.LenList(list) > 0 {
			return true
		}
	}
	return false
}

// introspectsWith says whether a TokenValidator of namespace introspects with Secret name.
func (r *Reconciler) introspectsWith(ctx context.Context, namespace, name string) bool {
	var list v1alpha1.TokenValidatorList
	err := r.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{indexIntrospection: name})
	return err != nil || len(list.Items) > 0
}
