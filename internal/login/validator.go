package login

import (
	"context"
	"net/url"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/egress"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/policy"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
	"github.com/tokenkeeper/tokenkeeper/internal/validation"
)

// Validators builds TokenValidators' validators — the same code for the TokenValidator
// controller and for the plugin's local run (LocalValidator).
type Validators struct {
	Resolver *resolve.Resolver
	Clock    clock.PassiveClock
	// Egress refuses key-set and introspection connections to addresses tenants must not reach.
	Egress *egress.Policy
	// OnKeyRefresh is called after each key-set fetch with the issuer's name and the error, for
	// metrics. Optional.
	OnKeyRefresh func(issuer string, err error)
}

// Built is what a validator holds on to: its key sets, and the issuer clients to close when it
// is replaced.
type Built struct {
	Keys    []*validation.KeySet
	Clients []*issuer.Client
}

// Close releases the issuer clients.
func (b *Built) Close() {
	for _, c := range b.Clients {
		c.Close()
	}
}

// LocalValidator builds the validator tv describes exactly as the controller does — the same
// issuers, policies, key sets, HMAC and introspection Secrets — reading through c with its
// caller's permissions, for a terminal to ask what /validate would answer. close releases its
// clients.
func LocalValidator(ctx context.Context, c client.Reader, tv *v1alpha1.TokenValidator, clusterResourceNamespace string) (val *validation.Validator, close func(), err error) {
	v := &Validators{Clock: clock.RealClock{}, Resolver: &resolve.Resolver{Client: c, APIReader: c, ClusterResourceNamespace: clusterResourceNamespace}}
	eff, issuers, err := v.Issuers(ctx, tv)
	if err != nil {
		return nil, nil, err
	}
	cfg, b, err := v.Build(ctx, tv, issuers, eff)
	if err != nil {
		return nil, nil, err
	}
	return validation.New(cfg), b.Close, nil
}

// issuers resolves the policy in force and the issuers tv trusts, each allowed by the policy.
func (v *Validators) Issuers(ctx context.Context, tv *v1alpha1.TokenValidator) (policy.Effective, []v1alpha1.GenericIssuer, error) {
	eff, err := v.Resolver.Policy(ctx, tv.Namespace, nil)
	if err != nil {
		return eff, nil, err
	}
	issuers := make([]v1alpha1.GenericIssuer, 0, len(tv.Spec.Issuers))
	for _, ref := range tv.Spec.Issuers {
		iss, err := v.Resolver.Issuer(ctx, tv.Namespace, ref)
		if err != nil {
			return eff, nil, err
		}
		if err := resolve.CheckIssuer(eff, iss); err != nil {
			return eff, nil, err
		}
		issuers = append(issuers, iss)
	}
	return eff, issuers, nil
}

func (v *Validators) Build(ctx context.Context, tv *v1alpha1.TokenValidator, issuers []v1alpha1.GenericIssuer, eff policy.Effective) (validation.Config, *Built, error) {
	s := tv.Spec
	cfg := validation.Config{
		Audiences: s.Audiences, RequiredScopes: s.RequiredScopes, RequiredClaims: s.RequiredClaims,
		ForwardClaims: map[string]string{}, AcceptTokenScheme: s.AcceptTokenScheme, DisableCache: s.DisableCache, RequiredType: s.RequiredType,
		Leeway: eff.Leeway, MaxTokenAge: eff.MaxTokenAge, Clock: v.Clock,
	}
	for _, a := range s.Algorithms {
		cfg.Algorithms = append(cfg.Algorithms, string(a))
	}
	for claim, header := range s.ForwardClaims {
		cfg.ForwardClaims[claim] = string(header)
	}
	if s.Leeway != nil {
		d := s.Leeway.Duration
		cfg.Leeway = &d
	}
	if s.MaxTokenAge != nil {
		cfg.MaxTokenAge = s.MaxTokenAge.Duration
	}
	if tr := s.TokenReview; tr != nil {
		cfg.UsernameClaim, cfg.UsernamePrefix, cfg.GroupsClaim, cfg.GroupsPrefix = tr.UsernameClaim, tr.UsernamePrefix, tr.GroupsClaim, tr.GroupsPrefix
	}
	introspection := issuer.Request{Inputs: map[string]string{}}
	if ref := s.IntrospectionSecretRef; ref != nil {
		for _, k := range []string{issuer.InputClientID, issuer.InputClientSecret} {
			v, _, err := v.Resolver.SecretValue(ctx, types.NamespacedName{Namespace: tv.Namespace, Name: ref.Name}, k)
			if err != nil {
				return cfg, nil, err
			}
			introspection.Inputs[k] = v
		}
	}
	b := &Built{}
	for i, iss := range issuers {
		t, err := v.trust(ctx, tv.Spec.Issuers[i], iss, eff, introspection, b)
		if err != nil {
			return cfg, nil, err
		}
		cfg.Issuers = append(cfg.Issuers, t)
	}
	return cfg, b, nil
}

// trust turns one issuer into what the validator needs: its iss, key set, HMAC secret and
// introspection.
func (v *Validators) trust(ctx context.Context, ref v1alpha1.IssuerReference, iss v1alpha1.GenericIssuer, eff policy.Effective,
	introspection issuer.Request, b *Built) (validation.TrustedIssuer, error) {
	spec := iss.GetSpec()
	name := resolve.IssuerKey(ref)
	in, err := v.Resolver.IssuerInputs(ctx, iss)
	if err != nil {
		return validation.TrustedIssuer{}, err
	}
	withCA := *spec
	withCA.CABundle = in.CABundle
	c, err := issuer.New(issuer.Config{Spec: withCA, Headers: in.Headers, CheckURL: eff.CheckURL, Clock: v.Clock, Egress: v.Egress})
	if err != nil {
		return validation.TrustedIssuer{}, resolve.Block(v1alpha1.ReasonInvalidConfig, "%v", err)
	}
	b.Clients = append(b.Clients, c)
	t := validation.TrustedIssuer{Name: name}
	jwksURL := ""
	if spec.JWKS != nil {
		jwksURL, t.Iss = string(spec.JWKS.URL), spec.JWKS.Issuer
	}
	if spec.OAuth2 != nil && spec.OAuth2.IssuerURL != "" {
		d, err := c.Discover(ctx)
		if err != nil {
			return t, resolve.Block(v1alpha1.ReasonKeysUnavailable, "%v", err)
		}
		if t.Iss == "" {
			t.Iss = d.Issuer
		}
		if jwksURL == "" && d.JWKSURI != "" {
			u, err := url.Parse(d.JWKSURI)
			if err != nil {
				return t, resolve.Block(v1alpha1.ReasonKeysUnavailable, "discovery names an unparsable jwks_uri")
			}
			if err := eff.CheckURL(u); err != nil {
				return t, resolve.Block(v1alpha1.ReasonPolicyViolation, "%v", err)
			}
			jwksURL = d.JWKSURI
		}
		if d.IntrospectionEndpoint != "" || spec.TokenInfo != nil {
			t.Inspect = inspector(c, introspection)
		}
	} else if spec.TokenInfo != nil {
		t.Inspect = inspector(c, introspection)
	}
	if jwksURL != "" {
		t.Keys = validation.NewKeySet(jwksURL, c.HTTPClient(), v.Clock)
		t.Keys.OnRefresh = func(err error) {
			if v.OnKeyRefresh != nil {
				v.OnKeyRefresh(name, err)
			}
		}
		b.Keys = append(b.Keys, t.Keys)
	}
	if ref := spec.HMACSecretRef; ref != nil {
		v, _, err := v.Resolver.SecretValue(ctx, types.NamespacedName{Namespace: v.Resolver.Namespace(iss, ref.Namespace), Name: ref.Name}, ref.Key)
		if err != nil {
			return t, err
		}
		t.HMAC = []byte(v)
	}
	if t.Iss == "" && t.Inspect == nil {
		return t, resolve.Block(v1alpha1.ReasonInvalidConfig,
			"%s has no way to validate tokens: set jwks (with issuer), oauth2.issuerURL, hmacSecretRef with jwks.issuer, or tokenInfo", name)
	}
	return t, nil
}

func inspector(c *issuer.Client, req issuer.Request) func(context.Context, string) (*issuer.Introspection, error) {
	return func(ctx context.Context, token string) (*issuer.Introspection, error) {
		return c.Inspect(ctx, req, token)
	}
}
