package issuer

import (
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// SetupWithManager registers the reconciler for its kind.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	obj := r.New()
	name := "issuer"
	if _, cluster := obj.(*v1alpha1.ClusterIssuer); cluster {
		name = "clusterissuer"
	}
	return ctrl.NewControllerManagedBy(mgr).Named(name).For(obj).Complete(r)
}
