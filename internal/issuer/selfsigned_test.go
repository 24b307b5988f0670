package issuer_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
)

// Self-signed issuers mint the token in the manager: App Store Connect (ES256, kid from the
// Secret, aud appstoreconnect-v1, 20 minutes) and Snowflake key-pair authentication (RS256, iss
// ACCOUNT.USER.SHA256:<fingerprint of the public key>), each verified with the public key; a
// TokenPolicy's maximum session caps the lifetime.
func TestSelfSignedTokens(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pub, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	sum := sha256.Sum256(pub)
	fingerprint := "SHA256:" + base64.StdEncoding.EncodeToString(sum[:])
	cases := map[string]struct {
		spec     v1alpha1.SelfSignedJWT
		inputs   map[string]string
		verify   any
		alg, kid string
		claims   map[string]string
		max      time.Duration
		lifetime time.Duration
	}{
		"AppStoreConnect": {
			spec: v1alpha1.SelfSignedJWT{Claims: map[string]v1alpha1.BodyTemplate{"iss": "{{ .issuer_id }}", "aud": "appstoreconnect-v1"},
				KeyID: "{{ .key_id }}", Lifetime: &metav1.Duration{Duration: 20 * time.Minute}},
			inputs: map[string]string{"issuer_id": "57246542-96fe-1a63-e053-0824d011072a", "key_id": "2X9R4HXF34",
				issuer.InputPrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}))},
			verify: &ecKey.PublicKey, alg: "ES256", kid: "2X9R4HXF34",
			claims:   map[string]string{"iss": "57246542-96fe-1a63-e053-0824d011072a", "aud": "appstoreconnect-v1"},
			lifetime: 20 * time.Minute,
		},
		"SnowflakeCappedByPolicy": {
			spec: v1alpha1.SelfSignedJWT{Claims: map[string]v1alpha1.BodyTemplate{
				"iss": "{{ .account }}.{{ .user }}.{{ .publicKeyFingerprint }}", "sub": "{{ .account }}.{{ .user }}"}},
			inputs: map[string]string{"account": "MYORG-ACCT1", "user": "ORDERS_SVC",
				issuer.InputPrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}))},
			verify: &rsaKey.PublicKey, alg: "RS256",
			claims: map[string]string{"iss": "MYORG-ACCT1.ORDERS_SVC." + fingerprint, "sub": "MYORG-ACCT1.ORDERS_SVC"},
			max:    5 * time.Minute, lifetime: 5 * time.Minute,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			spec := tc.spec
			c, err := issuer.New(issuer.Config{Spec: v1alpha1.IssuerSpec{SelfSigned: &spec}})
			if err != nil {
				t.Fatal(err)
			}
			if c.CanRefresh() || c.CanRevoke() {
				t.Error("a self-signed issuer has nothing to refresh or revoke")
			}
			tok, err := c.Login(t.Context(), issuer.Request{Kind: issuer.LoginPrivateKey, Inputs: tc.inputs, MaxLifetime: tc.max})
			if err != nil {
				t.Fatal(err)
			}
			claims := jwt.MapClaims{}
			parsed, err := jwt.ParseWithClaims(tok.AccessToken, claims, func(*jwt.Token) (any, error) { return tc.verify, nil },
				jwt.WithValidMethods([]string{tc.alg}), jwt.WithExpirationRequired(), jwt.WithIssuedAt())
			if err != nil {
				t.Fatalf("the token does not verify with the public key: %v", err)
			}
			if tc.kid != "" && parsed.Header["kid"] != tc.kid {
				t.Errorf("kid %v, want %s", parsed.Header["kid"], tc.kid)
			}
			for k, want := range tc.claims {
				if claims[k] != want {
					t.Errorf("claim %s = %v, want %s", k, claims[k], want)
				}
			}
			exp, _ := claims.GetExpirationTime()
			iat, _ := claims.GetIssuedAt()
			if got := exp.Sub(iat.Time); got != tc.lifetime || !tok.ExpiresAt.Equal(exp.Time) {
				t.Errorf("lifetime %s (token expiry %s, claim %s), want %s", got, tok.ExpiresAt, exp.Time, tc.lifetime)
			}
			if tok.Authorization() != "Bearer "+tok.AccessToken {
				t.Errorf("authorization %q", tok.Authorization())
			}
		})
	}

	// A key that does not parse: a configuration error without key material.
	c, _ := issuer.New(issuer.Config{Spec: v1alpha1.IssuerSpec{SelfSigned: &v1alpha1.SelfSignedJWT{}}})
	_, err := c.Login(t.Context(), issuer.Request{Kind: issuer.LoginPrivateKey, Inputs: map[string]string{
		issuer.InputPrivateKey: "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n"}})
	if issuer.ClassOf(err) != issuer.ClassConfig || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Errorf("a garbage key: %v (class %s), want a configuration error without key material", err, issuer.ClassOf(err))
	}
}

// TestSelfSignedTokenBound: claims that each stay under the template bound but together would
// make a token of megabytes are refused as a configuration error naming the bound, before the
// token is signed or held; a refused login allocates a bounded amount (40 tenants' 2.8 MB tokens
// once took the manager from 228 to 546 MB).
func TestSelfSignedTokenBound(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	claims := map[string]v1alpha1.BodyTemplate{}
	for i := range 32 {
		claims[fmt.Sprintf("c%02d", i)] = `{{ .big }}{{ .big }}{{ .big }}{{ .big }}{{ .big }}` // 60,000 bytes each, under the template bound
	}
	c, err := issuer.New(issuer.Config{Spec: v1alpha1.IssuerSpec{SelfSigned: &v1alpha1.SelfSignedJWT{Claims: claims}}})
	if err != nil {
		t.Fatal(err)
	}
	req := issuer.Request{Kind: issuer.LoginPrivateKey, Inputs: map[string]string{"big": strings.Repeat("x", 12000),
		issuer.InputPrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))}}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	tok, err := c.Login(t.Context(), req)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatalf("a %d-byte token was signed", len(tok.AccessToken))
	}
	if issuer.ClassOf(err) != issuer.ClassConfig || !strings.Contains(err.Error(), "MaxTokenLength") {
		t.Errorf("got %v, want a configuration error naming the bound", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("a refused login allocated %d KiB, want under 1 MiB (the claims are rendered only up to the bound)", alloc>>10)
	}
}
