package policy_test

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

func TestAdmissionRejects(t *testing.T) {
	t.Parallel()
	ns := namespace(t, &v1alpha1.TokenPolicySpec{SessionDuration: &v1alpha1.SessionDurationPolicy{Default: dur(30 * time.Minute), Max: dur(time.Hour)}})
	policyName := ns
	login := &v1alpha1.PasswordLogin{SecretRef: v1alpha1.LocalSecretReference{Name: "login"}}
	allowed := "[https://127.0.0.1 https://*.example.com]"
	cases := map[string]struct {
		reason string
		obj    client.Object
		want   string // the whole message after "denied the request: "
	}{
		"CredentialOverMaxSession": {
			reason: "A session longer than the policy's maximum.",
			obj: &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "too-long"}, Spec: v1alpha1.CredentialSpec{
				IssuerRef: v1alpha1.IssuerReference{Name: "none"}, Password: login, SecretName: "t", SessionDuration: dur(12 * time.Hour)}},
			want: `TokenPolicy "` + policyName + `": spec.sessionDuration: 12h0m0s exceeds the maximum session duration 1h0m0s`,
		},
		"IssuerURLNotAllowed": {
			reason: "An issuer host outside allowedIssuers: no SSRF to arbitrary hosts.",
			obj: &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "evil"}, Spec: v1alpha1.IssuerSpec{
				URL: "https://evil.test/login", JSON: &v1alpha1.JSONLogin{}}},
			want: `TokenPolicy "default": spec.url: issuer https://evil.test/login is not in allowedIssuers ` + allowed,
		},
		"IssuerPlainHTTP": {
			reason: "Plain http where the policy requires HTTPS, even with allowInsecureHTTP.",
			obj: &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "plain"}, Spec: v1alpha1.IssuerSpec{
				URL: "http://127.0.0.1:8080/login", JSON: &v1alpha1.JSONLogin{}, AllowInsecureHTTP: true}},
			want: `TokenPolicy "default": spec.allowInsecureHTTP: plain http is not allowed; HTTPS is required; ` +
				`TokenPolicy "default": spec.url: http://127.0.0.1:8080 uses plain http; HTTPS is required`,
		},
		"IssuerLookalikeHost": {
			reason: "A host that merely ends like an allowed one.",
			obj: &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "lookalike"}, Spec: v1alpha1.IssuerSpec{
				URL: "https://login.example.com.evil.test/token", JSON: &v1alpha1.JSONLogin{}}},
			want: `TokenPolicy "default": spec.url: issuer https://login.example.com.evil.test/token is not in allowedIssuers ` + allowed,
		},
		"ClusterIssuerRefreshURL": {
			reason: "Every endpoint is checked, not just the login URL; ClusterIssuers meet the all-namespace policies.",
			obj: &v1alpha1.ClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "sneaky"}, Spec: v1alpha1.IssuerSpec{
				URL: "https://login.example.com/token", JSON: &v1alpha1.JSONLogin{},
				Refresh: &v1alpha1.Endpoint{URL: "https://collector.evil.test/refresh"}}},
			want: `TokenPolicy "default": spec.refresh.url: issuer https://collector.evil.test/refresh is not in allowedIssuers ` + allowed,
		},
		"CredentialUnboundedSecretTemplate": {
			reason: "The reported attack: 6,000,000 copies of the token took the manager to 1.83 GB. Loops are refused.",
			obj: &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "big"}, Spec: v1alpha1.CredentialSpec{
				IssuerRef: v1alpha1.IssuerReference{Name: "none"}, Password: login, SecretName: "t",
				SecretTemplate: &v1alpha1.SecretTemplate{Data: map[string]v1alpha1.BodyTemplate{"big": `{{ range 6000000 }}{{ $.token }}{{ end }}`}}}},
			want: `spec.secretTemplate.data[big]: range is not allowed: templates render one value, without loops`,
		},
		"CredentialSecretLabelKey": {
			reason: "A label key the API server refuses on the Secret: every write would fail (admitted in v0.2, retried forever).",
			obj: &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad-label"}, Spec: v1alpha1.CredentialSpec{
				IssuerRef: v1alpha1.IssuerReference{Name: "none"}, Password: login, SecretName: "t",
				SecretTemplate: &v1alpha1.SecretTemplate{Labels: map[string]string{"team name": "payments"}}}},
			want: `spec.secretTemplate.labels: Invalid value: "team name": name part must consist of alphanumeric characters, '-', '_' or '.', ` +
				`and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`,
		},
		"CredentialSecretAnnotationsOverBound": {
			reason: "Annotations over the bound (256 KiB in v0.2 made every Secret write fail).",
			obj: &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "big-annotations"}, Spec: v1alpha1.CredentialSpec{
				IssuerRef: v1alpha1.IssuerReference{Name: "none"}, Password: login, SecretName: "t",
				SecretTemplate: &v1alpha1.SecretTemplate{Annotations: map[string]string{"a": strings.Repeat("x", 40<<10), "b": strings.Repeat("x", 40<<10)}}}},
			want: `spec.secretTemplate.annotations: Too long: may not be more than 65536 bytes`,
		},
		"IssuerMetadataAddressHex": {
			reason: "The metadata service in hex: refused when applied, not first at connect time.",
			obj: &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "metadata-hex"}, Spec: v1alpha1.IssuerSpec{
				URL: "https://0xA9FEA9FE/latest/meta-data", JSON: &v1alpha1.JSONLogin{}}},
			want: `spec.url: egress not allowed: 169.254.169.254 is a link-local address (cloud metadata services live there); ` +
				`allow it explicitly with --allow-egress-cidrs (written 0xA9FEA9FE)`,
		},
		"IssuerMetadataName": {
			reason: "GCE's metadata server by name, on the revoke endpoint.",
			obj: &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "metadata-name"}, Spec: v1alpha1.IssuerSpec{
				URL: "https://login.example.com/token", JSON: &v1alpha1.JSONLogin{},
				Revoke: &v1alpha1.Endpoint{URL: "https://metadata.google.internal/computeMetadata/v1/"}}},
			want: `spec.revoke.url: egress not allowed: metadata.google.internal names a cloud metadata service or the cluster's API server`,
		},
		"IssuerUnboundedBodyTemplate": {
			reason: "An issuer body template that loops (1.38 GB reported) is refused, naming the field.",
			obj: &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "loop"}, Spec: v1alpha1.IssuerSpec{
				URL: "https://login.example.com/token", JSON: &v1alpha1.JSONLogin{Body: `{"k":"{{ range 6000000 }}{{ $.key }}{{ end }}"}`}}},
			want: `spec.json.body: range is not allowed: templates render one value, without loops`,
		},
		"IssuerSelfCallingTemplate": {
			reason: "A template that defines and calls itself.",
			obj: &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "recurse"}, Spec: v1alpha1.IssuerSpec{
				URL: "https://login.example.com/token", JSON: &v1alpha1.JSONLogin{},
				Refresh: &v1alpha1.Endpoint{URL: "https://login.example.com/refresh", Body: `{{ define "a" }}{{ template "a" }}{{ end }}{}`}}},
			want: `spec.refresh.body: define is not allowed: a template is one body`,
		},
		"TokenPolicyLeadOverSession": {
			reason: "A minimum lead as long as the default session renews constantly.",
			obj: &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: "bad-lead"}, Spec: v1alpha1.TokenPolicySpec{
				SessionDuration: &v1alpha1.SessionDurationPolicy{Default: dur(time.Hour)}, Renewal: &v1alpha1.RenewalPolicy{MinimumLead: dur(2 * time.Hour)}}},
			want: `TokenPolicy "bad-lead": spec.renewal.minimumLead: 2h0m0s must be shorter than spec.sessionDuration.default 1h0m0s`,
		},
		"TokenPolicyAgeUnderMax": {
			reason: "A maximum session age shorter than the maximum session contradicts it.",
			obj: &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: "bad-age"}, Spec: v1alpha1.TokenPolicySpec{
				SessionDuration: &v1alpha1.SessionDurationPolicy{Max: dur(8 * time.Hour)}, MaxSessionAge: dur(time.Hour)}},
			want: `TokenPolicy "bad-age": spec.maxSessionAge: 1h0m0s must not be shorter than spec.sessionDuration.max 8h0m0s`,
		},
		"TokenPolicyBadSelector": {
			reason: "A selector the API cannot evaluate.",
			obj: &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: "bad-selector"}, Spec: v1alpha1.TokenPolicySpec{
				NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: "In"}}}}},
			want: `TokenPolicy "bad-selector": spec.namespaceSelector: values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty`,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := env.Client.Create(t.Context(), tc.obj)
			if err == nil {
				t.Fatalf("%s\naccepted, want rejected", tc.reason)
			}
			_, msg, found := strings.Cut(err.Error(), "denied the request: ")
			if !found || msg != tc.want {
				t.Fatalf("%s\nmessage:\n  %s\nwant:\n  %s", tc.reason, err, tc.want)
			}
		})
	}

	// An update that raises the session over the maximum is rejected too; one that leaves the
	// spec alone (a label, a finalizer) never is.
	ok := &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ok"}, Spec: v1alpha1.CredentialSpec{
		IssuerRef: v1alpha1.IssuerReference{Name: "none"}, Password: login, SecretName: "t", SessionDuration: dur(time.Hour)}}
	must(t, env.Client.Create(t.Context(), ok))
	// The controller adds its finalizer meanwhile: retry on conflicts, as kubectl would.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		must(t, env.Client.Get(t.Context(), client.ObjectKeyFromObject(ok), ok))
		ok.Spec.SessionDuration = dur(2 * time.Hour)
		return env.Client.Update(t.Context(), ok)
	})
	if err == nil || !strings.Contains(err.Error(), "spec.sessionDuration: 2h0m0s exceeds the maximum session duration 1h0m0s") {
		t.Fatalf("update over the maximum: %v", err)
	}
	// An update that leaves the spec alone is not re-validated.
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		must(t, env.Client.Get(t.Context(), client.ObjectKeyFromObject(ok), ok))
		ok.Labels = map[string]string{"touched": "yes"}
		return env.Client.Update(t.Context(), ok)
	}))
}

// ServiceAccount tokens only for the audiences a TokenPolicy allows, checked at admission: an
// audience the Credential names, or the one its Issuer declares.
func TestAdmissionServiceAccountAudience(t *testing.T) {
	t.Parallel()
	ns := namespace(t, &v1alpha1.TokenPolicySpec{AllowedAudiences: []string{"vault", "https://sts.example.com/*"}})
	must(t, env.Client.Create(t.Context(), &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "elsewhere"}, Spec: v1alpha1.IssuerSpec{
		URL: "https://login.example.com/token", OAuth2: &v1alpha1.OAuth2{}, ServiceAccountAudience: "https://elsewhere.example.com"}}))
	cred := func(name, issuer, aud string) *v1alpha1.Credential {
		return &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1alpha1.CredentialSpec{
			IssuerRef: v1alpha1.IssuerReference{Name: issuer}, SecretName: "t", ServiceAccount: &v1alpha1.ServiceAccountLogin{Name: "bot", Audience: aud}}}
	}
	err := env.Client.Create(t.Context(), cred("named", "none", "https://evil.example.com"))
	if err == nil || !strings.Contains(err.Error(), `spec.serviceAccount.audience: ServiceAccount tokens for audience "https://evil.example.com" are not allowed`) {
		t.Fatalf("an audience outside allowedAudiences: %v", err)
	}
	err = env.Client.Create(t.Context(), cred("from-issuer", "elsewhere", ""))
	if err == nil || !strings.Contains(err.Error(), "https://elsewhere.example.com") || !strings.Contains(err.Error(), "serviceAccountAudience") {
		t.Fatalf("the issuer's audience outside allowedAudiences: %v", err)
	}
	must(t, env.Client.Create(t.Context(), cred("allowed", "none", "https://sts.example.com/orders")))
}

// A Credential whose login its issuer does not take is refused when applied, naming both kinds
// and what the issuer takes (v0.2 admitted a jwtBearer Credential on a json Issuer, which failed
// at its first login).
func TestAdmissionLoginKindMismatch(t *testing.T) {
	t.Parallel()
	ns := namespace(t, nil)
	iss := &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "json-login"}, Spec: v1alpha1.IssuerSpec{
		URL: "https://login.example.com/token", JSON: &v1alpha1.JSONLogin{}}}
	must(t, env.Client.Create(t.Context(), iss))
	waitSeen(t, iss)
	ref := v1alpha1.LocalSecretReference{Name: "sa-key"}
	err := env.Client.Create(t.Context(), &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "google"}, Spec: v1alpha1.CredentialSpec{
		IssuerRef: v1alpha1.IssuerReference{Name: "json-login"}, SecretName: "t",
		JWTBearer: &v1alpha1.JWTBearerLogin{SecretRef: ref, ServiceAccountKeyKey: "key.json"}}})
	want := `spec.issuerRef: Issuer "json-login": the issuer speaks json, which does not take a jwtBearer login; it takes password, apiKey, clientCredentials, refreshToken`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("jwtBearer at a json issuer: %v\nwant: %s", err, want)
	}
	must(t, env.Client.Create(t.Context(), &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "login"}, Spec: v1alpha1.CredentialSpec{
		IssuerRef: v1alpha1.IssuerReference{Name: "json-login"}, SecretName: "t2", Password: &v1alpha1.PasswordLogin{SecretRef: ref}}}))
}
