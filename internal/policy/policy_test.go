package policy

import (
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
func i32(v int32) *int32                   { return &v }

func pol(name string, prio int32, spec v1alpha1.TokenPolicySpec) v1alpha1.TokenPolicy {
	spec.Priority = prio
	return v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
}

func TestResolve(t *testing.T) {
	strict := pol("strict", 0, v1alpha1.TokenPolicySpec{
		SessionDuration: &v1alpha1.SessionDurationPolicy{Default: dur(30 * time.Minute), Max: dur(4 * time.Hour)},
		MaxSessionAge:   dur(12 * time.Hour),
	})
	team := pol("team", 10, v1alpha1.TokenPolicySpec{
		SessionDuration: &v1alpha1.SessionDurationPolicy{Default: dur(2 * time.Hour), Max: dur(8 * time.Hour)},
		Renewal:         &v1alpha1.RenewalPolicy{BeforeExpiryPercent: i32(50), MinimumLead: dur(5 * time.Minute)},
		MaxSessionAge:   dur(24 * time.Hour),
	})
	cases := map[string]struct {
		reason     string
		policies   []v1alpha1.TokenPolicy
		spec       v1alpha1.CredentialSpec
		want       Effective
		violations int
		sources    map[string]string // where each value came from; checked when set
	}{
		"NoPolicy": {
			reason: "Built-in defaults: a third of the lifetime, 2 minutes lead, revoke on delete.",
			want:   Effective{BeforeExpiryPercent: 33, MinimumLead: 2 * time.Minute, RevokeOnDelete: true},
		},
		"DefaultsFromHighestPriorityLimitsFromStrictest": {
			reason:   "team (priority 10) gives defaults; strict's smaller maximum and age win.",
			policies: []v1alpha1.TokenPolicy{team, strict},
			want: Effective{Policies: []string{"team", "strict"}, SessionDuration: 2 * time.Hour, MaxSessionDuration: 4 * time.Hour,
				BeforeExpiryPercent: 50, MinimumLead: 5 * time.Minute, MaxSessionAge: 12 * time.Hour, RevokeOnDelete: true},
			sources: map[string]string{FieldSessionDefault: "team", FieldSessionMax: "strict", FieldMaxSessionAge: "strict",
				FieldBeforeExpiryPercent: "team", FieldMinimumLead: "team"},
		},
		"CredentialOverMax": {
			reason:   "A requested session over the maximum is a violation and is capped.",
			policies: []v1alpha1.TokenPolicy{strict},
			spec:     v1alpha1.CredentialSpec{SessionDuration: dur(12 * time.Hour)},
			want: Effective{Policies: []string{"strict"}, SessionDuration: 4 * time.Hour, MaxSessionDuration: 4 * time.Hour,
				BeforeExpiryPercent: 33, MinimumLead: 2 * time.Minute, MaxSessionAge: 12 * time.Hour, RevokeOnDelete: true},
			violations: 1,
			sources:    map[string]string{FieldSessionDefault: "strict", FieldSessionMax: "strict", FieldMaxSessionAge: "strict"},
		},
		"CredentialChoicesWin": {
			reason:   "The Credential's own renewal and revoke choices override policy defaults.",
			policies: []v1alpha1.TokenPolicy{team},
			spec: v1alpha1.CredentialSpec{SessionDuration: dur(time.Hour), RevokeOnDelete: new(bool),
				Renewal: &v1alpha1.Renewal{RenewBefore: dur(10 * time.Minute)}},
			want: Effective{Policies: []string{"team"}, SessionDuration: time.Hour, MaxSessionDuration: 8 * time.Hour,
				BeforeExpiryPercent: 50, RenewBefore: 10 * time.Minute, MinimumLead: 5 * time.Minute, MaxSessionAge: 24 * time.Hour},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			sel, err := Selecting(tc.policies, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, v := Resolve(sel, &tc.spec)
			got.allowed, got.requireHTTPSFrom = nil, nil
			if len(v) != tc.violations {
				t.Errorf("%s\nviolations %v, want %d", tc.reason, v, tc.violations)
			}
			if strings.Join(got.Policies, ",") != strings.Join(tc.want.Policies, ",") {
				t.Errorf("%s\npolicies %v, want %v", tc.reason, got.Policies, tc.want.Policies)
			}
			got.Policies, tc.want.Policies = nil, nil
			if tc.sources != nil && !reflect.DeepEqual(got.Sources, tc.sources) {
				t.Errorf("%s\nsources %v, want %v", tc.reason, got.Sources, tc.sources)
			}
			got.Sources = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s\ngot  %+v\nwant %+v", tc.reason, got, tc.want)
			}
		})
	}
}

func TestSelectingByLabels(t *testing.T) {
	prod := pol("prod", 0, v1alpha1.TokenPolicySpec{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}})
	all := pol("all", 0, v1alpha1.TokenPolicySpec{})
	sel, err := Selecting([]v1alpha1.TokenPolicy{prod, all}, map[string]string{"env": "dev"})
	if err != nil || len(sel) != 1 || sel[0].Name != "all" {
		t.Fatalf("dev namespace: got %v %v, want only 'all'", sel, err)
	}
	sel, _ = Selecting([]v1alpha1.TokenPolicy{prod, all}, map[string]string{"env": "prod"})
	if len(sel) != 2 || sel[0].Name != "all" {
		t.Fatalf("prod namespace: got %d policies, want both, ordered by name", len(sel))
	}
}

func TestCheckURL(t *testing.T) {
	e, _ := Resolve([]v1alpha1.TokenPolicy{
		pol("a", 0, v1alpha1.TokenPolicySpec{AllowedIssuers: []v1alpha1.IssuerPattern{"https://*.example.com", "https://idp.corp:8443/oauth"}, RequireHTTPS: true}),
		pol("b", 0, v1alpha1.TokenPolicySpec{AllowedIssuers: []v1alpha1.IssuerPattern{"https://billing.example.com", "https://idp.corp:8443"}}),
	}, nil)
	cases := map[string]struct {
		url  string
		want string // "" = allowed, else a substring of the violation
	}{
		"AllowedByBoth":          {url: "https://billing.example.com/token"},
		"WildcardOnlyInA":        {url: "https://crm.example.com/login", want: `TokenPolicy "b"`},
		"WildcardNeedsSubdomain": {url: "https://example.com/login", want: `TokenPolicy "a"`},
		"SuffixTrick":            {url: "https://billing.example.com.evil.io/", want: "not in allowedIssuers"},
		"LookalikeHost":          {url: "https://evilexample.com/", want: "not in allowedIssuers"},
		"PathPrefix":             {url: "https://idp.corp:8443/oauth/token"},
		"PathPrefixBoundary":     {url: "https://idp.corp:8443/oauthx/token", want: `TokenPolicy "a"`},
		"WrongPort":              {url: "https://idp.corp:9443/oauth/token", want: "not in allowedIssuers"},
		"PlainHTTP":              {url: "http://billing.example.com/token", want: "HTTPS is required"},
		"MetadataService":        {url: "https://169.254.169.254/latest", want: "not in allowedIssuers"},
		"DotDotOutOfPrefix":      {url: "https://idp.corp:8443/oauth/../admin", want: `TokenPolicy "a"`},
		"EncodedDotDot":          {url: "https://idp.corp:8443/oauth/%2e%2e/admin", want: `TokenPolicy "a"`},
		"EncodedSlashDotDot":     {url: "https://idp.corp:8443/oauth/..%2fadmin", want: `TokenPolicy "a"`},
		"BackslashDotDot":        {url: "https://idp.corp:8443/oauth/..%5cadmin", want: `TokenPolicy "a"`},
		"DotDotSemicolon":        {url: "https://idp.corp:8443/oauth/..;/admin", want: `TokenPolicy "a"`},
		"DoubleEncodedDotDot":    {url: "https://idp.corp:8443/oauth/%252e%252e/admin", want: `TokenPolicy "a"`},
		"NULInPath":              {url: "https://idp.corp:8443/oauth/token%00/../../admin", want: `TokenPolicy "a"`},
		"SingleDot":              {url: "https://idp.corp:8443/oauth/./token", want: `TokenPolicy "a"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			u, _ := url.Parse(tc.url)
			err := e.CheckURL(u)
			if tc.want == "" && err != nil {
				t.Fatalf("%s rejected: %v", tc.url, err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("%s: error %v, want one containing %q", tc.url, err, tc.want)
			}
		})
	}
}

func TestCheckIssuerNamesFields(t *testing.T) {
	e, _ := Resolve([]v1alpha1.TokenPolicy{pol("corp", 0, v1alpha1.TokenPolicySpec{
		AllowedIssuers: []v1alpha1.IssuerPattern{"https://*.example.com"}, RequireHTTPS: true,
	})}, nil)
	spec := &v1alpha1.IssuerSpec{
		URL: "https://login.example.com/token", AllowInsecureHTTP: true,
		Refresh: &v1alpha1.Endpoint{URL: "https://evil.test/refresh"},
		Revoke:  &v1alpha1.Endpoint{URL: "http://login.example.com/logout"},
	}
	var got []string
	for _, v := range e.CheckIssuer(spec) {
		got = append(got, v.Field)
		if v.Policy != "corp" {
			t.Errorf("violation names policy %q, want corp", v.Policy)
		}
	}
	want := []string{"spec.allowInsecureHTTP", "spec.refresh.url", "spec.revoke.url"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("violations on %v, want %v", got, want)
	}
}
