package clustercredential

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

func TestForbids(t *testing.T) {
	iss := &v1alpha1.ClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "idp"},
		Spec: v1alpha1.IssuerSpec{URL: "https://idp.example.com/token", ServiceAccountAudience: "idp"}}
	pol := func(name string, edit func(*v1alpha1.TokenPolicySpec)) v1alpha1.TokenPolicy {
		p := v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
		edit(&p.Spec)
		return p
	}
	maxHour := pol("max-1h", func(s *v1alpha1.TokenPolicySpec) {
		s.SessionDuration = &v1alpha1.SessionDurationPolicy{Max: &metav1.Duration{Duration: time.Hour}}
	})
	hours := func(h int) *metav1.Duration { return &metav1.Duration{Duration: time.Duration(h) * time.Hour} }
	for name, tc := range map[string]struct {
		reason   string
		policies []v1alpha1.TokenPolicy
		spec     v1alpha1.CredentialSpec
		lifetime time.Duration
		want     string // "" allowed; else a part of the message
	}{
		"NoPolicy": {reason: "Nothing forbids anything."},
		"AllowedIssuer": {reason: "The issuer matches the list.", policies: []v1alpha1.TokenPolicy{pol("list", func(s *v1alpha1.TokenPolicySpec) {
			s.AllowedIssuers = []v1alpha1.IssuerPattern{"https://*.example.com"}
		})}},
		"OtherIssuer": {reason: "A namespace whose policy lists other issuers gets no token from this one.", want: `TokenPolicy "list"`,
			policies: []v1alpha1.TokenPolicy{pol("list", func(s *v1alpha1.TokenPolicySpec) {
				s.AllowedIssuers = []v1alpha1.IssuerPattern{"https://idp.corp"}
			})}},
		"SessionTooLong": {reason: "The session asked for is over the namespace's maximum.", want: "exceeds the maximum session duration",
			policies: []v1alpha1.TokenPolicy{maxHour}, spec: v1alpha1.CredentialSpec{SessionDuration: hours(2)}},
		"SessionWithin": {reason: "Within the maximum.", policies: []v1alpha1.TokenPolicy{maxHour}, spec: v1alpha1.CredentialSpec{SessionDuration: hours(1)}},
		"TokenLivesTooLong": {reason: "No session asked for, but the issuer's token outlives the namespace's maximum.", want: "longer than the maximum",
			policies: []v1alpha1.TokenPolicy{maxHour}, lifetime: 10 * time.Hour},
		"TokenLivesWithin": {reason: "Status times are whole seconds: a token of the maximum's length measured a second long passes.",
			policies: []v1alpha1.TokenPolicy{maxHour}, lifetime: time.Hour + time.Second},
		"Audience": {reason: "A ServiceAccount login for an audience the namespace does not allow.", want: "allowedAudiences",
			policies: []v1alpha1.TokenPolicy{pol("aud", func(s *v1alpha1.TokenPolicySpec) { s.AllowedAudiences = []string{"vault"} })},
			spec:     v1alpha1.CredentialSpec{ServiceAccount: &v1alpha1.ServiceAccountLogin{Name: "ci"}}},
		"HTTPS": {reason: "HTTPS required and the issuer is https: allowed.", policies: []v1alpha1.TokenPolicy{pol("tls", func(s *v1alpha1.TokenPolicySpec) { s.RequireHTTPS = true })}},
	} {
		t.Run(name, func(t *testing.T) {
			got := forbids(tc.policies, &tc.spec, iss, tc.lifetime)
			switch {
			case tc.want == "" && got != "":
				t.Fatalf("%s: forbidden: %s", tc.reason, got)
			case tc.want != "" && !strings.Contains(got, tc.want):
				t.Fatalf("%s: got %q, want a message containing %q", tc.reason, got, tc.want)
			}
		})
	}
}
