package credential_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

// newExchangeIssuer starts an issuer that verifies ServiceAccount tokens with this API server's
// own discovery document and key set (never a key handed to the test).
func newExchangeIssuer(t *testing.T, audience string) *issuertest.Exchange {
	t.Helper()
	hc, err := rest.HTTPClientFor(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	x, err := issuertest.StartExchange(audience, 20*time.Second, hc, env.Config.Host, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, tok := range x.IssuedTokens() {
			addSecret(tok)
		}
		x.Close()
	})
	return x
}

// saFixture is a namespace with an exchange Issuer and a Credential logging in as a
// ServiceAccount, with no Secret input at all.
func saFixture(t *testing.T, x *issuertest.Exchange, spec v1alpha1.IssuerSpec, login v1alpha1.ServiceAccountLogin, createSA bool, nsLabels ...map[string]string) *fixture {
	t.Helper()
	c, ctx := env.Client, t.Context()
	ns := strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	ns = strings.Trim(ns[max(0, len(ns)-40):], "-") + "-" + fmt.Sprint(time.Now().UnixNano()%100000)
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	if len(nsLabels) > 0 {
		nsObj.Labels = nsLabels[0]
	}
	must(t, c.Create(ctx, nsObj))
	if createSA {
		must(t, c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: login.Name}}))
	}
	spec.CABundle = x.CABundle()
	must(t, c.Create(ctx, &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "exchange"}, Spec: spec}))
	must(t, c.Create(ctx, &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cred"}, Spec: v1alpha1.CredentialSpec{
		IssuerRef: v1alpha1.IssuerReference{Name: "exchange"}, SecretName: "token", ServiceAccount: &login}}))
	return &fixture{t: t, ns: ns, key: types.NamespacedName{Namespace: ns, Name: "cred"}}
}

// A Credential with no Secret at all logs in with its ServiceAccount's token, each of the four
// ways, at an issuer that verifies the cluster's real keys; the issued token lands in the
// Secret and is renewed (with a new ServiceAccount token) before it expires.
func TestServiceAccountLogins(t *testing.T) {
	t.Parallel()
	const aud = "https://exchange.example.com"
	x := newExchangeIssuer(t, aud)
	oauth := func(login v1alpha1.ServiceAccountLogin) (v1alpha1.IssuerSpec, v1alpha1.ServiceAccountLogin) {
		return v1alpha1.IssuerSpec{URL: v1alpha1.EndpointURL(x.URL() + "/token"), OAuth2: &v1alpha1.OAuth2{}, ServiceAccountAudience: aud}, login
	}
	cases := map[string]func() (v1alpha1.IssuerSpec, v1alpha1.ServiceAccountLogin){
		"TokenExchange": func() (v1alpha1.IssuerSpec, v1alpha1.ServiceAccountLogin) {
			return oauth(v1alpha1.ServiceAccountLogin{Name: "orders-bot", TargetAudience: "orders-api"})
		},
		"ClientAssertion": func() (v1alpha1.IssuerSpec, v1alpha1.ServiceAccountLogin) {
			return oauth(v1alpha1.ServiceAccountLogin{Name: "orders-bot", PresentAs: v1alpha1.PresentAsClientAssertion, ClientID: "entra-app"})
		},
		"JWTBearer": func() (v1alpha1.IssuerSpec, v1alpha1.ServiceAccountLogin) {
			return oauth(v1alpha1.ServiceAccountLogin{Name: "orders-bot", PresentAs: v1alpha1.PresentAsJWTBearer})
		},
		"VaultJWTLogin": func() (v1alpha1.IssuerSpec, v1alpha1.ServiceAccountLogin) {
			return v1alpha1.IssuerSpec{URL: v1alpha1.EndpointURL(x.URL() + "/v1/auth/jwt/login"),
				JSON: &v1alpha1.JSONLogin{Body: `{"role":"orders","jwt":{{ .serviceAccountToken | toJson }}}`}}, v1alpha1.ServiceAccountLogin{Name: "orders-bot", Audience: aud}
		},
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			spec, login := mk()
			f := saFixture(t, x, spec, login, true)
			f.waitReady(30 * time.Second)
			first := f.token()
			if !x.Valid(first) {
				t.Fatal("the Secret's token was not issued by the exchange issuer")
			}
			subjects, _ := x.Subjects()
			want := "system:serviceaccount:" + f.ns + ":orders-bot"
			found := false
			for _, s := range subjects {
				found = found || s == want
			}
			if !found {
				t.Fatalf("the issuer never saw subject %s (saw %v)", want, subjects)
			}
			waitFor(t, 40*time.Second, "a renewal before expiry", func() (bool, string) {
				tok := f.token()
				return tok != first && x.Valid(tok), "still the first token"
			})
		})
	}
}

// Failures: a missing ServiceAccount is reported and retried when it appears; an audience a
// TokenPolicy does not allow is a PolicyViolation and no token is requested or sent; a token the
// issuer refuses (another audience) is InvalidCredentials.
func TestServiceAccountFailures(t *testing.T) {
	t.Parallel()
	const aud = "https://exchange.example.com"
	x := newExchangeIssuer(t, aud)
	spec := v1alpha1.IssuerSpec{URL: v1alpha1.EndpointURL(x.URL() + "/token"), OAuth2: &v1alpha1.OAuth2{}, ServiceAccountAudience: aud}
	reason := func(f *fixture) (string, string) {
		c := f.cred()
		r := meta.FindStatusCondition(c.Status.Conditions, string(v1alpha1.ConditionReady))
		if r == nil {
			return "", ""
		}
		return r.Reason, r.Message
	}

	t.Run("ServiceAccountMissing", func(t *testing.T) {
		t.Parallel()
		f := saFixture(t, x, spec, v1alpha1.ServiceAccountLogin{Name: "late-bot"}, false)
		waitFor(t, 20*time.Second, "ServiceAccountNotFound", func() (bool, string) {
			r, m := reason(f)
			return r == string(v1alpha1.ReasonServiceAccountNotFound) && strings.Contains(m, "late-bot"), r + ": " + m
		})
		must(t, env.Client.Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "late-bot"}}))
		f.waitReady(20 * time.Second)
	})

	t.Run("AudienceNotAllowed", func(t *testing.T) {
		t.Parallel()
		ns := "sa-policy-" + fmt.Sprint(time.Now().UnixNano()%100000)
		p := &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: ns}, Spec: v1alpha1.TokenPolicySpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"sa-policy": ns}},
			AllowedAudiences:  []string{"vault"}}}
		must(t, env.Client.Create(t.Context(), p))
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), p) })
		waitSeen(t, &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		own := newExchangeIssuer(t, aud) // its own: the other cases call theirs meanwhile
		ownSpec := spec
		ownSpec.URL = v1alpha1.EndpointURL(own.URL() + "/token")
		_, before := own.Subjects()
		f := saFixture(t, own, ownSpec, v1alpha1.ServiceAccountLogin{Name: "orders-bot"}, true, map[string]string{"sa-policy": ns})
		waitFor(t, 20*time.Second, "PolicyViolation naming the audience", func() (bool, string) {
			r, m := reason(f)
			return r == string(v1alpha1.ReasonPolicyViolation) && strings.Contains(m, aud), r + ": " + m
		})
		if _, after := own.Subjects(); after != before {
			t.Fatalf("%d requests reached the issuer for an audience the policy does not allow", after-before)
		}
	})

	t.Run("APIServerAudience", func(t *testing.T) {
		t.Parallel()
		// The audience the API server accepts (envtest's: its service-account issuer URL): the
		// issuer would get a token to act as the ServiceAccount in the cluster. Never sent.
		own := newExchangeIssuer(t, strings.TrimSuffix(env.Config.Host, "/")+"/")
		ownSpec := spec
		ownSpec.URL = v1alpha1.EndpointURL(own.URL() + "/token")
		f := saFixture(t, own, ownSpec, v1alpha1.ServiceAccountLogin{Name: "orders-bot", Audience: strings.TrimSuffix(env.Config.Host, "/") + "/"}, true)
		waitFor(t, 20*time.Second, "PolicyViolation: the API server's audience", func() (bool, string) {
			r, m := reason(f)
			return r == string(v1alpha1.ReasonPolicyViolation) && strings.Contains(m, "accepted by this cluster's API server"), r + ": " + m
		})
		if _, n := own.Subjects(); n != 0 {
			t.Fatalf("%d requests reached the issuer with a token the API server accepts", n)
		}
	})

	t.Run("IssuerRefusesToken", func(t *testing.T) {
		t.Parallel()
		f := saFixture(t, x, spec, v1alpha1.ServiceAccountLogin{Name: "orders-bot", Audience: "https://elsewhere.example.com"}, true)
		waitFor(t, 20*time.Second, "InvalidCredentials", func() (bool, string) {
			c := f.cred()
			return c.Status.LastFailureReason == string(v1alpha1.ReasonInvalidCredentials), c.Status.LastFailureReason
		})
	})
}
