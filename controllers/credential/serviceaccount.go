package credential

import (
	"context"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
)

// defaultServiceAccountExpiration is the lifetime of a requested ServiceAccount token: the
// TokenRequest API's minimum. A new one is requested for each login, so it never needs renewing.
const defaultServiceAccountExpiration = 600

// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=serviceaccounts/token,verbs=create
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create

// serviceAccountToken requests a token of the Credential's ServiceAccount, in its own namespace
// only, for the audience prepare checked against the policies, bound to the Credential's state
// Secret (which the Credential owns) so that it is worthless once the Credential is gone.
func (r *Reconciler) serviceAccountToken(ctx context.Context, cred *v1alpha1.Credential, e *env, st *state) (string, error) {
	spec := cred.Spec.ServiceAccount
	secs := int64(defaultServiceAccountExpiration)
	if spec.Expiration != nil {
		secs = int64(spec.Expiration.Seconds())
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: []string{e.serviceAccountAudience}, ExpirationSeconds: &secs}}
	if st.uid != "" {
		tr.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: StateSecretName(cred), UID: st.uid}
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: cred.Namespace, Name: spec.Name}}
	err := r.SubResource("token").Create(ctx, sa, tr)
	switch {
	case apierrors.IsNotFound(err):
		return "", block(v1alpha1.ReasonServiceAccountNotFound, "ServiceAccount %s not found in namespace %s: create it, or correct spec.serviceAccount.name", spec.Name, cred.Namespace)
	case apierrors.IsForbidden(err):
		return "", block(v1alpha1.ReasonInvalidConfig, "the manager may not request tokens of ServiceAccount %s: its role needs serviceaccounts/token create", spec.Name)
	case err != nil:
		return "", err
	}
	// A token the Kubernetes API server itself accepts would let whoever receives it act as the
	// ServiceAccount in this cluster (a tenant's own Issuer URL, say): it is never sent.
	review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: tr.Status.Token}}
	if err := r.Create(ctx, review); err != nil {
		return "", err
	}
	if review.Status.Authenticated {
		return "", block(v1alpha1.ReasonPolicyViolation, "audience %q is accepted by this cluster's API server: a token for it would let the issuer act as "+
			"ServiceAccount %s in the cluster, so tokenkeeper never sends one; use the issuer's own audience", e.serviceAccountAudience, spec.Name)
	}
	return tr.Status.Token, nil
}

// withServiceAccountToken puts a fresh ServiceAccount token into the request of a serviceAccount
// login (the state Secret is created first, so that the token can be bound to it).
func (r *Reconciler) withServiceAccountToken(ctx context.Context, cred *v1alpha1.Credential, e *env, st *state) error {
	if e.request.Kind != issuer.LoginServiceAccount {
		return nil
	}
	if st.uid == "" {
		if err := r.store.commit(ctx, cred, st); err != nil {
			return err
		}
	}
	tok, err := r.serviceAccountToken(ctx, cred, e, st)
	if err != nil {
		return err
	}
	e.setInput(issuer.InputServiceAccountToken, tok)
	return nil
}

// setInput adds one input to the request, leaving the map prepare built (and may share) alone.
func (e *env) setInput(key, value string) {
	inputs := make(map[string]string, len(e.request.Inputs)+1)
	for k, v := range e.request.Inputs {
		inputs[k] = v
	}
	inputs[key] = value
	e.request.Inputs = inputs
}
