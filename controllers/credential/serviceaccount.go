package credential

import (
	"context"

	authenticationv1 "k8s.io/api/authentication/v1"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/login"
)

// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=serviceaccounts/token,verbs=create
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create

// withServiceAccountToken puts a fresh ServiceAccount token into the request of a serviceAccount
// login, bound to the Credential's state Secret (which the Credential owns) so that it is
// worthless once the Credential is gone: the state Secret is created first.
func (r *Reconciler) withServiceAccountToken(ctx context.Context, cred *v1alpha1.Credential, e *env, st *state) error {
	if e.Request.Kind != issuer.LoginServiceAccount {
		return nil
	}
	if st.uid == "" {
		if err := r.store.commit(ctx, cred, st); err != nil {
			return err
		}
	}
	bound := &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: StateSecretName(cred), UID: st.uid}
	tok, err := login.ServiceAccountToken(ctx, r.Client, cred, e.Env, bound)
	if err != nil {
		return err
	}
	e.SetInput(issuer.InputServiceAccountToken, tok)
	return nil
}
