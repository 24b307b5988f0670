// Package policy resolves the TokenPolicies that select a namespace into the effective values
// one Credential lives by, and checks issuer URLs against them. One function serves the
// controller and the admission webhook.
package policy

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// Built-in defaults, used when no policy says otherwise.
const (
	DefaultBeforeExpiryPercent = 33
	DefaultMinimumLead         = 2 * time.Minute
)

// Effective is what the policies in force resolve to for one Credential.
type Effective struct {
	// Policies that selected the namespace, by name.
	Policies []string
	// SessionDuration asked of the issuer; 0 when neither the Credential nor a policy says.
	SessionDuration time.Duration
	// MaxSessionDuration caps lifetimes; 0 means no cap.
	MaxSessionDuration time.Duration
	// BeforeExpiryPercent is the share of the lifetime left at renewal.
	BeforeExpiryPercent int32
	// RenewBefore is a fixed renewal lead; 0 means use the percentage.
	RenewBefore time.Duration
	// MinimumLead is the least lead before expiry.
	MinimumLead time.Duration
	// MaxSessionAge forces a fresh login after this long; 0 means never.
	MaxSessionAge time.Duration
	// RevokeOnDelete says whether to revoke the session when the Credential goes.
	RevokeOnDelete bool
	// RequireHTTPS forbids plain-http issuers.
	RequireHTTPS bool
	// Leeway and MaxTokenAge are TokenValidator defaults; Leeway is nil and MaxTokenAge 0 when no
	// policy sets them (a leeway of 0 is a choice: no tolerance).
	Leeway      *time.Duration
	MaxTokenAge time.Duration
	// Sources names, for each value a policy or the Credential set, where it came from: a
	// policy's name or "credential". Keys are the TokenPolicy field paths (sessionDuration.max, …).
	Sources map[string]string

	allowed          []allowList
	audiences        []audienceList
	requireHTTPSFrom []string
}

type audienceList struct {
	policy   string
	patterns []string
}

type allowList struct {
	policy   string
	patterns []v1alpha1.IssuerPattern
}

// Violation is a rule a Credential or issuer breaks.
type Violation struct {
	Policy string
	Field  string
	Detail string
}

func (v Violation) Error() string {
	return fmt.Sprintf("TokenPolicy %q: %s: %s", v.Policy, v.Field, v.Detail)
}

// Selecting returns the policies whose namespaceSelector matches nsLabels, sorted by priority
// (highest first) and then name.
func Selecting(policies []v1alpha1.TokenPolicy, nsLabels map[string]string) ([]v1alpha1.TokenPolicy, error) {
	var out []v1alpha1.TokenPolicy
	for _, p := range policies {
		sel := labels.Everything()
		if p.Spec.NamespaceSelector != nil {
			s, err := metav1.LabelSelectorAsSelector(p.Spec.NamespaceSelector)
			if err != nil {
				return nil, fmt.Errorf("TokenPolicy %q: namespaceSelector: %w", p.Name, err)
			}
			sel = s
		}
		if sel.Matches(labels.Set(nsLabels)) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b v1alpha1.TokenPolicy) int {
		if a.Spec.Priority != b.Spec.Priority {
			return int(b.Spec.Priority - a.Spec.Priority)
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// Resolve combines the selecting policies (as returned by Selecting) with a Credential's spec.
// Limits take the most restrictive value across policies; defaults come from the first policy
// (highest priority) that sets them; the Credential's own choices win over defaults. It reports
// violations of limits (a session over the maximum) without changing the requested values.
func Resolve(selecting []v1alpha1.TokenPolicy, spec *v1alpha1.CredentialSpec) (Effective, []Violation) {
	e := Effective{BeforeExpiryPercent: DefaultBeforeExpiryPercent, MinimumLead: DefaultMinimumLead, RevokeOnDelete: true,
		Sources: map[string]string{}}
	var (
		defaultSession, percent, lead, revoke, leeway, age bool
		violations                                         []Violation
		maxFrom                                            string
	)
	for _, p := range selecting {
		s := &p.Spec
		e.Policies = append(e.Policies, p.Name)
		if sd := s.SessionDuration; sd != nil {
			if sd.Default != nil && !defaultSession {
				e.SessionDuration, defaultSession = sd.Default.Duration, true
				e.Sources[FieldSessionDefault] = p.Name
			}
			if sd.Max != nil && (e.MaxSessionDuration == 0 || sd.Max.Duration < e.MaxSessionDuration) {
				e.MaxSessionDuration, maxFrom = sd.Max.Duration, p.Name
				e.Sources[FieldSessionMax] = p.Name
			}
		}
		if r := s.Renewal; r != nil {
			if r.BeforeExpiryPercent != nil && !percent {
				e.BeforeExpiryPercent, percent = *r.BeforeExpiryPercent, true
				e.Sources[FieldBeforeExpiryPercent] = p.Name
			}
			if r.MinimumLead != nil && !lead {
				e.MinimumLead, lead = r.MinimumLead.Duration, true
				e.Sources[FieldMinimumLead] = p.Name
			}
		}
		if s.MaxSessionAge != nil && (e.MaxSessionAge == 0 || s.MaxSessionAge.Duration < e.MaxSessionAge) {
			e.MaxSessionAge = s.MaxSessionAge.Duration
			e.Sources[FieldMaxSessionAge] = p.Name
		}
		if s.RevokeOnDelete != nil && !revoke {
			e.RevokeOnDelete, revoke = *s.RevokeOnDelete, true
			e.Sources[FieldRevokeOnDelete] = p.Name
		}
		if s.RequireHTTPS {
			e.RequireHTTPS = true
			e.requireHTTPSFrom = append(e.requireHTTPSFrom, p.Name)
		}
		if val := s.Validation; val != nil {
			if val.Leeway != nil && !leeway {
				d := val.Leeway.Duration
				e.Leeway, leeway = &d, true
				e.Sources[FieldLeeway] = p.Name
			}
			if val.MaxTokenAge != nil && !age {
				e.MaxTokenAge, age = val.MaxTokenAge.Duration, true
				e.Sources[FieldMaxTokenAge] = p.Name
			}
		}
		if len(s.AllowedAudiences) > 0 {
			e.audiences = append(e.audiences, audienceList{policy: p.Name, patterns: s.AllowedAudiences})
		}
		if len(s.AllowedIssuers) > 0 {
			e.allowed = append(e.allowed, allowList{policy: p.Name, patterns: s.AllowedIssuers})
		}
	}
	if spec == nil {
		return e, nil
	}
	if spec.SessionDuration != nil {
		e.SessionDuration = spec.SessionDuration.Duration
		e.Sources[FieldSessionDefault] = FromCredential
	}
	if e.MaxSessionDuration > 0 && e.SessionDuration > e.MaxSessionDuration {
		if spec.SessionDuration != nil {
			violations = append(violations, Violation{Policy: maxFrom, Field: "spec.sessionDuration",
				Detail: fmt.Sprintf("%s exceeds the maximum session duration %s", spec.SessionDuration.Duration, e.MaxSessionDuration)})
		}
		e.SessionDuration = e.MaxSessionDuration
		e.Sources[FieldSessionDefault] = maxFrom
	}
	if r := spec.Renewal; r != nil {
		if r.RenewBefore != nil {
			e.RenewBefore = r.RenewBefore.Duration
			e.Sources[FieldRenewBefore] = FromCredential
		}
		if r.BeforeExpiryPercent != nil {
			e.BeforeExpiryPercent = *r.BeforeExpiryPercent
			e.Sources[FieldBeforeExpiryPercent] = FromCredential
		}
	}
	if spec.RevokeOnDelete != nil {
		e.RevokeOnDelete = *spec.RevokeOnDelete
		e.Sources[FieldRevokeOnDelete] = FromCredential
	}
	return e, violations
}

// The fields Effective.Sources names, as a TokenPolicy spells them, and the source of a value the
// Credential set itself.
const (
	FieldSessionDefault      = "sessionDuration.default"
	FieldSessionMax          = "sessionDuration.max"
	FieldBeforeExpiryPercent = "renewal.beforeExpiryPercent"
	FieldMinimumLead         = "renewal.minimumLead"
	FieldRenewBefore         = "renewal.renewBefore"
	FieldMaxSessionAge       = "maxSessionAge"
	FieldRevokeOnDelete      = "revokeOnDelete"
	FieldLeeway              = "validation.leeway"
	FieldMaxTokenAge         = "validation.maxTokenAge"
	FromCredential           = "credential"
)

// Lists are the allow-lists in force, each with the policy that set it; every list must allow a
// value.
type Lists struct {
	Policy   string
	Patterns []string
}

// AllowedIssuers returns the allowedIssuers lists in force.
func (e Effective) AllowedIssuers() []Lists {
	out := make([]Lists, 0, len(e.allowed))
	for _, a := range e.allowed {
		l := Lists{Policy: a.policy}
		for _, p := range a.patterns {
			l.Patterns = append(l.Patterns, string(p))
		}
		out = append(out, l)
	}
	return out
}

// AllowedAudiences returns the allowedAudiences lists in force.
func (e Effective) AllowedAudiences() []Lists {
	out := make([]Lists, 0, len(e.audiences))
	for _, a := range e.audiences {
		out = append(out, Lists{Policy: a.policy, Patterns: a.patterns})
	}
	return out
}

// RequireHTTPSFrom names the policies that require HTTPS.
func (e Effective) RequireHTTPSFrom() []string { return e.requireHTTPSFrom }

// URLRules identifies what CheckURL checks (HTTPS required, the allowed-issuer lists), so that
// issuer clients built for equal rules can be shared.
func (e Effective) URLRules() string {
	return fmt.Sprintf("https=%t;from=%v;allowed=%v", e.RequireHTTPS, e.requireHTTPSFrom, e.allowed)
}

// CheckURL returns a Violation when u is not allowed: plain http where HTTPS is required, or a
// URL that some policy's allowedIssuers does not match. Every policy with a list must allow it.
// The issuer engine calls it before every request.
func (e Effective) CheckURL(u *url.URL) error {
	if v := e.checkURL("url", u); v != nil {
		return *v
	}
	return nil
}

func (e Effective) checkURL(field string, u *url.URL) *Violation {
	if e.RequireHTTPS && u.Scheme != "https" {
		return &Violation{Policy: e.requiring(), Field: field, Detail: fmt.Sprintf("%s://%s uses plain http; HTTPS is required", u.Scheme, u.Host)}
	}
	for _, a := range e.allowed {
		if !slices.ContainsFunc(a.patterns, func(p v1alpha1.IssuerPattern) bool { return Matches(p, u) }) {
			return &Violation{Policy: a.policy, Field: field, Detail: fmt.Sprintf("issuer %s://%s%s is not in allowedIssuers %v", u.Scheme, u.Host, u.EscapedPath(), a.patterns)}
		}
	}
	return nil
}

func (e Effective) requiring() string {
	if len(e.requireHTTPSFrom) > 0 {
		return e.requireHTTPSFrom[0]
	}
	return strings.Join(e.Policies, ",")
}

// CheckIssuer checks every endpoint of an issuer spec, naming the offending field.
func (e Effective) CheckIssuer(spec *v1alpha1.IssuerSpec) []Violation {
	var out []Violation
	if e.RequireHTTPS && spec.AllowInsecureHTTP {
		out = append(out, Violation{Policy: e.requiring(), Field: "spec.allowInsecureHTTP", Detail: "plain http is not allowed; HTTPS is required"})
	}
	for field, raw := range IssuerURLs(spec) {
		u, err := url.Parse(raw)
		if err != nil {
			continue // the CRD schema rejects unparsable URLs
		}
		if v := e.checkURL(field, u); v != nil {
			out = append(out, *v)
		}
	}
	slices.SortFunc(out, func(a, b Violation) int { return strings.Compare(a.Field, b.Field) })
	return out
}

// IssuerURLs lists the URLs an issuer spec names, by field path.
func IssuerURLs(spec *v1alpha1.IssuerSpec) map[string]string {
	urls := map[string]string{}
	add := func(field string, u v1alpha1.EndpointURL) {
		if u != "" {
			urls[field] = string(u)
		}
	}
	add("spec.url", spec.URL)
	if spec.OAuth2 != nil {
		add("spec.oauth2.issuerURL", spec.OAuth2.IssuerURL)
	}
	for field, ep := range map[string]*v1alpha1.Endpoint{"spec.refresh.url": spec.Refresh, "spec.revoke.url": spec.Revoke, "spec.tokenInfo.url": spec.TokenInfo} {
		if ep != nil {
			add(field, ep.URL)
		}
	}
	if spec.JWKS != nil {
		add("spec.jwks.url", spec.JWKS.URL)
	}
	if spec.Probe != nil {
		add("spec.probe.url", spec.Probe.URL)
	}
	return urls
}

// Global returns the policies that select every namespace (no or an empty selector): the ones a
// cluster-scoped ClusterIssuer must satisfy.
func Global(policies []v1alpha1.TokenPolicy) []v1alpha1.TokenPolicy {
	var out []v1alpha1.TokenPolicy
	for _, p := range policies {
		sel := p.Spec.NamespaceSelector
		if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
			out = append(out, p)
		}
	}
	sorted, _ := Selecting(out, nil)
	return sorted
}

// EffectiveStatus renders e for a Credential's status.
func (e Effective) EffectiveStatus() *v1alpha1.EffectivePolicy {
	d := func(v time.Duration) *metav1.Duration {
		if v == 0 {
			return nil
		}
		return &metav1.Duration{Duration: v}
	}
	return &v1alpha1.EffectivePolicy{
		Policies: e.Policies, SessionDuration: d(e.SessionDuration), MaxSessionDuration: d(e.MaxSessionDuration),
		BeforeExpiryPercent: e.BeforeExpiryPercent, RenewBefore: d(e.RenewBefore), MinimumLead: &metav1.Duration{Duration: e.MinimumLead},
		MaxSessionAge: d(e.MaxSessionAge),
	}
}

// plainPath reports whether a (decoded) path reads the same on any server, so that a path under a
// prefix stays under it: no dot segments, whether written plainly, percent-encoded or followed by
// ";" parameters (Tomcat and Jetty read "..;" as ".."); no backslashes (which some servers read as
// slashes); no "%" left after decoding (which a server decoding twice reads again); no control
// characters (NUL ends a path for some).
func plainPath(p string) bool {
	if strings.ContainsAny(p, `\%`) || strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return false
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg, _, _ = strings.Cut(seg, ";"); seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// Matches reports whether u matches an allowed-issuer pattern: same scheme; host equal, or a
// subdomain for "*." patterns; port equal when the pattern names one; the path under the
// pattern's path prefix at a segment boundary.
func Matches(p v1alpha1.IssuerPattern, u *url.URL) bool {
	pu, err := url.Parse(strings.Replace(string(p), "*.", "wildcard.", 1))
	if err != nil || pu.Scheme != u.Scheme {
		return false
	}
	host, phost := strings.ToLower(u.Hostname()), strings.ToLower(pu.Hostname())
	if strings.HasPrefix(string(p), pu.Scheme+"://*.") {
		suffix := strings.TrimPrefix(phost, "wildcard")
		if !strings.HasSuffix(host, suffix) || len(host) == len(suffix) {
			return false
		}
	} else if host != phost {
		return false
	}
	if pu.Port() != "" && pu.Port() != u.Port() {
		return false
	}
	prefix := strings.TrimSuffix(pu.Path, "/")
	if prefix == "" {
		return true
	}
	if !plainPath(u.Path) {
		return false
	}
	return u.Path == prefix || strings.HasPrefix(u.Path, prefix+"/")
}

// CheckAudience says whether ServiceAccount tokens may be requested for aud: every policy that
// lists allowedAudiences must allow it, exactly or by a prefix ending in "*".
func (e Effective) CheckAudience(aud string) *Violation {
	for _, l := range e.audiences {
		ok := false
		for _, p := range l.patterns {
			if prefix, wild := strings.CutSuffix(p, "*"); wild && strings.HasPrefix(aud, prefix) || p == aud {
				ok = true
				break
			}
		}
		if !ok {
			return &Violation{Policy: l.policy, Field: "spec.serviceAccount.audience",
				Detail: fmt.Sprintf("ServiceAccount tokens for audience %q are not allowed (allowedAudiences: %s)", aud, strings.Join(l.patterns, ", "))}
		}
	}
	return nil
}
