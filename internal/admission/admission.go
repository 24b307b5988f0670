// Package admission holds the validating webhooks: Credentials, Issuers and ClusterIssuers that
// break the TokenPolicies in force are rejected with a message naming the policy, the field and
// the limit, and malformed TokenPolicies are rejected beyond what the CRD schema can say.
package admission

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/egress"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/names"
	"github.com/tokenkeeper/tokenkeeper/internal/policy"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
	"github.com/tokenkeeper/tokenkeeper/internal/tmpl"
)

// +kubebuilder:webhook:path=/validate-tokenkeeper-io-v1alpha1-credential,mutating=false,failurePolicy=fail,sideEffects=None,groups=tokenkeeper.io,resources=credentials,verbs=create;update,versions=v1alpha1,name=vcredential.tokenkeeper.io,admissionReviewVersions=v1
// +kubebuilder:webhook:path=/validate-tokenkeeper-io-v1alpha1-issuer,mutating=false,failurePolicy=fail,sideEffects=None,groups=tokenkeeper.io,resources=issuers,verbs=create;update,versions=v1alpha1,name=vissuer.tokenkeeper.io,admissionReviewVersions=v1
// +kubebuilder:webhook:path=/validate-tokenkeeper-io-v1alpha1-clusterissuer,mutating=false,failurePolicy=fail,sideEffects=None,groups=tokenkeeper.io,resources=clusterissuers,verbs=create;update,versions=v1alpha1,name=vclusterissuer.tokenkeeper.io,admissionReviewVersions=v1
// +kubebuilder:webhook:path=/validate-tokenkeeper-io-v1alpha1-tokenpolicy,mutating=false,failurePolicy=fail,sideEffects=None,groups=tokenkeeper.io,resources=tokenpolicies,verbs=create;update,versions=v1alpha1,name=vtokenpolicy.tokenkeeper.io,admissionReviewVersions=v1

// Setup registers every validating webhook with the manager's webhook server. allowEgress are
// the manager's --allow-egress-cidrs: issuer URLs in them are not refused for their address.
func Setup(mgr ctrl.Manager, allowEgress ...netip.Prefix) error {
	p := &resolve.Resolver{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader()}
	return errors.Join(
		ctrl.NewWebhookManagedBy(mgr, &v1alpha1.Credential{}).WithValidator(&credentialValidator{p}).Complete(),
		ctrl.NewWebhookManagedBy(mgr, &v1alpha1.Issuer{}).WithValidator(&issuerValidator[*v1alpha1.Issuer]{p, allowEgress}).Complete(),
		ctrl.NewWebhookManagedBy(mgr, &v1alpha1.ClusterIssuer{}).WithValidator(&issuerValidator[*v1alpha1.ClusterIssuer]{p, allowEgress}).Complete(),
		ctrl.NewWebhookManagedBy(mgr, &v1alpha1.TokenPolicy{}).WithValidator(tokenPolicyValidator{}).Complete(),
		ctrl.NewWebhookManagedBy(mgr, &v1alpha1.ClusterCredential{}).WithValidator(clusterCredentialValidator{}).Complete(),
	)
}

func denied(v []policy.Violation) error {
	if len(v) == 0 {
		return nil
	}
	msgs := make([]string, len(v))
	for i, x := range v {
		msgs[i] = x.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}

// unchanged reports whether an update leaves the spec alone or only finishes a deletion: such
// updates (finalizers, labels, status) are never blocked, or a tightened policy could keep an
// object from ever being deleted.
func unchanged[T any](oldSpec, newSpec T, deleting *metav1.Time) bool {
	return deleting != nil || equality.Semantic.DeepEqual(oldSpec, newSpec)
}

type credentialValidator struct{ p *resolve.Resolver }

func (v *credentialValidator) ValidateCreate(ctx context.Context, c *v1alpha1.Credential) (admission.Warnings, error) {
	return v.validate(ctx, c)
}

func (v *credentialValidator) ValidateUpdate(ctx context.Context, old, c *v1alpha1.Credential) (admission.Warnings, error) {
	if unchanged(old.Spec, c.Spec, c.DeletionTimestamp) {
		return nil, nil
	}
	return v.validate(ctx, c)
}

func (v *credentialValidator) ValidateDelete(context.Context, *v1alpha1.Credential) (admission.Warnings, error) {
	return nil, nil
}

func (v *credentialValidator) validate(ctx context.Context, c *v1alpha1.Credential) (admission.Warnings, error) {
	if err := validateSecretTemplate(c.Spec.SecretTemplate); err != nil {
		return nil, err
	}
	sel, err := v.p.Policies(ctx, c.Namespace)
	if err != nil {
		return nil, err
	}
	eff, violations := policy.Resolve(sel, &c.Spec)
	// A ServiceAccount token may only be asked for an audience the policies allow.
	sa := c.Spec.ServiceAccount
	if sa != nil && sa.Audience != "" {
		if x := eff.CheckAudience(sa.Audience); x != nil {
			violations = append(violations, *x)
		}
	}
	// The issuer it names must be allowed too, when it exists already.
	iss, err := v.p.Issuer(ctx, c.Namespace, c.Spec.IssuerRef)
	if b, ok := resolve.AsBlocked(err); ok && b.Reason == v1alpha1.ReasonIssuerNotFound {
		return admission.Warnings{b.Message + " yet"}, denied(violations)
	}
	if err != nil {
		return nil, err
	}
	// The issuer must take this kind of login: refused now, not at the first login.
	if err := issuer.Accepts(iss.GetSpec(), &c.Spec); err != nil {
		return nil, fmt.Errorf("spec.issuerRef: %s %q: %w", resolve.KindOf(iss), iss.GetName(), err)
	}
	if aud := iss.GetSpec().ServiceAccountAudience; sa != nil && sa.Audience == "" && aud != "" {
		if x := eff.CheckAudience(aud); x != nil {
			x.Detail += " (the issuer's serviceAccountAudience)"
			violations = append(violations, *x)
		}
	}
	for _, x := range eff.CheckIssuer(iss.GetSpec()) {
		x.Detail = fmt.Sprintf("the issuer's %s: %s", x.Field, x.Detail)
		x.Field = "spec.issuerRef"
		violations = append(violations, x)
	}
	return nil, denied(violations)
}

// validateSecretTemplate parses every secretTemplate.data template within the bounds of package
// tmpl (no loops, no nested templates) and checks the labels and annotations as the API server
// will, so that a template that can never render or be written is refused now rather than
// failing at every renewal.
func validateSecretTemplate(t *v1alpha1.SecretTemplate) error {
	if t == nil {
		return nil
	}
	// Labels and annotations the API server would refuse on the Secret: every write would fail.
	errs := []error{names.ValidateSecretMetadata(t.Labels, t.Annotations, "spec.secretTemplate")}
	for _, k := range slices.Sorted(maps.Keys(t.Data)) {
		if _, err := tmpl.Parse(k, string(t.Data[k])); err != nil {
			errs = append(errs, fmt.Errorf("spec.secretTemplate.data[%s]: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

type issuerValidator[T v1alpha1.GenericIssuer] struct {
	p           *resolve.Resolver
	allowEgress []netip.Prefix
}

func (v *issuerValidator[T]) ValidateCreate(ctx context.Context, iss T) (admission.Warnings, error) {
	return nil, v.validate(ctx, iss)
}

func (v *issuerValidator[T]) ValidateUpdate(ctx context.Context, old, iss T) (admission.Warnings, error) {
	if unchanged(old.GetSpec(), iss.GetSpec(), iss.GetDeletionTimestamp()) {
		return nil, nil
	}
	return nil, v.validate(ctx, iss)
}

func (v *issuerValidator[T]) ValidateDelete(context.Context, T) (admission.Warnings, error) {
	return nil, nil
}

// validate checks an Issuer against the policies of its namespace and a ClusterIssuer against
// the policies that cover every namespace.
func (v *issuerValidator[T]) validate(ctx context.Context, iss T) error {
	if err := issuer.Validate(iss.GetSpec()); err != nil {
		return err
	}
	if err := checkAddresses(iss.GetSpec(), v.allowEgress); err != nil {
		return err
	}
	sel, err := v.p.Policies(ctx, iss.GetNamespace())
	if err != nil {
		return err
	}
	eff, _ := policy.Resolve(sel, nil)
	return denied(eff.CheckIssuer(iss.GetSpec()))
}

// checkAddresses refuses issuer URLs whose host is a metadata, link-local or otherwise
// never-called address in any spelling, or a metadata service's or the API server's name: the
// connection would be refused anyway, so the Issuer is refused now, saying why.
func checkAddresses(spec *v1alpha1.IssuerSpec, allow []netip.Prefix) error {
	urls := policy.IssuerURLs(spec)
	var errs []error
	for _, field := range slices.Sorted(maps.Keys(urls)) {
		u, err := url.Parse(urls[field])
		if err != nil {
			continue // the CRD schema refuses it
		}
		if err := egress.CheckHost(u.Hostname(), allow); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
	}
	return errors.Join(errs...)
}

type tokenPolicyValidator struct{}

func (tokenPolicyValidator) ValidateCreate(_ context.Context, p *v1alpha1.TokenPolicy) (admission.Warnings, error) {
	return validatePolicy(p)
}

func (tokenPolicyValidator) ValidateUpdate(_ context.Context, _, p *v1alpha1.TokenPolicy) (admission.Warnings, error) {
	return validatePolicy(p)
}

func (tokenPolicyValidator) ValidateDelete(context.Context, *v1alpha1.TokenPolicy) (admission.Warnings, error) {
	return nil, nil
}

// validatePolicy checks what the CRD schema cannot: the selector, the patterns as URLs, and
// timings that contradict each other.
func validatePolicy(p *v1alpha1.TokenPolicy) (admission.Warnings, error) {
	var errs []string
	if p.Spec.NamespaceSelector != nil {
		if _, err := metav1.LabelSelectorAsSelector(p.Spec.NamespaceSelector); err != nil {
			errs = append(errs, "spec.namespaceSelector: "+err.Error())
		}
	}
	for i, pat := range p.Spec.AllowedIssuers {
		if _, err := url.Parse(strings.Replace(string(pat), "*.", "wildcard.", 1)); err != nil {
			errs = append(errs, fmt.Sprintf("spec.allowedIssuers[%d]: %v", i, err))
		}
	}
	s := p.Spec
	if s.Renewal != nil && s.Renewal.MinimumLead != nil && s.SessionDuration != nil && s.SessionDuration.Default != nil &&
		s.Renewal.MinimumLead.Duration >= s.SessionDuration.Default.Duration {
		errs = append(errs, fmt.Sprintf("spec.renewal.minimumLead: %s must be shorter than spec.sessionDuration.default %s",
			s.Renewal.MinimumLead.Duration, s.SessionDuration.Default.Duration))
	}
	if s.MaxSessionAge != nil && s.SessionDuration != nil && s.SessionDuration.Max != nil && s.MaxSessionAge.Duration < s.SessionDuration.Max.Duration {
		errs = append(errs, fmt.Sprintf("spec.maxSessionAge: %s must not be shorter than spec.sessionDuration.max %s",
			s.MaxSessionAge.Duration, s.SessionDuration.Max.Duration))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("TokenPolicy %q: %s", p.Name, strings.Join(errs, "; "))
	}
	return nil, nil
}
