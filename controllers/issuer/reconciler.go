// Package issuer reconciles Issuers and ClusterIssuers with one code path: it reports Ready when
// the configuration is usable and every Secret it refers to exists.
package issuer

import (
	"context"
	"errors"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/controllers/issuerref"
	issuerclient "github.com/tokenkeeper/tokenkeeper/internal/issuer"
)

// recheckMissing is how often an issuer waiting for a Secret looks again.
const recheckMissing = time.Minute

// Reconciler reconciles one kind: Issuer or ClusterIssuer.
type Reconciler struct {
	client.Client
	// APIReader reads referenced Secrets without caching them.
	APIReader client.Reader
	// New returns an empty object of the reconciled kind.
	New func() v1alpha1.GenericIssuer
	// ClusterResourceNamespace holds the Secrets ClusterIssuers refer to without a namespace.
	ClusterResourceNamespace string
}

// +kubebuilder:rbac:groups=tokenkeeper.io,resources=issuers;clusterissuers,verbs=get;list;watch
// +kubebuilder:rbac:groups=tokenkeeper.io,resources=issuers/status;clusterissuers/status,verbs=get;update;patch

// Reconcile validates one issuer.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
	iss := r.New()
	if err := r.Get(ctx, req.NamespacedName, iss); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := iss.DeepCopyObject().(v1alpha1.GenericIssuer)
	defer func() { reterr = errors.Join(reterr, r.patchStatus(ctx, before, iss)) }()
	status := iss.GetStatus()
	status.ObservedGeneration = iss.GetGeneration()
	status.TokenURL = string(iss.GetSpec().URL)

	p, err := r.check(ctx, iss)
	if err != nil {
		return ctrl.Result{}, err
	}
	cond := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonValid,
		Message: "configuration valid", ObservedGeneration: iss.GetGeneration()}
	if p != nil {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, p.reason, p.message
	}
	meta.SetStatusCondition(&status.Conditions, cond)
	if p != nil && p.reason == v1alpha1.ReasonSecretNotFound {
		return ctrl.Result{RequeueAfter: recheckMissing}, nil
	}
	return ctrl.Result{}, nil
}

// problem is why an issuer cannot be used.
type problem struct{ reason, message string }

// check returns a problem when the issuer cannot be used; errors are transient.
func (r *Reconciler) check(ctx context.Context, iss v1alpha1.GenericIssuer) (*problem, error) {
	spec := iss.GetSpec()
	if invalid := issuerclient.Validate(spec); invalid != nil {
		return &problem{v1alpha1.ReasonInvalidConfig, invalid.Error()}, nil //nolint:nilerr // an invalid spec is reported in status, not retried
	}
	refs := map[string]v1alpha1.SecretKeySelector{}
	for _, h := range spec.Headers {
		if h.ValueFrom != nil {
			refs["headers["+h.Name+"]"] = h.ValueFrom.SecretKeyRef
		}
	}
	if spec.HMACSecretRef != nil {
		refs["hmacSecretRef"] = *spec.HMACSecretRef
	}
	for field, ref := range refs {
		_, _, err := issuerref.SecretValue(ctx, r.APIReader, issuerref.SecretKey(iss, ref, r.ClusterResourceNamespace), ref.Key)
		var nf *issuerref.NotFound
		switch {
		case errors.As(err, &nf):
			return &problem{nf.Reason, field + ": " + nf.Message}, nil
		case err != nil:
			return nil, err
		}
	}
	return nil, nil
}

func (r *Reconciler) patchStatus(ctx context.Context, before, iss v1alpha1.GenericIssuer) error {
	if equality.Semantic.DeepEqual(before.GetStatus(), iss.GetStatus()) {
		return nil
	}
	return client.IgnoreNotFound(r.Status().Patch(ctx, iss, client.MergeFrom(before)))
}
