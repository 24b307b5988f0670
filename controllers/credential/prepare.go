package credential

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
	"github.com/tokenkeeper/tokenkeeper/internal/policy"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
)

// block and isBlocked are the resolver's: one error type for "cannot proceed until someone
// changes something", the same for Credentials, TokenValidators, issuers and admission.
var block = resolve.Block

func isBlocked(err error) (*resolve.Blocked, bool) { return resolve.AsBlocked(err) }

// env is everything one renewal needs, resolved from the cluster.
type env struct {
	issuer    v1alpha1.GenericIssuer
	issuerKey string // "ClusterIssuer/name" or "Issuer/name", for logs and messages
	// labels are the issuer counters' labels but the last: the Credential's namespace and its
	// issuer's namespace, kind and name.
	labels  []string
	policy  policy.Effective
	request issuer.Request
	client  *issuer.Client
	headers map[string]string
	// spec is the issuer's spec the client was built from (its CA bundle resolved).
	spec v1alpha1.IssuerSpec
	// serviceAccountAudience is the audience of a serviceAccount login's tokens.
	serviceAccountAudience string
	// inputsVersion changes whenever the Credential's spec, its input Secret, the issuer or the
	// issuer's Secrets change; a change means a fresh login.
	inputsVersion string
}

// prepare resolves the issuer, the effective policy and the inputs. A *resolve.Blocked error
// means the Credential cannot work as configured; other errors are transient. With a policy
// violation it returns the env so far (issuer and policy, no client) beside the error.
func (r *Reconciler) prepare(ctx context.Context, cred *v1alpha1.Credential) (*env, error) {
	iss, err := r.resolver.Issuer(ctx, cred.Namespace, cred.Spec.IssuerRef)
	if err != nil {
		return nil, err
	}
	e := &env{issuer: iss, issuerKey: resolve.IssuerKey(cred.Spec.IssuerRef),
		labels: append([]string{cred.Namespace}, metrics.IssuerLabelValues(cred)...)}
	// A policy violation comes back with the policy in force, so that status names the policy
	// and the limits the message speaks of (it showed "Policy: none" beside a violation).
	if e.policy, err = r.resolver.Policy(ctx, cred.Namespace, &cred.Spec); err != nil {
		if _, blocked := isBlocked(err); blocked {
			return e, err
		}
		return nil, err
	}
	// No request ever goes to an issuer the policies do not allow.
	if err := resolve.CheckIssuer(e.policy, iss); err != nil {
		return e, err
	}
	// Nor to one that does not take this kind of login (admitted before the issuer existed).
	if err := issuer.Accepts(iss.GetSpec(), &cred.Spec); err != nil {
		return nil, block(v1alpha1.ReasonInvalidConfig, "spec.issuerRef: %s %q: %v", resolve.KindOf(iss), iss.GetName(), err)
	}
	kind, ref, keys := loginOf(&cred.Spec)
	input := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "none"}} // a serviceAccount login reads no Secret
	if ref != "" {
		if input, err = r.readSecret(ctx, types.NamespacedName{Namespace: cred.Namespace, Name: ref}); err != nil {
			return nil, err
		}
	}
	req := issuer.Request{Kind: kind, Inputs: map[string]string{}, SessionDuration: e.policy.SessionDuration, Scopes: cred.Spec.Scopes}
	if cc := cred.Spec.ClientCredentials; cc != nil {
		req.AssertionAudience = cc.AssertionAudience
	}
	if j := cred.Spec.JWTBearer; j != nil {
		req.Assertion = &issuer.Assertion{Issuer: j.Issuer, Subject: j.Subject, Audience: j.Audience, Scopes: j.Scopes}
		if j.AssertionLifetime != nil {
			req.Assertion.Lifetime = j.AssertionLifetime.Duration
		}
	}
	if g := cred.Spec.GitHubApp; g != nil {
		req.GitHubApp = &issuer.GitHubAppRequest{AppID: g.AppID, InstallationID: g.InstallationID, Repositories: g.Repositories}
		if len(g.Permissions) > 0 {
			req.GitHubApp.Permissions = map[string]string{}
			for k, v := range g.Permissions {
				req.GitHubApp.Permissions[k] = string(v)
			}
		}
	}
	if sa := cred.Spec.ServiceAccount; sa != nil {
		e.serviceAccountAudience = sa.Audience
		if e.serviceAccountAudience == "" {
			e.serviceAccountAudience = iss.GetSpec().ServiceAccountAudience
		}
		if e.serviceAccountAudience == "" {
			return nil, block(v1alpha1.ReasonInvalidConfig, "spec.serviceAccount.audience is not set and %s declares no serviceAccountAudience", e.issuerKey)
		}
		// No ServiceAccount token is ever requested for an audience the policies do not allow.
		if v := e.policy.CheckAudience(e.serviceAccountAudience); v != nil {
			return nil, block(v1alpha1.ReasonPolicyViolation, "%v", v)
		}
		req.ServiceAccount = &issuer.ServiceAccountRequest{PresentAs: string(sa.PresentAs), ClientID: sa.ClientID,
			RequestedTokenType: sa.RequestedTokenType, TargetAudience: sa.TargetAudience, Resource: sa.Resource}
	}
	// A TokenPolicy's maximum session caps what the manager signs too.
	req.MaxLifetime = e.policy.MaxSessionDuration
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
	// A key that cannot sign is a configuration error naming its Secret key, before any request.
	// Only the keys this login reads are looked at (the Secret may hold others of any name).
	signing := issuer.Request{Inputs: map[string]string{}}
	for canonical := range keys {
		signing.Inputs[canonical] = req.Inputs[canonical]
	}
	if bad, err := issuer.CheckKeys(signing); err != nil {
		return nil, block(v1alpha1.ReasonInvalidConfig, "Secret %s key %q: %v", ref, keys[bad], err)
	}
	e.request = req
	in, err := r.resolver.IssuerInputs(ctx, iss)
	if err != nil {
		return nil, err
	}
	e.headers = in.Headers
	e.inputsVersion = strings.Join([]string{fmt.Sprintf("credential:%d", cred.Generation), "input:" + input.ResourceVersion,
		fmt.Sprintf("issuer:%s:%d", iss.GetUID(), iss.GetGeneration()), in.Version()}, ";")
	spec := *iss.GetSpec()
	spec.CABundle = in.CABundle
	e.spec = spec
	// One client per issuer version, Secret versions and URL rules, shared by reconciles and
	// Credentials: connections and the discovery document are reused, not fetched per renewal.
	key := fmt.Sprintf("%s:%d|%s|%s", iss.GetUID(), iss.GetGeneration(), in.Version(), e.policy.URLRules())
	e.client, err = r.clients.Get(key, issuer.Config{Spec: spec, Headers: e.headers, CheckURL: e.policy.CheckURL, Clock: r.Clock,
		Transport: r.Transport, Egress: r.Egress, Trace: r.trace})
	if err != nil {
		return nil, block(v1alpha1.ReasonInvalidConfig, "issuer %s: %v", e.issuerKey, err)
	}
	return e, nil
}

// readSecret reads an input Secret without the cache (which holds only tokenkeeper's own
// Secrets), again only when its resourceVersion changed.
func (r *Reconciler) readSecret(ctx context.Context, key types.NamespacedName) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	if err := r.inputs.Get(ctx, key, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, block(v1alpha1.ReasonSecretNotFound, "Secret %s/%s not found", key.Namespace, key.Name)
		}
		return nil, err
	}
	return s, nil
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
		if c.PrivateKeyKey != "" { // private_key_jwt: a signed assertion instead of a secret
			keys := map[string]string{issuer.InputClientID: or(c.ClientIDKey, issuer.InputClientID), issuer.InputPrivateKey: c.PrivateKeyKey}
			if c.CertificateKey != "" {
				keys[issuer.InputCertificate] = c.CertificateKey
			}
			return issuer.LoginClientCredentials, c.SecretRef.Name, keys
		}
		return issuer.LoginClientCredentials, c.SecretRef.Name, map[string]string{
			issuer.InputClientID: or(c.ClientIDKey, issuer.InputClientID), issuer.InputClientSecret: or(c.ClientSecretKey, issuer.InputClientSecret)}
	case spec.JWTBearer != nil:
		j := spec.JWTBearer
		if j.ServiceAccountKeyKey != "" {
			return issuer.LoginJWTBearer, j.SecretRef.Name, map[string]string{issuer.InputServiceAccountKey: j.ServiceAccountKeyKey}
		}
		return issuer.LoginJWTBearer, j.SecretRef.Name, map[string]string{issuer.InputPrivateKey: j.PrivateKeyKey}
	case spec.ServiceAccount != nil:
		return issuer.LoginServiceAccount, "", map[string]string{}
	case spec.GitHubApp != nil:
		return issuer.LoginGitHubApp, spec.GitHubApp.SecretRef.Name, map[string]string{issuer.InputPrivateKey: or(spec.GitHubApp.PrivateKeyKey, issuer.InputPrivateKey)}
	case spec.PrivateKey != nil:
		return issuer.LoginPrivateKey, spec.PrivateKey.SecretRef.Name, map[string]string{issuer.InputPrivateKey: or(spec.PrivateKey.Key, issuer.InputPrivateKey)}
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

// metricLabels are the issuer counters' label values for what is counted.
func (e *env) metricLabels(what string) []string {
	return append(slices.Clip(e.labels), what)
}
