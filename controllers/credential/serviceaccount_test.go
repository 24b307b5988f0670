package credential_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// exchangeIssuer trusts the cluster: it verifies Kubernetes ServiceAccount tokens with the API
// server's own OIDC discovery document and key set (/.well-known/openid-configuration,
// /openid/v1/jwks), never a key handed to the test, checking iss, aud, sub and expiry, and
// answers the four ways a token can be presented: RFC 8693 token exchange, a client_credentials
// client assertion, the RFC 7523 JWT bearer grant, and Vault's JSON JWT login.
type exchangeIssuer struct {
	t        *testing.T
	srv      *httptest.Server
	audience string

	mu       sync.Mutex
	subjects []string
	valid    map[string]time.Time
	requests int
}

func newExchangeIssuer(t *testing.T, audience string) *exchangeIssuer {
	x := &exchangeIssuer{t: t, audience: audience, valid: map[string]time.Time{}}
	x.srv = httptest.NewTLSServer(http.HandlerFunc(x.serve))
	t.Cleanup(x.srv.Close)
	return x
}

func (x *exchangeIssuer) caBundle() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: x.srv.Certificate().Raw}))
}

// verify checks a ServiceAccount token against the API server's published keys.
func (x *exchangeIssuer) verify(raw string) (string, error) {
	hc, err := rest.HTTPClientFor(env.Config)
	if err != nil {
		return "", err
	}
	get := func(u string, v any) error {
		resp, err := hc.Get(u)
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET %s: %d", u, resp.StatusCode)
		}
		return json.NewDecoder(resp.Body).Decode(v)
	}
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := get(strings.TrimSuffix(env.Config.Host, "/")+"/.well-known/openid-configuration", &disc); err != nil {
		return "", err
	}
	var set struct {
		Keys []struct {
			Kid, Kty, N, E, X, Y string
		} `json:"keys"`
	}
	// The document names the key set at the API server's advertised address, which envtest does
	// not serve: read the same path from the address the test reaches it at.
	jwks, err := url.Parse(disc.JWKSURI)
	if err != nil {
		return "", err
	}
	if err := get(strings.TrimSuffix(env.Config.Host, "/")+jwks.Path, &set); err != nil {
		return "", err
	}
	b64 := func(s string) *big.Int {
		b, _ := base64.RawURLEncoding.DecodeString(s)
		return new(big.Int).SetBytes(b)
	}
	claims := jwt.RegisteredClaims{}
	_, err = jwt.ParseWithClaims(raw, &claims, func(tok *jwt.Token) (any, error) {
		for _, k := range set.Keys {
			if k.Kid != tok.Header["kid"] {
				continue
			}
			switch k.Kty {
			case "RSA":
				return &rsa.PublicKey{N: b64(k.N), E: int(b64(k.E).Int64())}, nil
			case "EC": // envtest gives kube-apiserver a P-256 signing key
				point := []byte{4}
				for _, c := range []string{k.X, k.Y} {
					b, _ := base64.RawURLEncoding.DecodeString(c)
					point = append(point, append(make([]byte, 32-len(b)), b...)...)
				}
				return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
			}
		}
		return nil, errors.New("no key with that kid in the cluster's key set")
	}, jwt.WithIssuer(disc.Issuer), jwt.WithAudience(x.audience), jwt.WithExpirationRequired())
	if err != nil {
		return "", err
	}
	return claims.Subject, nil
}

func (x *exchangeIssuer) serve(w http.ResponseWriter, r *http.Request) {
	x.mu.Lock()
	x.requests++
	x.mu.Unlock()
	var raw string
	json := r.URL.Path == "/v1/auth/jwt/login"
	if json {
		var body struct{ Role, JWT string }
		_ = decodeJSON(r, &body)
		if body.Role != "orders" {
			http.Error(w, `{"errors":["role not found"]}`, 400)
			return
		}
		raw = body.JWT
	} else {
		switch r.PostFormValue("grant_type") {
		case "urn:ietf:params:oauth:grant-type:token-exchange":
			if r.PostFormValue("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt" {
				http.Error(w, `{"error":"invalid_request"}`, 400)
				return
			}
			raw = r.PostFormValue("subject_token")
		case "client_credentials":
			if r.PostFormValue("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || r.PostFormValue("client_id") != "entra-app" {
				http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
				return
			}
			raw = r.PostFormValue("client_assertion")
		case "urn:ietf:params:oauth:grant-type:jwt-bearer":
			raw = r.PostFormValue("assertion")
		default:
			http.Error(w, `{"error":"unsupported_grant_type"}`, 400)
			return
		}
	}
	sub, err := x.verify(raw)
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		_, _ = fmt.Fprintf(w, `{"error":"invalid_grant","error_description":%q}`, "the cluster's token was refused: "+err.Error())
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := "xt-" + hex.EncodeToString(b)
	x.mu.Lock()
	x.subjects = append(x.subjects, sub)
	x.valid[tok] = time.Now().Add(20 * time.Second)
	x.mu.Unlock()
	addSecret(tok)
	w.Header().Set("Content-Type", "application/json")
	if json {
		_, _ = fmt.Fprintf(w, `{"auth":{"client_token":%q,"lease_duration":20,"renewable":false}}`, tok)
		return
	}
	_, _ = fmt.Fprintf(w, `{"access_token":%q,"issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":20}`, tok)
}

func decodeJSON(r *http.Request, v any) error {
	return json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<16)).Decode(v)
}

func (x *exchangeIssuer) isValid(tok string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	exp, ok := x.valid[tok]
	return ok && time.Now().Before(exp)
}

func (x *exchangeIssuer) seen() ([]string, int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]string(nil), x.subjects...), x.requests
}

// saFixture is a namespace with an exchange Issuer and a Credential logging in as a
// ServiceAccount, with no Secret input at all.
func saFixture(t *testing.T, x *exchangeIssuer, spec v1alpha1.IssuerSpec, login v1alpha1.ServiceAccountLogin, createSA bool, nsLabels ...map[string]string) *fixture {
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
	spec.CABundle = x.caBundle()
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
		return v1alpha1.IssuerSpec{URL: v1alpha1.EndpointURL(x.srv.URL + "/token"), OAuth2: &v1alpha1.OAuth2{}, ServiceAccountAudience: aud}, login
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
			return v1alpha1.IssuerSpec{URL: v1alpha1.EndpointURL(x.srv.URL + "/v1/auth/jwt/login"),
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
			if !x.isValid(first) {
				t.Fatal("the Secret's token was not issued by the exchange issuer")
			}
			subjects, _ := x.seen()
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
				return tok != first && x.isValid(tok), "still the first token"
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
	spec := v1alpha1.IssuerSpec{URL: v1alpha1.EndpointURL(x.srv.URL + "/token"), OAuth2: &v1alpha1.OAuth2{}, ServiceAccountAudience: aud}
	reason := func(f *fixture) (string, string) {
		c := f.cred()
		r := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionReady)
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
			return r == v1alpha1.ReasonServiceAccountNotFound && strings.Contains(m, "late-bot"), r + ": " + m
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
		own := newExchangeIssuer(t, aud) // its own: the other cases call theirs meanwhile
		ownSpec := spec
		ownSpec.URL = v1alpha1.EndpointURL(own.srv.URL + "/token")
		_, before := own.seen()
		f := saFixture(t, own, ownSpec, v1alpha1.ServiceAccountLogin{Name: "orders-bot"}, true, map[string]string{"sa-policy": ns})
		waitFor(t, 20*time.Second, "PolicyViolation naming the audience", func() (bool, string) {
			r, m := reason(f)
			return r == v1alpha1.ReasonPolicyViolation && strings.Contains(m, aud), r + ": " + m
		})
		if _, after := own.seen(); after != before {
			t.Fatalf("%d requests reached the issuer for an audience the policy does not allow", after-before)
		}
	})

	t.Run("IssuerRefusesToken", func(t *testing.T) {
		t.Parallel()
		f := saFixture(t, x, spec, v1alpha1.ServiceAccountLogin{Name: "orders-bot", Audience: "https://elsewhere.example.com"}, true)
		waitFor(t, 20*time.Second, "InvalidCredentials", func() (bool, string) {
			c := f.cred()
			return c.Status.LastFailureReason == v1alpha1.ReasonInvalidCredentials, c.Status.LastFailureReason
		})
	})
}
