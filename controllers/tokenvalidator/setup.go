package tokenvalidator

import (
	"context"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// SetupWithManager watches TokenValidators and the issuers they trust, on every replica (not only
// the leader): each replica's validation endpoint needs the validators.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Elected == nil {
		r.Elected = mgr.Elected()
	}
	all := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		var list v1alpha1.TokenValidatorList
		if err := r.List(ctx, &list); err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for _, tv := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: tv.Namespace, Name: tv.Name}})
		}
		return reqs
	})
	return ctrl.NewControllerManagedBy(mgr).For(&v1alpha1.TokenValidator{}).
		Watches(&v1alpha1.Issuer{}, all).Watches(&v1alpha1.ClusterIssuer{}, all).Watches(&v1alpha1.TokenPolicy{}, all).
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false)}).
		Complete(r)
}
