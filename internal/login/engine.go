// Package login is the login engine: it resolves what a Credential's login needs (its issuer,
// the policy in force, the input Secret, the issuer's Secrets and CA bundle), chooses the protocol
// and the login kind, and builds the issuer client — from explicit dependencies, so that the
// Credential controller and the kubectl plugin run the same code. It writes nothing: state,
// target Secrets and status are the controller's.
package login

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/egress"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/policy"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
)

// Engine prepares logins. Every field but Transport, Egress and Trace is required.
type Engine struct {
	// Resolver finds issuers, policies and the issuers' Secrets.
	Resolver *resolve.Resolver
	// Inputs reads input Secrets (uncached in the manager: its cache holds only its own Secrets).
	Inputs client.Reader
	// Clients keeps issuer clients between logins; NewPool(1) for a single login.
	Clients *issuer.Pool
	Clock   clock.PassiveClock
	// Transport replaces the issuer HTTP transport, for tests.
	Transport http.RoundTripper
	// Egress refuses issuer connections to addresses tenants must not reach; nil checks nothing.
	Egress *egress.Policy
	// Trace sees every issuer request, redacted (a dry run); nil in the manager.
	Trace func(issuer.Exchange)
}

// Env is everything one login or renewal needs, resolved from the cluster.
type Env struct {
	Issuer    v1alpha1.GenericIssuer
	IssuerKey string // "ClusterIssuer/name" or "Issuer/name", for logs and messages
	Policy    policy.Effective
	Request   issuer.Request
	Client    *issuer.Client
	Headers   map[string]string
	// Spec is the issuer's spec the client was built from (its CA bundle resolved).
	Spec v1alpha1.IssuerSpec
	// ServiceAccountAudience is the audience of a serviceAccount login's tokens.
	ServiceAccountAudience string
	// InputsVersion changes whenever the Credential's spec, its input Secret, the issuer or the
	// issuer's Secrets change; a change means a fresh login.
	InputsVersion string
}

// Prepare resolves the issuer, the effective policy and the inputs. A *resolve.Blocked error
// means the Credential cannot work as configured; other errors are transient. With a policy
// violation (or an issuer the policy refuses) it returns the Env so far (issuer and policy, no
// client) beside the error, so that status can name the policy and its limits.
func (g *Engine) Prepare(ctx context.Context, cred *v1alpha1.Credential) (*Env, error) {
	iss, err := g.Resolver.Issuer(ctx, cred.Namespace, cred.Spec.IssuerRef)
	if err != nil {
		return nil, err
	}
	e := &Env{Issuer: iss, IssuerKey: resolve.IssuerKey(cred.Spec.IssuerRef)}
	if e.Policy, err = g.Resolver.Policy(ctx, cred.Namespace, &cred.Spec); err != nil {
		if _, blocked := resolve.AsBlocked(err); blocked {
			return e, err
		}
		return nil, err
	}
	// No request ever goes to an issuer the policies do not allow.
	if err := resolve.CheckIssuer(e.Policy, iss); err != nil {
		return e, err
	}
	// Nor to one that does not take this kind of login (admitted before the issuer existed).
	if err := issuer.Accepts(iss.GetSpec(), &cred.Spec); err != nil {
		return nil, resolve.Block(v1alpha1.ReasonInvalidConfig, "spec.issuerRef: %s %q: %v", resolve.KindOf(iss), iss.GetName(), err)
	}
	in := InputsOf(&cred.Spec)
	input := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "none"}} // a serviceAccount login reads no Secret
	if in.Secret != "" {
		if input, err = g.readSecret(ctx, types.NamespacedName{Namespace: cred.Namespace, Name: in.Secret}); err != nil {
			return nil, err
		}
	}
	if e.Request, err = request(cred, in, input, e); err != nil {
		return nil, err
	}
	ins, err := g.Resolver.IssuerInputs(ctx, iss)
	if err != nil {
		return nil, err
	}
	e.Headers = ins.Headers
	e.InputsVersion = strings.Join([]string{fmt.Sprintf("credential:%d", cred.Generation), "input:" + input.ResourceVersion,
		fmt.Sprintf("issuer:%s:%d", iss.GetUID(), iss.GetGeneration()), ins.Version()}, ";")
	spec := *iss.GetSpec()
	spec.CABundle = ins.CABundle
	e.Spec = spec
	// One client per issuer version, Secret versions and URL rules, shared by reconciles and
	// Credentials: connections and the discovery document are reused, not fetched per renewal.
	key := fmt.Sprintf("%s:%d|%s|%s", iss.GetUID(), iss.GetGeneration(), ins.Version(), e.Policy.URLRules())
	e.Client, err = g.Clients.Get(key, issuer.Config{Spec: spec, Headers: e.Headers, CheckURL: e.Policy.CheckURL, Clock: g.Clock,
		Transport: g.Transport, Egress: g.Egress, Trace: g.Trace})
	if err != nil {
		return nil, resolve.Block(v1alpha1.ReasonInvalidConfig, "issuer %s: %v", e.IssuerKey, err)
	}
	return e, nil
}

// request builds the issuer request of cred's login from its input Secret.
func request(cred *v1alpha1.Credential, in Inputs, input *corev1.Secret, e *Env) (issuer.Request, error) {
	req := issuer.Request{Kind: in.Kind, Inputs: map[string]string{}, SessionDuration: e.Policy.SessionDuration, Scopes: cred.Spec.Scopes}
	if cc := cred.Spec.ClientCredentials; cc != nil {
		req.AssertionAudience = cc.AssertionAudience
	}
	if j := cred.Spec.JWTBearer; j != nil {
		req.Assertion = &issuer.Assertion{Issuer: j.Issuer, Subject: j.Subject, Audience: j.Audience, Scopes: j.Scopes}
		if j.AssertionLifetime != nil {
			req.Assertion.Lifetime = j.AssertionLifetime.Duration
		}
	}
	if gh := cred.Spec.GitHubApp; gh != nil {
		req.GitHubApp = &issuer.GitHubAppRequest{AppID: gh.AppID, InstallationID: gh.InstallationID, Repositories: gh.Repositories}
		if len(gh.Permissions) > 0 {
			req.GitHubApp.Permissions = map[string]string{}
			for k, v := range gh.Permissions {
				req.GitHubApp.Permissions[k] = string(v)
			}
		}
	}
	if sa := cred.Spec.ServiceAccount; sa != nil {
		e.ServiceAccountAudience = sa.Audience
		if e.ServiceAccountAudience == "" {
			e.ServiceAccountAudience = e.Issuer.GetSpec().ServiceAccountAudience
		}
		if e.ServiceAccountAudience == "" {
			return req, resolve.Block(v1alpha1.ReasonInvalidConfig, "spec.serviceAccount.audience is not set and %s declares no serviceAccountAudience", e.IssuerKey)
		}
		// No ServiceAccount token is ever requested for an audience the policies do not allow.
		if v := e.Policy.CheckAudience(e.ServiceAccountAudience); v != nil {
			return req, resolve.Block(v1alpha1.ReasonPolicyViolation, "%v", v)
		}
		req.ServiceAccount = &issuer.ServiceAccountRequest{PresentAs: string(sa.PresentAs), ClientID: sa.ClientID,
			RequestedTokenType: sa.RequestedTokenType, TargetAudience: sa.TargetAudience, Resource: sa.Resource}
	}
	// A TokenPolicy's maximum session caps what the manager signs too.
	req.MaxLifetime = e.Policy.MaxSessionDuration
	for k, v := range input.Data {
		req.Inputs[k] = string(v)
	}
	for canonical, key := range in.Keys {
		v, ok := input.Data[key]
		if !ok {
			return req, resolve.Block(v1alpha1.ReasonSecretNotFound, "Secret %s has no key %q", in.Secret, key)
		}
		req.Inputs[canonical] = string(v)
	}
	// A key that cannot sign is a configuration error naming its Secret key, before any request.
	// Only the keys this login reads are looked at (the Secret may hold others of any name).
	signing := issuer.Request{Inputs: map[string]string{}}
	for canonical := range in.Keys {
		signing.Inputs[canonical] = req.Inputs[canonical]
	}
	if bad, err := issuer.CheckKeys(signing); err != nil {
		return req, resolve.Block(v1alpha1.ReasonInvalidConfig, "Secret %s key %q: %v", in.Secret, in.Keys[bad], err)
	}
	return req, nil
}

// readSecret reads an input Secret.
func (g *Engine) readSecret(ctx context.Context, key types.NamespacedName) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	if err := g.Inputs.Get(ctx, key, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, resolve.Block(v1alpha1.ReasonSecretNotFound, "Secret %s/%s not found", key.Namespace, key.Name)
		}
		return nil, err
	}
	return s, nil
}

// SetInput adds one input to the request, leaving the map Prepare built (and may share) alone.
func (e *Env) SetInput(key, value string) {
	inputs := make(map[string]string, len(e.Request.Inputs)+1)
	for k, v := range e.Request.Inputs {
		inputs[k] = v
	}
	inputs[key] = value
	e.Request.Inputs = inputs
}

// InputToken is the fingerprint of the refresh token a refreshToken login would send, or "".
func (e *Env) InputToken() string {
	if e.Request.Kind != issuer.LoginRefreshToken {
		return ""
	}
	return issuer.Fingerprint(e.Request.Inputs[issuer.InputRefreshToken])
}
