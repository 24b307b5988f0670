package credential

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/policy"
)

// blocked is a reason the Credential cannot be served until someone changes something.
type blocked struct {
	reason  string
	message string
}

func (b *blocked) Error() string { return b.message }

func block(reason, format string, args ...any) error {
	return &blocked{reason: reason, message: fmt.Sprintf(format, args...)}
}

// env is everything one renewal needs, resolved from the cluster.
type env struct {
	issuer    v1alpha1.GenericIssuer
	issuerKey string // "ClusterIssuer/name" or "Issuer/name", for metrics and logs
	policy    policy.Effective
	request   issuer.Request
	client    *issuer.Client
	headers   map[string]string
	// inputsVersion changes whenever the Credential's spec, its input Secret, the issuer or the
	// issuer's Secrets change; a change means a fresh login.
	inputsVersion string
}

// prepare resolves the issuer, the effective policy and the inputs. A *blocked error means the
// Credential cannot work as configured; other errors are transient.
func (r *Reconciler) prepare(ctx context.Context, cred *v1alpha1.Credential) (*env, error) {
	iss, err := r.getIssuer(ctx, cred)
	if err != nil {
		return nil, err
	}
	e := &env{issuer: iss, issuerKey: string(cred.Spec.IssuerRef.Kind) + "/" + cred.Spec.IssuerRef.Name}
	if e.policy, err = r.effectivePolicy(ctx, cred); err != nil {
		return nil, err
	}
	// No request ever goes to an issuer the policies do not allow.
	if v := e.policy.CheckIssuer(iss.GetSpec()); len(v) > 0 {
		return nil, block(v1alpha1.ReasonPolicyViolation, "%s %q: %v", kindOr(cred.Spec.IssuerRef.Kind), iss.GetName(), v[0])
	}
	kind, ref, keys := loginOf(&cred.Spec)
	input, err := r.readSecret(ctx, types.NamespacedName{Namespace: cred.Namespace, Name: ref})
	if err != nil {
		return nil, err
	}
	req := issuer.Request{Kind: kind, Inputs: map[string]string{}, SessionDuration: e.policy.SessionDuration, Scopes: cred.Spec.Scopes}
	for k, v := range input.Data {
		req.Inputs[k] = string(v)
	}
	for canonical, key := range keys {
		v, ok := input.Data[key]
		if !ok {
			return nil, block(v1alpha1.ReasonSecretNotFound, "Secret %s has no key %q", ref, key)
		}
		req.Inputs[canonical] = string(v)
	}
	e.request = req
	versions := []string{fmt.Sprintf("credential:%d", cred.Generation), "input:" + input.ResourceVersion,
		fmt.Sprintf("issuer:%s:%d", iss.GetUID(), iss.GetGeneration())}
	if e.headers, err = r.headerValues(ctx, iss, &versions); err != nil {
		return nil, err
	}
	e.inputsVersion = strings.Join(versions, ";")
	e.client, err = issuer.New(issuer.Config{Spec: *iss.GetSpec(), Headers: e.headers, CheckURL: e.policy.CheckURL, Clock: r.Clock, Transport: r.Transport})
	if err != nil {
		return nil, block(v1alpha1.ReasonInvalidConfig, "issuer %s: %v", e.issuerKey, err)
	}
	return e, nil
}

func (r *Reconciler) getIssuer(ctx context.Context, cred *v1alpha1.Credential) (v1alpha1.GenericIssuer, error) {
	ref := cred.Spec.IssuerRef
	var iss v1alpha1.GenericIssuer = &v1alpha1.Issuer{}
	key := types.NamespacedName{Namespace: cred.Namespace, Name: ref.Name}
	if ref.Kind == v1alpha1.IssuerKindCluster {
		iss, key.Namespace = &v1alpha1.ClusterIssuer{}, ""
	}
	if err := r.Get(ctx, key, iss); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, block(v1alpha1.ReasonIssuerNotFound, "%s %q not found", kindOr(ref.Kind), ref.Name)
		}
		return nil, err
	}
	return iss, nil
}

func kindOr(k v1alpha1.IssuerKind) v1alpha1.IssuerKind {
	if k == "" {
		return v1alpha1.IssuerKindNamespaced
	}
	return k
}

func (r *Reconciler) effectivePolicy(ctx context.Context, cred *v1alpha1.Credential) (policy.Effective, error) {
	ns := &corev1.Namespace{}
	if err := r.Get(ctx, types.NamespacedName{Name: cred.Namespace}, ns); err != nil {
		return policy.Effective{}, err
	}
	var list v1alpha1.TokenPolicyList
	if err := r.List(ctx, &list); err != nil {
		return policy.Effective{}, err
	}
	sel, err := policy.Selecting(list.Items, ns.Labels)
	if err != nil {
		return policy.Effective{}, block(v1alpha1.ReasonPolicyViolation, "%v", err)
	}
	eff, violations := policy.Resolve(sel, &cred.Spec)
	if len(violations) > 0 {
		return eff, block(v1alpha1.ReasonPolicyViolation, "%v", violations[0])
	}
	return eff, nil
}

// readSecret reads a Secret without the cache: the cache holds only tokenkeeper's own Secrets.
func (r *Reconciler) readSecret(ctx context.Context, key types.NamespacedName) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, key, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, block(v1alpha1.ReasonSecretNotFound, "Secret %s/%s not found", key.Namespace, key.Name)
		}
		return nil, err
	}
	return s, nil
}

// headerValues reads the issuer's extra header values from Secrets: an Issuer's in its own
// namespace, a ClusterIssuer's in the namespace its reference names or the manager's.
func (r *Reconciler) headerValues(ctx context.Context, iss v1alpha1.GenericIssuer, versions *[]string) (map[string]string, error) {
	out := map[string]string{}
	for _, h := range iss.GetSpec().Headers {
		if h.ValueFrom == nil {
			out[h.Name] = h.Value
			continue
		}
		ref := h.ValueFrom.SecretKeyRef
		s, err := r.readSecret(ctx, r.issuerSecretKey(iss, ref))
		if err != nil {
			return nil, err
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			return nil, block(v1alpha1.ReasonSecretNotFound, "Secret %s has no key %q (header %s)", ref.Name, ref.Key, h.Name)
		}
		out[h.Name] = string(v)
		*versions = append(*versions, "header:"+s.ResourceVersion)
	}
	return out, nil
}

func (r *Reconciler) issuerSecretKey(iss v1alpha1.GenericIssuer, ref v1alpha1.SecretKeySelector) types.NamespacedName {
	if iss.GetNamespace() != "" {
		return types.NamespacedName{Namespace: iss.GetNamespace(), Name: ref.Name}
	}
	ns := ref.Namespace
	if ns == "" {
		ns = r.ClusterResourceNamespace
	}
	return types.NamespacedName{Namespace: ns, Name: ref.Name}
}

// loginOf returns the login kind, its input Secret and the Secret keys of its canonical inputs.
func loginOf(spec *v1alpha1.CredentialSpec) (issuer.LoginKind, string, map[string]string) {
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	switch {
	case spec.Password != nil:
		p := spec.Password
		return issuer.LoginPassword, p.SecretRef.Name, map[string]string{
			issuer.InputUsername: or(p.UsernameKey, issuer.InputUsername), issuer.InputPassword: or(p.PasswordKey, issuer.InputPassword)}
	case spec.APIKey != nil:
		a := spec.APIKey
		return issuer.LoginAPIKey, a.SecretRef.Name, map[string]string{
			issuer.InputKey: or(a.KeyKey, issuer.InputKey), issuer.InputSecret: or(a.SecretKey, issuer.InputSecret)}
	case spec.ClientCredentials != nil:
		c := spec.ClientCredentials
		return issuer.LoginClientCredentials, c.SecretRef.Name, map[string]string{
			issuer.InputClientID: or(c.ClientIDKey, issuer.InputClientID), issuer.InputClientSecret: or(c.ClientSecretKey, issuer.InputClientSecret)}
	case spec.RefreshToken != nil:
		t := spec.RefreshToken
		return issuer.LoginRefreshToken, t.SecretRef.Name, map[string]string{issuer.InputRefreshToken: or(t.Key, issuer.InputRefreshToken)}
	}
	return "", "", nil // unreachable: the CRD requires exactly one login
}

// inputSecretName is the input Secret of a Credential, for the watch index.
func inputSecretName(spec *v1alpha1.CredentialSpec) string {
	_, name, _ := loginOf(spec)
	return name
}

func isBlocked(err error) (*blocked, bool) {
	var b *blocked
	ok := errors.As(err, &b)
	return b, ok
}

var _ client.Object = &v1alpha1.Credential{}
