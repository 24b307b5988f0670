package tokenvalidator_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/controllers/tokenvalidator"
)

// keyServer serves an empty JWKS and counts the fetches.
func keyServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &fetches
}

func hs256(t *testing.T, secret string) string {
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": "https://hmac.test", "sub": "svc", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
	}).SignedString([]byte(secret))
	must(t, err)
	return "Bearer " + tok
}

// Rotating the Secret an issuer's hmacSecretRef names takes effect without any spec edit: tokens
// signed with the old secret stop passing and tokens signed with the new one pass.
// hmacValidator creates namespace ns with an HMAC Secret "shared", an Issuer "internal" that
// signs with it and a Ready TokenValidator "api" trusting that issuer.
func hmacValidator(t *testing.T, ns string) *corev1.Secret {
	t.Helper()
	ctx := t.Context()
	keys, _ := keyServer(t)
	must(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shared"}, StringData: map[string]string{"key": "old-secret-0123456789abcdef"}}
	must(t, env.Client.Create(ctx, secret))
	must(t, env.Client.Create(ctx, &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "internal"}, Spec: v1alpha1.IssuerSpec{
		JWKS: &v1alpha1.JWKS{URL: v1alpha1.EndpointURL(keys.URL), Issuer: "https://hmac.test"}, AllowInsecureHTTP: true,
		HMACSecretRef: &v1alpha1.SecretKeySelector{Name: "shared", Key: "key"},
	}}))
	must(t, env.Client.Create(ctx, &v1alpha1.TokenValidator{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"}, Spec: v1alpha1.TokenValidatorSpec{
		Issuers: []v1alpha1.IssuerReference{{Name: "internal"}}, Algorithms: []v1alpha1.SigningAlgorithm{"HS256"},
	}}))
	key := types.NamespacedName{Namespace: ns, Name: "api"}
	waitFor(t, 20*time.Second, "the validator Ready", func() (bool, string) { ok, state, _ := ready(t, key); return ok, state })
	return secret
}

// rotateHMAC puts the new HMAC secret into the Secret hmacValidator made.
func rotateHMAC(t *testing.T, secret *corev1.Secret) {
	t.Helper()
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		must(t, env.Client.Get(t.Context(), client.ObjectKeyFromObject(secret), secret))
		secret.Data["key"] = []byte("new-secret-fedcba9876543210")
		return env.Client.Update(t.Context(), secret)
	}))
}

func TestHMACSecretRotation(t *testing.T) {
	secret := hmacValidator(t, "hmac")
	oldToken, newToken := hs256(t, "old-secret-0123456789abcdef"), hs256(t, "new-secret-fedcba9876543210")
	if got := validate(t, "/validate/hmac/api", oldToken).StatusCode; got != 200 {
		t.Fatalf("a token signed with the current secret: %d", got)
	}
	rotateHMAC(t, secret)
	waitFor(t, 10*time.Second, "the rotated secret in effect", func() (bool, string) {
		o, n := validate(t, "/validate/hmac/api", oldToken).StatusCode, validate(t, "/validate/hmac/api", newToken).StatusCode
		return o == 401 && n == 200, "old secret's token " + http.StatusText(o) + ", new secret's " + http.StatusText(n)
	})
}

// Events from objects a validator does not depend on never make it fetch its keys again: ten
// edits of an unrelated Issuer (and of one it trusts, in metadata only) cost no fetch.
func TestEventsDoNotRefetchKeys(t *testing.T) {
	ctx := t.Context()
	keys, fetches := keyServer(t)
	ns := "storm"
	must(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	spec := v1alpha1.IssuerSpec{JWKS: &v1alpha1.JWKS{URL: v1alpha1.EndpointURL(keys.URL), Issuer: "https://storm.test"}, AllowInsecureHTTP: true}
	must(t, env.Client.Create(ctx, &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "trusted"}, Spec: spec}))
	must(t, env.Client.Create(ctx, &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "unrelated"}, Spec: spec}))
	for _, name := range []string{"a", "b", "c"} {
		must(t, env.Client.Create(ctx, &v1alpha1.TokenValidator{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1alpha1.TokenValidatorSpec{
			Issuers: []v1alpha1.IssuerReference{{Name: "trusted"}}}}))
	}
	for _, name := range []string{"a", "b", "c"} {
		waitFor(t, 20*time.Second, "validator "+name+" Ready", func() (bool, string) {
			ok, state, _ := ready(t, types.NamespacedName{Namespace: ns, Name: name})
			return ok, state
		})
	}
	time.Sleep(time.Second) // let status writes settle
	before := fetches.Load()
	for i := range 10 {
		for _, name := range []string{"unrelated", "trusted"} {
			must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
				iss := &v1alpha1.Issuer{}
				must(t, env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, iss))
				iss.Annotations = map[string]string{"edit": strings.Repeat("x", i+1)}
				return env.Client.Update(ctx, iss)
			}))
		}
	}
	time.Sleep(3 * time.Second)
	if n := fetches.Load() - before; n != 0 {
		t.Fatalf("20 Issuer annotation edits caused %d key set fetches, want 0", n)
	}
}

// Secrets no validator reads cost no scan of the validators: of 200 new Secrets and one rotated
// HMAC Secret after them (the watch delivers events in order), only the HMAC Secret's event scans.
func TestUnrelatedSecretsCostNoValidatorScan(t *testing.T) {
	ctx := t.Context()
	ns, other := "scan", "scan-other"
	secret := hmacValidator(t, ns)
	must(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: other}}))
	before := tokenvalidator.ValidatorScans()
	for i := range 200 {
		must(t, env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: fmt.Sprintf("s-%d", i)}}))
	}
	rotateHMAC(t, secret)
	newToken := hs256(t, "new-secret-fedcba9876543210")
	waitFor(t, 10*time.Second, "the rotated secret in effect", func() (bool, string) {
		return validate(t, "/validate/scan/api", newToken).StatusCode == 200, "not yet"
	})
	if n := tokenvalidator.ValidatorScans() - before; n < 1 || n > 3 {
		t.Fatalf("%d scans of the validators for 200 unrelated Secrets and one rotation, want 1–3", n)
	}
}
