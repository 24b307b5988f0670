//go:build e2e

package e2e_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/demo"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

const validatorName = "orders"

// validation: a TokenValidator for the OAuth2 issuer, called through the chart's `tokenkeeper`
// Service (so both replicas answer), accepts the token the Credential keeps and rejects forgeries.
func (s *suite) validation(t *testing.T) {
	tv := &v1alpha1.TokenValidator{ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: validatorName}, Spec: v1alpha1.TokenValidatorSpec{
		Issuers:        []v1alpha1.IssuerReference{{Kind: v1alpha1.IssuerKindNamespaced, Name: string(issuertest.OAuth2)}},
		Audiences:      []string{"orders"},
		RequiredScopes: []string{"orders.read"},
		ForwardClaims:  map[string]v1alpha1.HeaderName{"sub": "X-User"},
	}}
	s.create(t, tv)
	testenv.WaitFor(t, time.Minute, "the TokenValidator Ready", func() (bool, string) {
		if err := s.c.Get(t.Context(), types.NamespacedName{Namespace: appNS, Name: validatorName}, tv); err != nil {
			return false, err.Error()
		}
		return meta.IsStatusConditionTrue(tv.Status.Conditions, string(v1alpha1.ConditionReady)), fmt.Sprint(tv.Status.Conditions)
	})
	genuine := s.currentToken(t, issuertest.OAuth2)
	// The Service, and each replica by its pod address: every replica serves every validator.
	for _, ep := range s.validationEndpoints(t) {
		testenv.WaitFor(t, 30*time.Second, "the issued token accepted at "+ep.base, func() (bool, string) {
			code, user := ep.validate(t, "Bearer "+genuine)
			return code == http.StatusOK && user == issuertest.ClientID, fmt.Sprintf("status %d, X-User %q", code, user)
		})
		if !ep.review(t, genuine) {
			t.Errorf("%s: TokenReview of the issued token: not authenticated", ep.base)
		}
		s.rejectForgeries(t, ep, genuine)
	}
}

// rejectForgeries: tokens that look like the issued one, or come from another issuer, are refused.
func (s *suite) rejectForgeries(t *testing.T, ep *endpoint, genuine string) {

	forged := map[string]string{
		"payload changed, signature kept":   tamper(t, genuine),
		"signed with another key, same kid": resign(t, genuine),
		"alg none":                          algNone(t, genuine),
		"another issuer's genuine token":    s.currentToken(t, issuertest.Seed001),
		"not a JWT":                         "opaque-" + strings.Repeat("x", 40),
	}
	for name, tok := range forged {
		if code, _ := ep.validate(t, "Bearer "+tok); code != http.StatusUnauthorized {
			t.Errorf("%s: %s: status %d, want 401", ep.base, name, code)
		}
		if ep.review(t, tok) {
			t.Errorf("%s: %s: TokenReview authenticated it", ep.base, name)
		}
	}
	if code, _ := ep.validate(t, ""); code != http.StatusUnauthorized {
		t.Errorf("%s: no Authorization header: status %d, want 401", ep.base, code)
	}
}

// endpoint is a validation address, trusted through the manager's own CA.
type endpoint struct {
	base   string
	client *http.Client
}

// validationEndpoints are the chart's `tokenkeeper` Service and every manager pod.
func (s *suite) validationEndpoints(t *testing.T) []*endpoint {
	svc := &corev1.Service{}
	if err := s.c.Get(t.Context(), types.NamespacedName{Namespace: systemNS, Name: "tokenkeeper"}, svc); err != nil {
		t.Fatal(err)
	}
	cert := &corev1.Secret{}
	if err := s.c.Get(t.Context(), types.NamespacedName{Namespace: systemNS, Name: "tokenkeeper-webhook-cert"}, cert); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cert.Data["ca.crt"]) {
		t.Fatal("no CA in the webhook certificate Secret")
	}
	httpc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, ServerName: "tokenkeeper." + systemNS + ".svc", MinVersion: tls.VersionTLS12}}}
	eps := []*endpoint{{base: "https://" + net.JoinHostPort(svc.Spec.ClusterIP, "8443"), client: httpc}}
	pods := &corev1.PodList{}
	if err := s.c.List(t.Context(), pods, client.InNamespace(systemNS)); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.Status.PodIP != "" && p.DeletionTimestamp == nil {
			eps = append(eps, &endpoint{base: "https://" + net.JoinHostPort(p.Status.PodIP, "8443"), client: httpc})
		}
	}
	if len(eps) != 3 {
		t.Fatalf("want the Service and 2 pods, found %d addresses", len(eps))
	}
	return eps
}

// validate is one forward-auth call; it returns the status and the forwarded X-User.
func (e *endpoint) validate(t *testing.T, authorization string) (int, string) {
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.base+"/validate/"+appNS+"/"+validatorName, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("calling the validation endpoint: %v", err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-User")
}

// review sends a TokenReview as kube-apiserver's webhook authenticator does.
func (e *endpoint) review(t *testing.T, token string) bool {
	body, _ := json.Marshal(authnv1.TokenReview{TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"},
		Spec: authnv1.TokenReviewSpec{Token: token}})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.base+"/tokenreview/"+appNS+"/"+validatorName, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("TokenReview: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out authnv1.TokenReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("TokenReview answer: %v", err)
	}
	return out.Status.Authenticated
}

// currentToken is the token the Credential for f keeps in its Secret now.
func (s *suite) currentToken(t *testing.T, f issuertest.Flavor) string {
	sec := &corev1.Secret{}
	if err := s.c.Get(t.Context(), types.NamespacedName{Namespace: appNS, Name: demo.TokenSecret(f)}, sec); err != nil {
		t.Fatal(err)
	}
	tok := string(sec.Data["token"])
	if tok == "" {
		t.Fatalf("Secret %s holds no token", demo.TokenSecret(f))
	}
	return tok
}

// tamper changes the subject in the payload and keeps the signature.
func tamper(t *testing.T, tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatal("the issued token is not a JWS")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	claims["sub"] = "admin"
	payload, _ = json.Marshal(claims)
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

// resign signs the same header and claims with a key the issuer never published.
func resign(t *testing.T, tok string) string {
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	forged := jwt.NewWithClaims(jwt.SigningMethodRS256, parsed.Claims)
	forged.Header["kid"] = parsed.Header["kid"]
	out, err := forged.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// algNone is the same claims, unsigned.
func algNone(t *testing.T, tok string) string {
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := jwt.NewWithClaims(jwt.SigningMethodNone, parsed.Claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
