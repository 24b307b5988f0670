package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/yaml"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

// TestTestIssuer: a dry run from the terminal against a conformance OAuth2 issuer shows the
// request (secrets redacted), the fields picked, the lifetime and the renewal time, writes nothing
// to the cluster, and exits 2 with the classified reason when the issuer refuses.
func TestTestIssuer(t *testing.T) {
	srv := issuertest.Start(issuertest.OAuth2)
	defer srv.Close()
	ns := "cli-dryrun"
	createNamespace(t, ns, nil)
	create(t, &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "corp-sso"}, Spec: srv.Spec()},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-client"}, StringData: srv.InputSecretData()})
	wrong := srv.InputSecretData()
	wrong["client_secret"] = "not-the-secret"
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "wrong-client"}, StringData: wrong})

	r := run(t, "", "test-issuer", "corp-sso", "--secret", "orders-client", "-n", ns, "--scope", "orders.read")
	if r.code != 0 {
		t.Fatalf("test-issuer: %d\n%s\n%s", r.code, r.out, r.err)
	}
	for _, want := range []string{"Issuer:    Issuer/corp-sso", "→ POST " + srv.URL(), "grant_type=client_credentials", "scope=orders.read",
		"Authorization: [redacted", "← 200", "expires_in: 3600", `from "access_token"`, "ResponseLifetime (expires_in)",
		"Renewal:", "of the 1h0m0s lifetime", "Result:         ok"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("output lacks %q:\n%s", want, r.out)
		}
	}
	if n := srv.Calls(issuertest.OpLogin); n != 1 {
		t.Errorf("%d logins at the issuer, want 1", n)
	}
	// The same from a manifest, as JSON.
	manifest := `apiVersion: tokenkeeper.io/v1alpha1
kind: Credential
metadata: {name: orders, namespace: cli-dryrun}
spec:
  issuerRef: {name: corp-sso}
  secretName: orders-token
  clientCredentials: {secretRef: {name: orders-client}}
`
	file := filepath.Join(t.TempDir(), "credential.yaml")
	must(t, os.WriteFile(file, []byte(manifest), 0o600))
	r = run(t, "", "test-issuer", "-f", file, "-o", "json")
	var d DryRun
	must(t, json.Unmarshal([]byte(r.out), &d))
	if r.code != 0 || d.Token == nil || d.Token.Field != "access_token" || d.Token.Lifetime != "1h0m0s" || d.Token.Format != "JWT" ||
		d.RenewalTime == nil || len(d.Exchanges) == 0 || d.Exchanges[len(d.Exchanges)-1].Status != 200 {
		t.Errorf("-f -o json: %d %+v\n%s", r.code, d, r.err)
	}
	again, _ := json.MarshalIndent(d, "", "  ")
	if strings.TrimSpace(string(again)) != strings.TrimSpace(r.out) {
		t.Errorf("-o json does not round-trip:\n%s\n%s", r.out, again)
	}
	// Refused: exit code 2 and the reason the status would show.
	r = run(t, "", "test-issuer", "corp-sso", "--secret", "wrong-client", "-n", ns)
	if r.code != ExitLoginFailed || !strings.Contains(r.err, string(v1alpha1.ReasonInvalidCredentials)) || !strings.Contains(r.out, "Reason:   InvalidCredentials") {
		t.Errorf("refused login: %d\n%s\n%s", r.code, r.out, r.err)
	}
	// A missing input Secret is the controller's SecretNotFound, before any request.
	before := srv.Calls(issuertest.OpLogin)
	r = run(t, "", "test-issuer", "corp-sso", "--secret", "missing", "-n", ns)
	if r.code != ExitLoginFailed || !strings.Contains(r.err, string(v1alpha1.ReasonSecretNotFound)) || srv.Calls(issuertest.OpLogin) != before {
		t.Errorf("missing Secret: %d %q", r.code, r.err)
	}
	// A refresh-token login is never tried: it would spend the Secret's refresh token.
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "refresh"}, StringData: map[string]string{"refresh_token": "rt-single-use-0123456789"}})
	before = srv.Calls(issuertest.OpLogin) + srv.Calls(issuertest.OpRefresh)
	r = run(t, "", "test-issuer", "corp-sso", "--secret", "refresh", "--login", "refreshToken", "-n", ns)
	if r.code != ExitLoginFailed || !strings.Contains(r.err, "would spend the refresh token") || srv.Calls(issuertest.OpLogin)+srv.Calls(issuertest.OpRefresh) != before {
		t.Errorf("refreshToken dry run: %d %q", r.code, r.err)
	}
	// Nothing was written: no token, state or target Secret, no Credential.
	secrets := &corev1.SecretList{}
	must(t, env.Client.List(t.Context(), secrets))
	for _, s := range secrets.Items {
		if s.Namespace == ns && s.Name != "orders-client" && s.Name != "wrong-client" && s.Name != "refresh" {
			t.Errorf("the dry run wrote Secret %s", s.Name)
		}
	}
	creds := &v1alpha1.CredentialList{}
	must(t, env.Client.List(t.Context(), creds))
	for _, c := range creds.Items {
		if c.Namespace == ns {
			t.Errorf("the dry run created Credential %s", c.Name)
		}
	}
	noSecret(t, r.out+r.err, append(append([]string{"not-the-secret"}, issuertest.Secrets...), srv.IssuedTokens()...)...)
	all := run(t, "", "test-issuer", "corp-sso", "--secret", "orders-client", "-n", ns)
	noSecret(t, all.out+all.err, append(append([]string{}, issuertest.Secrets...), srv.IssuedTokens()...)...)
}

// TestTestIssuerSeeds: each seed API's dry run succeeds and shows no secret.
func TestTestIssuerSeeds(t *testing.T) {
	ns := "cli-seeds"
	createNamespace(t, ns, nil)
	for _, f := range []issuertest.Flavor{issuertest.Seed000, issuertest.Seed001, issuertest.Seed002, issuertest.Seed003, issuertest.Seed004} {
		srv := issuertest.Start(f)
		name := "seed-" + string(f)
		spec := srv.Spec()
		create(t, &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: srv.InputSecretData()})
		if data := srv.HeaderSecretData(); data != nil {
			create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: issuertest.HeaderSecretName}, StringData: data})
		}
		login := "password"
		if f == issuertest.Seed004 {
			login = "apiKey"
		}
		r := run(t, "", "test-issuer", name, "--secret", name, "--login", login, "-n", ns)
		if r.code != 0 || !strings.Contains(r.out, "Result:         ok") {
			t.Errorf("%s: %d\n%s\n%s", f, r.code, r.out, r.err)
		}
		secrets := append(append([]string{}, issuertest.Secrets...), srv.IssuedTokens()...)
		for _, v := range srv.HeaderValues() {
			secrets = append(secrets, v)
		}
		noSecret(t, r.out+r.err, secrets...)
		srv.Close()
	}
}

// TestTestIssuerServiceAccount: a serviceAccount login's dry run requests the ServiceAccount's
// token with the user's permissions and presents it; the issuer verifies it with the cluster's
// own keys; neither the ServiceAccount token nor the issued one is shown.
func TestTestIssuerServiceAccount(t *testing.T) {
	const aud = "https://exchange.example.com"
	hc, err := rest.HTTPClientFor(env.Config)
	must(t, err)
	x, err := issuertest.StartExchange(aud, time.Minute, hc, env.Config.Host, "", nil)
	must(t, err)
	defer x.Close()
	ns := "cli-sa"
	createNamespace(t, ns, nil)
	create(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-bot"}},
		&v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "exchange"}, Spec: v1alpha1.IssuerSpec{
			URL: v1alpha1.EndpointURL(x.URL() + "/token"), OAuth2: &v1alpha1.OAuth2{}, ServiceAccountAudience: aud, CABundle: x.CABundle()}})
	manifest := `kind: Credential
apiVersion: tokenkeeper.io/v1alpha1
metadata: {name: orders}
spec:
  issuerRef: {name: exchange}
  secretName: orders-token
  serviceAccount: {name: orders-bot, targetAudience: orders-api}
`
	r := run(t, manifest, "test-issuer", "-f", "-", "-n", ns)
	if r.code != 0 || !strings.Contains(r.out, "subject_token=[redacted") || !strings.Contains(r.out, "grant_type=urn:ietf:params:oauth:grant-type:token-exchange") {
		t.Fatalf("serviceAccount dry run: %d\n%s\n%s", r.code, r.out, r.err)
	}
	subjects, _ := x.Subjects()
	if len(subjects) != 1 || subjects[0] != "system:serviceaccount:cli-sa:orders-bot" {
		t.Errorf("the issuer saw %v", subjects)
	}
	noSecret(t, r.out+r.err, x.IssuedTokens()...)
	if strings.Contains(r.out, "eyJ") {
		t.Errorf("a JWT appears in the output:\n%s", r.out)
	}
}

// manifestOf is objs as one multi-document YAML file.
func manifestOf(t *testing.T, objs ...client.Object) string {
	t.Helper()
	var docs []string
	for _, o := range objs {
		gvk, err := apiutil.GVKForObject(o, Scheme())
		must(t, err)
		o.GetObjectKind().SetGroupVersionKind(gvk)
		b, err := yaml.Marshal(o)
		must(t, err)
		docs = append(docs, string(b))
	}
	return strings.Join(docs, "---\n")
}

// TestTestIssuerFromFile: `test-issuer -f` tries the file's Issuer, ClusterIssuer and Secrets
// before the cluster's — a changed issuer is tested before it is applied, a new one without being
// applied — says where each came from, and still reads from the cluster what the file lacks.
func TestTestIssuerFromFile(t *testing.T) {
	applied, next := issuertest.Start(issuertest.OAuth2), issuertest.Start(issuertest.OAuth2)
	defer applied.Close()
	defer next.Close()
	ns := "cli-dryrun-file"
	createNamespace(t, ns, nil)
	create(t, &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vendor"}, Spec: applied.Spec()},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vendor-client"}, StringData: applied.InputSecretData()})
	cred := func(ref v1alpha1.IssuerReference, secret string) *v1alpha1.Credential {
		return &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Name: "billing"}, Spec: v1alpha1.CredentialSpec{IssuerRef: ref,
			SecretName: "billing-token", ClientCredentials: &v1alpha1.ClientCredentialsLogin{SecretRef: v1alpha1.LocalSecretReference{Name: secret}}}}
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		must(t, os.WriteFile(path, []byte(content), 0o600))
		return path
	}
	secrets := append(append([]string{}, issuertest.Secrets...), "wrong-secret-from-the-file")

	cases := map[string]struct {
		reason  string
		objects []client.Object
		code    int
		want    []string
		// logins at each issuer
		applied, next int
	}{
		"ChangedIssuer": {
			reason: "The file's Issuer (a new URL) is used, not the applied one of the same name; the Secret the file lacks comes from the cluster.",
			objects: []client.Object{cred(v1alpha1.IssuerReference{Name: "vendor"}, "vendor-client"),
				&v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Name: "vendor"}, Spec: next.Spec()}},
			want: []string{"Issuer:    Issuer/vendor (from file ", "Secret:    " + ns + "/vendor-client (from the cluster)",
				"Credential: " + ns + "/billing (from file ", "→ POST " + next.URL(), "Result:         ok"},
			next: 1,
		},
		"NewClusterIssuer": {
			reason: "A ClusterIssuer and a Secret only in the file, never applied, are tried as they are; other kinds are named as ignored.",
			objects: []client.Object{cred(v1alpha1.IssuerReference{Kind: v1alpha1.IssuerKindCluster, Name: "billing-vendor"}, "billing-client"),
				&v1alpha1.ClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "billing-vendor"}, Spec: next.Spec()},
				&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "billing-client"}, StringData: next.InputSecretData()},
				&v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: "not-read"}}},
			want: []string{"Issuer:    ClusterIssuer/billing-vendor (from file ", "Secret:    " + ns + "/billing-client (from file ",
				"Ignored:   TokenPolicy/not-read", "Result:         ok"},
			next: 1,
		},
		"SecretInFile": {
			reason: "The file's Secret is used before the cluster's of the same name: a wrong secret in the file fails at the applied issuer.",
			objects: []client.Object{cred(v1alpha1.IssuerReference{Name: "vendor"}, "vendor-client"),
				&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vendor-client"}, StringData: map[string]string{
					"client_id": issuertest.ClientID, "client_secret": "wrong-secret-from-the-file"}}},
			code:    ExitLoginFailed,
			want:    []string{"Issuer:    Issuer/vendor (from the cluster)", "Secret:    " + ns + "/vendor-client (from file ", "Reason:   InvalidCredentials"},
			applied: 1,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			beforeApplied, beforeNext := applied.Calls(issuertest.OpLogin), next.Calls(issuertest.OpLogin)
			file := write(name+".yaml", manifestOf(t, tc.objects...))
			r := run(t, "", "test-issuer", "-f", file, "-n", ns)
			if r.code != tc.code {
				t.Fatalf("%s\nexit %d, want %d\n%s\n%s", tc.reason, r.code, tc.code, r.out, r.err)
			}
			for _, want := range tc.want {
				if !strings.Contains(r.out, want) {
					t.Errorf("%s\noutput lacks %q:\n%s", tc.reason, want, r.out)
				}
			}
			if a, n := applied.Calls(issuertest.OpLogin)-beforeApplied, next.Calls(issuertest.OpLogin)-beforeNext; a != tc.applied || n != tc.next {
				t.Errorf("%s\nlogins: %d at the applied issuer, %d at the file's; want %d and %d", tc.reason, a, n, tc.applied, tc.next)
			}
			noSecret(t, r.out+r.err, append(append(secrets, applied.IssuedTokens()...), next.IssuedTokens()...)...)
		})
	}
	// -o json names each object's source.
	file := write("json.yaml", manifestOf(t, cred(v1alpha1.IssuerReference{Name: "vendor"}, "vendor-client"),
		&v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Name: "vendor"}, Spec: next.Spec()}))
	r := run(t, "", "test-issuer", "-f", file, "-n", ns, "-o", "json")
	var d DryRun
	must(t, json.Unmarshal([]byte(r.out), &d))
	want := []DryRunObject{{Kind: "Issuer", Namespace: ns, Name: "vendor", From: "file " + file},
		{Kind: "Secret", Namespace: ns, Name: "vendor-client", From: "the cluster"}}
	if r.code != 0 || len(d.Objects) != 2 || d.Objects[0] != want[0] || d.Objects[1] != want[1] {
		t.Errorf("-o json: %d %+v, want objects %+v\n%s", r.code, d.Objects, want, r.err)
	}
}
