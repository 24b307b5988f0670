package cli

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
	"github.com/tokenkeeper/tokenkeeper/internal/login"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
	"github.com/tokenkeeper/tokenkeeper/internal/validation"
)

// TestRenew: on the real API server with the controller running, `renew --wait` brings exactly
// one issuer request and prints the new expiry; `renew --all -l` does the same for the selected
// Credentials; the token was fresh both times.
func TestRenew(t *testing.T) {
	srv := issuertest.Start(issuertest.OAuth2) // 1-h tokens: nothing renews on its own
	defer srv.Close()
	ns := renewNamespace
	create(t, &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "corp-sso"}, Spec: srv.Spec()},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-client"}, StringData: srv.InputSecretData()},
		&v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders", Labels: map[string]string{"team": "shop"}},
			Spec: v1alpha1.CredentialSpec{IssuerRef: v1alpha1.IssuerReference{Name: "corp-sso"}, SecretName: "orders-token",
				ClientCredentials: &v1alpha1.ClientCredentialsLogin{SecretRef: v1alpha1.LocalSecretReference{Name: "orders-client"}}}})
	key := types.NamespacedName{Namespace: ns, Name: "orders"}
	cred := &v1alpha1.Credential{}
	testenv.WaitFor(t, 30*time.Second, "the Credential Ready", func() (bool, string) {
		must(t, env.Client.Get(t.Context(), key, cred))
		return meta.IsStatusConditionTrue(cred.Status.Conditions, string(v1alpha1.ConditionReady)), "not Ready"
	})
	for _, args := range [][]string{{"renew", "orders", "-n", ns, "--wait"}, {"renew", "--all", "-l", "team=shop", "-n", ns, "--wait"}} {
		before, fp := srv.Calls(issuertest.OpLogin), cred.Status.TokenFingerprint
		r := run(t, "", args...)
		if r.code != 0 || !strings.Contains(r.out, "credential/orders renewal requested") || !strings.Contains(r.out, "credential/orders renewed: token expires 20") {
			t.Fatalf("%v: %d\n%s\n%s", args, r.code, r.out, r.err)
		}
		must(t, env.Client.Get(t.Context(), key, cred))
		if cred.Status.TokenFingerprint == fp || cred.Annotations["tokenkeeper.io/renew-requested-at"] != cred.Status.LastRenewRequest {
			t.Errorf("%v: no new token recorded for the request: %+v", args, cred.Status)
		}
		time.Sleep(2 * time.Second) // anything more would come now
		if n := srv.Calls(issuertest.OpLogin) - before; n != 1 {
			t.Errorf("%v: %d issuer requests, want exactly 1", args, n)
		}
	}
	if r := run(t, "", "renew", "-n", ns); r.code == 0 || !strings.Contains(r.err, "name one Credential, or use --all") {
		t.Errorf("renew without a name: %d %q", r.code, r.err)
	}
	noSecret(t, logs.String(), append(append([]string{}, issuertest.Secrets...), srv.IssuedTokens()...)...)
}

// TestRenewWaitFailure: `renew --wait` says what it waits for and answers with the issuer's
// reason: a refused login exits 1 with the issuer's message (not the Ready message of the old,
// still valid token); behind a failure's backoff it says until when, and --timeout ends the
// wait; after the backoff the retry answers the request and the new token is shown.
func TestRenewWaitFailure(t *testing.T) {
	srv := issuertest.Start(issuertest.Seed000)
	defer srv.Close()
	ns := renewNamespace
	create(t, &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vendor-api"}, Spec: srv.Spec()},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vendor-login"}, StringData: srv.InputSecretData()},
		&v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vendor"},
			Spec: v1alpha1.CredentialSpec{IssuerRef: v1alpha1.IssuerReference{Name: "vendor-api"}, SecretName: "vendor-token",
				Password: &v1alpha1.PasswordLogin{SecretRef: v1alpha1.LocalSecretReference{Name: "vendor-login"}}}})
	key := types.NamespacedName{Namespace: ns, Name: "vendor"}
	cred := &v1alpha1.Credential{}
	waitStatus := func(what string, ok func(*v1alpha1.CredentialStatus) bool) {
		t.Helper()
		testenv.WaitFor(t, 30*time.Second, what, func() (bool, string) {
			must(t, env.Client.Get(t.Context(), key, cred))
			return ok(&cred.Status), fmt.Sprintf("%+v", cred.Status)
		})
	}
	waitStatus("the Credential Ready", func(st *v1alpha1.CredentialStatus) bool {
		return meta.IsStatusConditionTrue(st.Conditions, string(v1alpha1.ConditionReady))
	})
	secrets := append(append([]string{"rotated-elsewhere"}, issuertest.Secrets...), srv.IssuedTokens()...)

	// The password was changed at the issuer: the login is refused, the old token stays Ready.
	srv.SetPassword("rotated-elsewhere")
	start := time.Now()
	r := run(t, "", "renew", "vendor", "-n", ns, "--wait", "--timeout", "40s")
	if r.code == 0 || time.Since(start) > 40*time.Second {
		t.Fatalf("renew --wait of a refused login: exit %d after %s\n%s\n%s", r.code, time.Since(start), r.out, r.err)
	}
	for _, want := range []string{"credential/vendor: logging in (or refreshing) at Issuer/vendor-api",
		"renewal failed (InvalidCredentials)", "Unable to log in with provided credentials"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("output lacks %q:\n%s", want, r.out)
		}
	}
	if !strings.Contains(r.err, "Unable to log in with provided credentials") || strings.Contains(r.out, "token valid until") {
		t.Errorf("the error is not the issuer's reason:\n%s\n%s", r.out, r.err)
	}
	noSecret(t, r.out+r.err, secrets...)

	// Backing off (a minute after a refused login): the request waits for the retry, and says so.
	start = time.Now()
	r = run(t, "", "renew", "vendor", "-n", ns, "--wait", "--timeout", "3s")
	if r.code == 0 || time.Since(start) > 10*time.Second || !strings.Contains(r.out, "credential/vendor: queued behind backoff until ") ||
		!strings.Contains(r.err, "not renewed within 3s") {
		t.Errorf("renew --wait behind the backoff: exit %d after %s\n%s\n%s", r.code, time.Since(start), r.out, r.err)
	}

	// The password fixed, then a transient failure (a 5-s backoff): the request waits for the
	// retry, which brings a new token.
	srv.SetPassword(issuertest.Password)
	touch := func(v string) {
		t.Helper()
		s := &corev1.Secret{}
		must(t, env.Client.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "vendor-login"}, s))
		s.Data["touched"] = []byte(v)
		must(t, env.Client.Update(t.Context(), s))
	}
	touch("1") // new inputs: a login now
	waitStatus("a new token after the fix", func(st *v1alpha1.CredentialStatus) bool { return st.FailedAttempts == 0 })
	srv.Fail(1, 503, "")
	touch("2")
	waitStatus("a transient failure", func(st *v1alpha1.CredentialStatus) bool {
		return st.FailedAttempts == 1 && st.NextRetryTime != nil && time.Now().Before(st.NextRetryTime.Time)
	})
	r = run(t, "", "renew", "vendor", "-n", ns, "--wait", "--timeout", "40s")
	must(t, env.Client.Get(t.Context(), key, cred))
	for _, want := range []string{"credential/vendor: queued behind backoff until ", "after 1 failed attempt (IssuerUnavailable)",
		"credential/vendor: logging in (or refreshing) at Issuer/vendor-api", "credential/vendor renewed: token expires ", "fingerprint " + cred.Status.TokenFingerprint} {
		if !strings.Contains(r.out, want) {
			t.Errorf("output lacks %q:\n%s", want, r.out)
		}
	}
	if r.code != 0 || cred.Status.FailedAttempts != 0 {
		t.Errorf("renew --wait after the backoff: exit %d, status %+v\n%s\n%s", r.code, cred.Status, r.out, r.err)
	}
	noSecret(t, r.out+r.err, append(secrets, srv.IssuedTokens()...)...)
}

// jwtOf builds a JWT-shaped token with the given claims and a fake signature.
func jwtOf(claims string) (token, signature string) {
	enc := base64.RawURLEncoding.EncodeToString
	signature = enc([]byte("a-signature-that-must-never-show"))
	return enc([]byte(`{"alg":"RS256","kid":"key-1","typ":"JWT"}`)) + "." + enc([]byte(claims)) + "." + signature, signature
}

// TestInspect: a token Secret's keys: type, fingerprint, expiry and a JWT's header and claims,
// never the token or its signature.
func TestInspect(t *testing.T) {
	ns := "cli-inspect"
	createNamespace(t, ns, nil)
	tok, sig := jwtOf(`{"iss":"https://sso.example.com","sub":"orders-bot","aud":"orders","exp":1795428000,"iat":1795424400}`)
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-token",
		Labels:      map[string]string{"tokenkeeper.io/credential": "orders", "app.kubernetes.io/managed-by": "tokenkeeper", "tokenkeeper.io/role": "token"},
		Annotations: map[string]string{"tokenkeeper.io/expires-at": "2027-11-24T08:00:00Z"}},
		StringData: map[string]string{"token": tok, "authorization": "Bearer " + tok, "session": "opaque-session-0123456789"}})
	r := run(t, "", "inspect", "orders-token", "-n", ns)
	if r.code != 0 {
		t.Fatalf("inspect: %d %s", r.code, r.err)
	}
	golden(t, "inspect", r.out)
	noSecret(t, r.out, tok, sig, "opaque-session-0123456789")
	if !strings.Contains(r.out, issuer.Fingerprint(tok)) {
		t.Errorf("the token's fingerprint (as status.tokenFingerprint shows it) is missing:\n%s", r.out)
	}
	r = run(t, "", "inspect", "orders-token", "-n", ns, "-o", "json")
	var got SecretInspection
	must(t, json.Unmarshal([]byte(r.out), &got))
	if len(got.Keys) != 3 || got.Keys[0].Key != "authorization" || got.Keys[0].Format != "Authorization header (JWT)" ||
		got.Keys[2].Claims["sub"] != "orders-bot" || got.Credential != "orders" {
		t.Errorf("-o json: %+v", got)
	}
	noSecret(t, r.out, tok, sig, "opaque-session-0123456789")
}

// TestInspectNoHashOfSecrets: `inspect` shows, of every Secret that is not a tokenkeeper token
// Secret and of every key of a token Secret but the token's own, the key's name and size only:
// an unsalted hash of a password (even a prefix of one) lets anyone who sees the output test
// guesses offline.
func TestInspectNoHashOfSecrets(t *testing.T) {
	ns := "cli-inspect-hash"
	createNamespace(t, ns, nil)
	managed := func(role string) map[string]string {
		return map[string]string{"tokenkeeper.io/credential": "orders", "app.kubernetes.io/managed-by": "tokenkeeper", "tokenkeeper.io/role": role}
	}
	cases := map[string]struct {
		reason string
		labels map[string]string
		key    string
	}{
		"InputSecret": {
			reason: "A Credential's input Secret holds a password: its name and size, nothing derived from its value.",
			key:    "password",
		},
		"TokenSecretExtraHeader": {
			reason: "A token Secret's other keys (an issuer's api-key header, a template's output) are not the token: no fingerprint.",
			labels: managed("token"),
			key:    "api-key",
		},
		"StateSecret": {
			reason: "The state Secret holds the refresh token and inputs: no fingerprint of any of them.",
			labels: managed("state"),
			key:    "token",
		},
		"LabelledByHand": {
			reason: "A Secret that only carries the credential label is not one tokenkeeper wrote: its token key gets no hash either.",
			labels: map[string]string{"tokenkeeper.io/credential": "orders"},
			key:    "token",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			const value = "hunter2"
			secret := strings.ToLower(name)
			create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: secret, Labels: tc.labels},
				StringData: map[string]string{tc.key: value}})
			sum := sha256.Sum256([]byte(value))
			hash := hex.EncodeToString(sum[:])
			for _, output := range []string{"", "json", "yaml"} {
				r := run(t, "", "inspect", secret, "-n", ns, "-o", output)
				if r.code != 0 {
					t.Fatalf("%s\ninspect -o %q: %d %s", tc.reason, output, r.code, r.err)
				}
				noSecret(t, r.out, value)
				for i := 0; i+8 <= len(hash); i++ {
					if strings.Contains(r.out, hash[i:i+8]) {
						t.Fatalf("%s\ninspect -o %q shows part of the SHA-256 of the value (%s):\n%s", tc.reason, output, hash[i:i+8], r.out)
					}
				}
				if !strings.Contains(r.out, tc.key) || !strings.Contains(r.out, strconv.Itoa(len(value))) {
					t.Errorf("%s\ninspect -o %q does not show the key %q and its size %d:\n%s", tc.reason, output, tc.key, len(value), r.out)
				}
			}
		})
	}
}

// TestValidate: the TokenValidator's configuration run locally answers as /validate would:
// allowed with the identity headers for the issuer's token, 401 invalid_token for a forged one
// (exit code 3).
func TestValidate(t *testing.T) {
	idp := issuertest.Start(issuertest.OAuth2)
	defer idp.Close()
	ns := "cli-validate"
	createNamespace(t, ns, nil)
	create(t, &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "corp-idp"}, Spec: idp.Spec()},
		&v1alpha1.TokenValidator{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-api"}, Spec: v1alpha1.TokenValidatorSpec{
			Issuers: []v1alpha1.IssuerReference{{Name: "corp-idp"}}, Audiences: []string{"orders"},
			ForwardClaims: map[string]v1alpha1.HeaderName{"sub": "X-User"}}})
	c, err := issuer.New(issuer.Config{Spec: idp.Spec()})
	must(t, err)
	tok, err := c.Login(t.Context(), issuer.Request{Kind: issuer.LoginClientCredentials, Inputs: idp.InputSecretData()})
	must(t, err)
	dir := t.TempDir()
	good, forged := filepath.Join(dir, "good"), filepath.Join(dir, "forged")
	must(t, os.WriteFile(good, []byte("Bearer "+tok.AccessToken+"\n"), 0o600))
	parts := strings.Split(tok.AccessToken, ".")
	must(t, os.WriteFile(forged, []byte(parts[0]+"."+parts[1]+"."+strings.Repeat("A", len(parts[2]))), 0o600))

	r := run(t, "", "validate", "orders-api", "-n", ns, "--token-file", good)
	if r.code != 0 || !strings.Contains(r.out, "allowed (200)") || !strings.Contains(r.out, "Header X-User:") || !strings.Contains(r.out, issuertest.ClientID) {
		t.Errorf("the issuer's token: %d\n%s\n%s", r.code, r.out, r.err)
	}
	r = run(t, "", "validate", "orders-api", "-n", ns, "--token-file", forged, "-o", "yaml")
	var v Validation
	must(t, yaml.Unmarshal([]byte(r.out), &v))
	if r.code != ExitDenied || v.Allowed || v.Status != 401 || v.Code != "invalid_token" || v.Via != "local" {
		t.Errorf("a forged token: %d %+v\n%s", r.code, v, r.err)
	}
	r = run(t, tok.AccessToken, "validate", "orders-api", "-n", ns, "--token-file", "-")
	if r.code != 0 {
		t.Errorf("the token on stdin: %d %s", r.code, r.err)
	}
	noSecret(t, r.out+r.err, tok.AccessToken, parts[2])

	// --endpoint asks a running webhook: the validation server with this validator installed.
	tv := &v1alpha1.TokenValidator{}
	must(t, env.Client.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "orders-api"}, tv))
	val, closeFn, err := login.LocalValidator(t.Context(), env.Client, tv, "tokenkeeper-system")
	must(t, err)
	defer closeFn()
	server := validation.NewServer()
	server.Set(types.NamespacedName{Namespace: ns, Name: "orders-api"}, val)
	webhook := httptest.NewServer(server)
	defer webhook.Close()
	r = run(t, "", "validate", "orders-api", "-n", ns, "--token-file", good, "--endpoint", webhook.URL)
	if r.code != 0 || !strings.Contains(r.out, "Via:") || !strings.Contains(r.out, webhook.URL+"/validate/"+ns+"/orders-api") ||
		!strings.Contains(r.out, "Header X-User:") {
		t.Errorf("--endpoint, the issuer's token: %d\n%s\n%s", r.code, r.out, r.err)
	}
	r = run(t, "", "validate", "orders-api", "-n", ns, "--token-file", forged, "--endpoint", webhook.URL)
	if r.code != ExitDenied || !strings.Contains(r.out, "denied (401") || !strings.Contains(r.out, "invalid_token") {
		t.Errorf("--endpoint, a forged token: %d\n%s\n%s", r.code, r.out, r.err)
	}
	noSecret(t, r.out+r.err, tok.AccessToken, parts[2])
}

// TestPolicyCommand: the policies selecting a namespace, highest priority first, and each
// combined value with the policy it came from.
func TestPolicyCommand(t *testing.T) {
	createNamespace(t, "cli-policy", map[string]string{"tk-test": "policy", "env": "prod"})
	sel := func(l map[string]string) *metav1.LabelSelector { return &metav1.LabelSelector{MatchLabels: l} }
	d := func(x time.Duration) *metav1.Duration { return &metav1.Duration{Duration: x} }
	pct := int32(50)
	create(t,
		&v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: "cli-team"}, Spec: v1alpha1.TokenPolicySpec{
			NamespaceSelector: sel(map[string]string{"tk-test": "policy"}), Priority: 10,
			SessionDuration: &v1alpha1.SessionDurationPolicy{Default: d(2 * time.Hour), Max: d(8 * time.Hour)},
			Renewal:         &v1alpha1.RenewalPolicy{BeforeExpiryPercent: &pct},
			AllowedIssuers:  []v1alpha1.IssuerPattern{"https://*.corp.example.com"}}},
		&v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: "cli-prod"}, Spec: v1alpha1.TokenPolicySpec{
			NamespaceSelector: sel(map[string]string{"tk-test": "policy", "env": "prod"}),
			SessionDuration:   &v1alpha1.SessionDurationPolicy{Max: d(4 * time.Hour)}, RequireHTTPS: true,
			AllowedAudiences: []string{"orders", "billing-*"}, MaxSessionAge: d(24 * time.Hour)}},
		&v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: "cli-dev"}, Spec: v1alpha1.TokenPolicySpec{
			NamespaceSelector: sel(map[string]string{"tk-test": "policy", "env": "dev"}), SessionDuration: &v1alpha1.SessionDurationPolicy{Max: d(time.Minute)}}})
	r := run(t, "", "policy", "cli-policy")
	if r.code != 0 {
		t.Fatalf("policy: %d %s", r.code, r.err)
	}
	golden(t, "policy", r.out)
	r = run(t, "", "policy", "-n", "cli-policy", "-o", "json")
	var p NamespacePolicy
	must(t, json.Unmarshal([]byte(r.out), &p))
	from := map[string]string{}
	for _, s := range p.Settings {
		from[s.Field+"="+s.Value] = s.From
	}
	if len(p.Policies) != 2 || p.Policies[0].Name != "cli-team" || from["sessionDuration.max=4h0m0s"] != "cli-prod" ||
		from["sessionDuration.default=2h0m0s"] != "cli-team" || from["renewal.minimumLead=2m0s"] != builtIn {
		t.Errorf("-o json: %+v", p)
	}
	if r := run(t, "", "policy", "no-such-namespace"); r.code == 0 || !strings.Contains(r.err, "not found") {
		t.Errorf("a missing namespace: %d %q", r.code, r.err)
	}
}

// TestKrewManifest: the krew manifest template, filled as hack/krew.sh fills it, is a krew Plugin
// whose binary is this command.
func TestKrewManifest(t *testing.T) {
	tmpl, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "hack", "krew", "tokenkeeper.yaml"))
	must(t, err)
	platforms := "  - selector:\n      matchLabels: {os: linux, arch: amd64}\n    uri: https://example.com/a.tar.gz\n    sha256: " +
		strings.Repeat("0", 64) + "\n    bin: kubectl-tokenkeeper"
	filled := strings.ReplaceAll(strings.ReplaceAll(string(tmpl), "${VERSION}", "v0.2.0"), "${PLATFORMS}", platforms)
	var m struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			Version          string `json:"version"`
			Homepage         string `json:"homepage"`
			ShortDescription string `json:"shortDescription"`
			Description      string `json:"description"`
			Platforms        []struct {
				Selector struct {
					MatchLabels map[string]string `json:"matchLabels"`
				} `json:"selector"`
				URI    string `json:"uri"`
				Sha256 string `json:"sha256"`
				Bin    string `json:"bin"`
			} `json:"platforms"`
		}
	}
	must(t, yaml.UnmarshalStrict([]byte(filled), &m, yaml.DisallowUnknownFields))
	if m.Kind != "Plugin" || m.Metadata.Name != "tokenkeeper" || m.Spec.Version != "v0.2.0" || len(m.Spec.Platforms) != 1 ||
		m.Spec.Platforms[0].Bin != "kubectl-tokenkeeper" || m.Spec.ShortDescription == "" || len(m.Spec.ShortDescription) > 255 {
		t.Errorf("krew manifest: %+v", m)
	}
}
