package login

import (
	"context"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
)

// DefaultServiceAccountExpiration is the lifetime (seconds) of a requested ServiceAccount token:
// the TokenRequest API's minimum. A new one is requested for each login, so it never needs
// renewing.
const DefaultServiceAccountExpiration = 600

// ServiceAccountToken requests a token of the Credential's ServiceAccount, in its own namespace
// only, for the audience Prepare checked against the policies (e.ServiceAccountAudience), bound
// to boundTo when given (the Credential's state Secret, so that it is worthless once the
// Credential is gone). A token the cluster's own API server accepts is never returned.
func ServiceAccountToken(ctx context.Context, c client.Client, cred *v1alpha1.Credential, e *Env, boundTo *authenticationv1.BoundObjectReference) (string, error) {
	spec := cred.Spec.ServiceAccount
	secs := int64(DefaultServiceAccountExpiration)
	if spec.Expiration != nil {
		secs = int64(spec.Expiration.Seconds())
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: []string{e.ServiceAccountAudience}, ExpirationSeconds: &secs, BoundObjectRef: boundTo}}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: cred.Namespace, Name: spec.Name}}
	err := c.SubResource("token").Create(ctx, sa, tr)
	switch {
	case apierrors.IsNotFound(err):
		return "", resolve.Block(v1alpha1.ReasonServiceAccountNotFound, "ServiceAccount %s not found in namespace %s: create it, or correct spec.serviceAccount.name", spec.Name, cred.Namespace)
	case apierrors.IsForbidden(err):
		return "", resolve.Block(v1alpha1.ReasonInvalidConfig, "the manager may not request tokens of ServiceAccount %s: its role needs serviceaccounts/token create", spec.Name)
	case err != nil:
		return "", err
	}
	// A token the Kubernetes API server itself accepts would let whoever receives it act as the
	// ServiceAccount in this cluster (a tenant's own Issuer URL, say): it is never sent.
	review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: tr.Status.Token}}
	if err := c.Create(ctx, review); err != nil {
		return "", err
	}
	if review.Status.Authenticated {
		return "", resolve.Block(v1alpha1.ReasonPolicyViolation, "audience %q is accepted by this cluster's API server: a token for it would let the issuer act as "+
			"ServiceAccount %s in the cluster, so tokenkeeper never sends one; use the issuer's own audience", e.ServiceAccountAudience, spec.Name)
	}
	return tr.Status.Token, nil
}
