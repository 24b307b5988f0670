package credential_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

// Signed logins through the whole Credential path on the real API server: the conformance
// issuer verifies every assertion with the public key (iss, aud, lifetime, a jti never seen
// before); the token lands in the Secret and is renewed before it expires.
func TestSignedLogins(t *testing.T) {
	t.Parallel()
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	cases := map[string]struct {
		tune func(*issuertest.Server, map[string]string)
		edit func(*v1alpha1.Credential)
	}{
		"PrivateKeyJWT": {
			tune: func(s *issuertest.Server, in map[string]string) {
				s.TrustAssertionKey("", issuertest.ClientID, &ecKey.PublicKey)
				delete(in, "client_secret")
				in["tls.key"] = pemKey
			},
			edit: func(c *v1alpha1.Credential) { c.Spec.ClientCredentials.PrivateKeyKey = "tls.key" },
		},
		"JWTBearerServiceAccountKeyFile": {
			tune: func(s *issuertest.Server, in map[string]string) {
				file := s.NewServiceAccountKey("orders@orders.iam.gserviceaccount.com")
				addSecret(file[strings.Index(file, "BEGIN PRIVATE KEY")+30:][:64]) // a piece of the key, for the leak check
				in["key.json"] = file
			},
			edit: func(c *v1alpha1.Credential) {
				c.Spec.JWTBearer = &v1alpha1.JWTBearerLogin{SecretRef: c.Spec.ClientCredentials.SecretRef, ServiceAccountKeyKey: "key.json",
					Scopes: []string{"https://www.googleapis.com/auth/cloud-platform"}}
				c.Spec.ClientCredentials = nil
			},
		},
	}
	addSecret(pemKey[40:104])
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := setupWith(t, issuertest.OAuth2, func(s *issuertest.Server, in map[string]string) {
				s.SetLifetime(20 * time.Second)
				tc.tune(s, in)
			}, tc.edit)
			f.waitReady(30 * time.Second)
			first := f.token()
			if !f.srv.Valid(first) {
				t.Fatal("the token in the Secret is not valid at the issuer")
			}
			waitFor(t, 40*time.Second, "a renewal before expiry", func() (bool, string) {
				tok := f.token()
				return tok != first && f.srv.Valid(tok), "still the first token"
			})
		})
	}
}

// A key that cannot sign: InvalidConfiguration naming the Secret and its key and the formats
// expected, no request to the issuer, no key material anywhere.
func TestUnusableSigningKey(t *testing.T) {
	t.Parallel()
	f := setupWith(t, issuertest.OAuth2, func(_ *issuertest.Server, in map[string]string) {
		in["key.json"] = `{"client_email":"a@b.example","private_key":"-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZS1rZXktbWF0ZXJpYWw=\n-----END PRIVATE KEY-----\n"}`
		addSecret("Z2FyYmFnZS1rZXktbWF0ZXJpYWw")
	}, func(c *v1alpha1.Credential) {
		c.Spec.JWTBearer = &v1alpha1.JWTBearerLogin{SecretRef: c.Spec.ClientCredentials.SecretRef, ServiceAccountKeyKey: "key.json"}
		c.Spec.ClientCredentials = nil
	})
	waitFor(t, 20*time.Second, "Ready=False InvalidConfiguration naming the key", func() (bool, string) {
		c := f.cred()
		r := meta.FindStatusCondition(c.Status.Conditions, string(v1alpha1.ConditionReady))
		if r == nil {
			return false, "no Ready condition"
		}
		return r.Reason == string(v1alpha1.ReasonInvalidConfig) && strings.Contains(r.Message, `key "key.json"`) &&
			strings.Contains(r.Message, "private_key") && strings.Contains(r.Message, "does not parse"), r.Reason + ": " + r.Message
	})
	if n := f.srv.Calls(issuertest.OpLogin); n != 0 {
		t.Errorf("%d token requests with an unusable key, want none", n)
	}
}

// A selfSigned issuer: the manager mints the token from the Credential's key (App Store Connect
// shape), no request made; the token verifies with the public key and is renewed before expiry.
func TestSelfSignedIssuer(t *testing.T) {
	t.Parallel()
	c, ctx := env.Client, t.Context()
	ns := "self-signed-" + fmt.Sprint(time.Now().UnixNano()%100000)
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	addSecret(pemKey[40:104])
	must(t, c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "asc-key"},
		StringData: map[string]string{"private_key": pemKey, "issuer_id": "57246542-96fe-1a63", "key_id": "2X9R4HXF34"}}))
	must(t, c.Create(ctx, &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-store-connect"}, Spec: v1alpha1.IssuerSpec{
		SelfSigned: &v1alpha1.SelfSignedJWT{Claims: map[string]v1alpha1.BodyTemplate{"iss": "{{ .issuer_id }}", "aud": "appstoreconnect-v1"},
			KeyID: "{{ .key_id }}", Lifetime: &metav1.Duration{Duration: time.Minute}}}}))
	must(t, c.Create(ctx, &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cred"}, Spec: v1alpha1.CredentialSpec{
		IssuerRef: v1alpha1.IssuerReference{Name: "app-store-connect"}, SecretName: "token",
		PrivateKey: &v1alpha1.PrivateKeyLogin{SecretRef: v1alpha1.LocalSecretReference{Name: "asc-key"}}}}))
	f := &fixture{t: t, ns: ns, key: types.NamespacedName{Namespace: ns, Name: "cred"}}
	f.waitReady(30 * time.Second)
	first := f.token()
	parsed, err := jwt.Parse(first, func(*jwt.Token) (any, error) { return &key.PublicKey, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience("appstoreconnect-v1"), jwt.WithIssuer("57246542-96fe-1a63"), jwt.WithExpirationRequired())
	if err != nil || parsed.Header["kid"] != "2X9R4HXF34" {
		t.Fatalf("the token in the Secret: %v (kid %v)", err, parsed.Header["kid"])
	}
	waitFor(t, 50*time.Second, "a renewal before expiry", func() (bool, string) {
		return f.token() != first, "still the first token"
	})
}

// GitHub App installation tokens through the whole Credential path: written, narrowed as asked,
// renewed before expiry, and the last token revoked (DELETE /installation/token) when the
// Credential goes. (The failures GitHub documents are classified in internal/issuer's tests.)
func TestGitHubAppCredential(t *testing.T) {
	t.Parallel()
	f := setupWith(t, issuertest.GitHubApp, func(s *issuertest.Server, in map[string]string) {
		s.SetLifetime(20 * time.Second)
		addSecret(in["private_key"][40:104])
	}, func(c *v1alpha1.Credential) {
		c.Spec.GitHubApp.Repositories = []string{"orders"}
		c.Spec.GitHubApp.Permissions = map[string]v1alpha1.GitHubPermission{"contents": "read"}
	})
	f.waitReady(30 * time.Second)
	first := f.token()
	if !f.srv.Valid(first) || !strings.HasPrefix(first, "ghs_") {
		t.Fatal("the installation token in the Secret is not valid at the server")
	}
	if asked := f.srv.GitHubAsked(); len(asked) == 0 || len(asked[0].Repositories) != 1 || asked[0].Permissions["contents"] != "read" {
		t.Fatalf("the server was asked for %+v, want repositories [orders] and contents: read", asked)
	}
	waitFor(t, 40*time.Second, "a renewal before expiry", func() (bool, string) {
		tok := f.token()
		return tok != first && f.srv.Valid(tok), "still the first token"
	})

	last := f.token()
	must(t, env.Client.Delete(t.Context(), f.cred()))
	waitFor(t, 20*time.Second, "the Credential gone", func() (bool, string) {
		err := env.Client.Get(t.Context(), f.key, &v1alpha1.Credential{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	if f.srv.Valid(last) || f.srv.Calls(issuertest.OpRevoke) == 0 {
		t.Fatalf("the last installation token was not revoked when the Credential was deleted (revocations: %d)", f.srv.Calls(issuertest.OpRevoke))
	}
}

// A TokenPolicy's maximum session caps what the manager signs: the JWT bearer assertion asked
// for 1 hour lives 2 minutes once a policy with sessionDuration.max 2m selects the namespace.
func TestAssertionLifetimeCappedByPolicy(t *testing.T) {
	t.Parallel()
	f := setupWith(t, issuertest.OAuth2, func(s *issuertest.Server, in map[string]string) {
		s.SetLifetime(20 * time.Second)
		file := s.NewServiceAccountKey("capped@orders.iam.gserviceaccount.com")
		addSecret(file[strings.Index(file, "BEGIN PRIVATE KEY")+30:][:64])
		in["key.json"] = file
	}, func(c *v1alpha1.Credential) {
		c.Spec.JWTBearer = &v1alpha1.JWTBearerLogin{SecretRef: c.Spec.ClientCredentials.SecretRef, ServiceAccountKeyKey: "key.json",
			AssertionLifetime: &metav1.Duration{Duration: time.Hour}}
		c.Spec.ClientCredentials = nil
	})
	f.waitReady(30 * time.Second)
	if lives := f.srv.AssertionLifetimes(); len(lives) == 0 || lives[0] != time.Hour {
		t.Fatalf("assertion lifetimes %v, want 1h before any policy", lives)
	}
	p := &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: f.ns + "-cap"}, Spec: v1alpha1.TokenPolicySpec{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": f.ns}},
		SessionDuration:   &v1alpha1.SessionDurationPolicy{Max: &metav1.Duration{Duration: 2 * time.Minute}}}}
	must(t, env.Client.Create(t.Context(), p))
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), p) })
	waitFor(t, 40*time.Second, "an assertion capped at 2m", func() (bool, string) {
		lives := f.srv.AssertionLifetimes()
		return lives[len(lives)-1] == 2*time.Minute, fmt.Sprint(lives)
	})
}
